"""Stage 03: evaluate fine-tuned runs on ID, DG and CF data.

One job per task (``python -m lib.pipeline.evaluate <profile> <task> <method> [<method> ...]``, a
Make recipe each, so ``make -j`` runs them in parallel) evaluates the (task, method) units of its
methods; each unit writes ``runs/<task>/<method>/evaluation.csv``;
each run's rows are also cached in its ``eval.json``, keyed by its inputs (the hash of the
evaluation code, :data:`EVAL_CODE`; the full hash of its trained state, its request, the base
model's state, the data's fingerprints and the zero-shot numbers its rows copy) and holding the hash of its own rows. A cache is reused only when its key
matches, its rows match their recorded hash and fit the evaluation schema
(:data:`lib.schema.EVALUATION`); otherwise the run is evaluated again and the log says which file
and why, so a changed run re-evaluates alone and an edited cache never reaches a table.
``notebooks/03_evaluate.ipynb`` gathers the units into ``results/evaluation.csv``
(:func:`lib.pipeline.aggregate.aggregate_evaluation`).

Each row also counts the images the run lost and won against the zero-shot model (``n_lost``,
``n_won``: an exact McNemar test's discordant pairs); the zero-shot model's predictions are checked
against ``results/zero_shot.csv`` (a mismatch means that table is not this base model's on this
data, and is refused).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import config, models, paths, progress, schema, train
from .. import methods as M
from ..config import ConfigError
from ..data import source_for
from ..evaluate import EVAL_COLUMNS, MEASURES, eval_splits, run_measures, schema_of
from ..io import SHORT, content_hash, file_sha256, read_json, write_csv, write_json
from ..paths import RunId
from ..progress import log
from . import codegraph
from .common import base_model, cli, setup
from .finetune import Unit, finished_row, marker_problem
from .grid import evaluation_units, runs

STAGE = "03_evaluate"
EVAL_VERSION = 5  # 4: n_lost / n_won, rows hashed, zero-shot inputs in the key; 5: the code's hash
# the code a run's evaluation rows depend on: lib.evaluate (measures, lib.metrics, the embeddings),
# lib.train (reading the run back into a model) and every lib module they import, transitively
# (lib.pipeline.codegraph); its hash is in every cache key, so an edit to any of them (lib/metrics.py
# too) evaluates the runs again. The rows' assembly here is versioned by EVAL_VERSION.
EVAL_CODE = ("lib.evaluate", "lib.train")


def code_hash(root=codegraph.ROOT) -> str:
    """The fingerprint of the evaluation code: the hash of :data:`EVAL_CODE`'s import closure under ``root``."""
    return codegraph.closure_hash(*EVAL_CODE, root=root)


def zero_shot_rows(profile: str) -> dict:
    """``results/zero_shot.csv`` by (task, domain), validated (:data:`lib.schema.ZERO_SHOT`)."""
    f = paths.product(profile, paths.ZERO_SHOT_CSV)
    if not f.exists():
        raise FileNotFoundError(f"{f} is missing: run the zero-shot stage first (make zero-shot PROFILE={profile})")
    zs = schema.read_table(f, schema.ZERO_SHOT, profile)
    return {(r["task"], r["domain"]): r for r in zs.to_dict("records")}


def _file_hash(p: Path) -> str:
    """sha256 of a run's state file (hex, 16 characters: the form the cache key has always used)."""
    return file_sha256(p)[:SHORT]


def _cache_problem(cache, key: dict) -> str | None:
    """Why a run's ``eval.json`` cannot be reused (None when it can)."""
    if cache is None:
        return "it is missing or does not parse"
    if not isinstance(cache, dict) or not isinstance(cache.get("rows"), list):
        return "it has no rows"
    old = cache.get("key")
    if old != key:
        if not isinstance(old, dict):
            return "it has no key"
        diff = sorted(k for k in set(key) | set(old) if key.get(k) != old.get(k))
        return f"it was made from other inputs ({', '.join(diff)} changed)"
    if cache.get("rows_sha256") != content_hash(cache["rows"]):
        return ("its rows do not match their recorded hash (edited or damaged)" if cache.get("rows_sha256")
                else "it records no hash of its rows")
    bad = schema.problems(pd.DataFrame(cache["rows"]), schema.EVALUATION)
    if bad:
        return "its rows do not fit the evaluation schema: " + "; ".join(bad)
    return None


def evaluate_run(run: RunId, profile: str, base, base_state: str, source, zs_rows: dict,
                 batch_size: int, num_workers: int, panel: list[str] | None = None) -> list[dict]:
    """Rows of evaluation.csv for one complete run (cached in ``<run>/eval.json``)."""
    rdir = run.dir(profile)
    meta = train.load_meta(rdir)
    state_fp = _file_hash(rdir / RunId.STATE)
    splits = eval_splits(source, run.task, panel)
    key = {"version": EVAL_VERSION, "code": code_hash(),
           "state": state_fp, "state_sha256": file_sha256(rdir / RunId.STATE),
           "request": meta.get("request_fingerprint"), "base": base_state,
           "data": {f"{t}/{d}": zs_rows[(t, d)]["data_fingerprint"] for t, d, _ in splits},
           "zero_shot": content_hash({f"{t}/{d}": {k: zs_rows[(t, d)][k] for k in MEASURES} for t, d, _ in splits})}
    cache_file = rdir / "eval.json"
    cache = read_json(cache_file)
    why = _cache_problem(cache, key)
    if why is None:
        return CachedRows(cache["rows"])
    if cache_file.exists():
        log(f"re-evaluating {run.label}: {cache_file} is not reused: {why}")
    clf = train.load_run(base, rdir)  # builds a copy: the base model is never modified
    got = run_measures(clf, base, source, splits, profile, f"run:{state_fp}:{meta.get('request_fingerprint')}",
                       base_state, batch_size, num_workers)
    rows = []
    for task, domain, _ in splits:
        n, m = got[(task, domain)]
        z = zs_rows[(task, domain)]
        _check_zero_shot(profile, task, domain, n, z["acc"], m["n_correct_zero_shot"])
        if m["n_correct_finetuned"] != round(n * m["acc"]):
            raise RuntimeError(f"{run.label} on {task}/{domain}: the predictions give {m['n_correct_finetuned']} "
                               f"correct of {n} but the accuracy is {m['acc']} (lib.evaluate.predictions and "
                               f"lib.metrics.zero_shot_accuracy disagree)")
        row = {"train_task": meta["task"], "method": meta["method"], "variant": meta["variant"],
               "seed": meta["seed"], "eval_task": task, "eval_domain": domain,
               "schema": schema_of(meta["task"], task, domain, source.task(task).id_domain), "n_images": n}
        for k in MEASURES:
            row[f"{k}_zero_shot"] = z[k]
            row[f"{k}_finetuned"] = m[k]
        row["n_lost"], row["n_won"] = m["n_lost"], m["n_won"]
        rows.append(row)
    rows = json.loads(json.dumps(rows, default=str))  # as read back from eval.json
    write_json(cache_file, {"key": key, "rows": rows, "rows_sha256": content_hash(rows)})
    return rows


def _check_zero_shot(profile: str, task: str, domain: str, n: int, acc, n_correct: int) -> None:
    """The zero-shot model's correct images (its cached embeddings, now) against the accuracy
    ``results/zero_shot.csv`` records for the split: they must agree, or the flips would be
    counted against another model than the table's."""
    if round(n * float(acc)) != n_correct:
        f = paths.product(profile, paths.ZERO_SHOT_CSV)
        raise ValueError(f"{f} records zero-shot accuracy {float(acc):.6g} on {task}/{domain} ({round(n * float(acc))} "
                         f"of {n} images) but the base model's embeddings give {n_correct} correct: that table is "
                         f"not this base model's on this data. Fix: delete it and rerun the zero-shot stage "
                         f"(make zero-shot PROFILE={profile})")


def evaluate_unit(cfg: dict, task: str, method: str, progress: bool = True) -> pd.DataFrame:
    """Evaluate every run of one (task, method) unit; writes ``runs/<task>/<method>/evaluation.csv``
    (:func:`evaluate_task` for one method)."""
    return evaluate_task(cfg, task, [method], progress)[method]


def evaluate_task(cfg: dict, task: str, methods: list[str], progress: bool = True) -> dict[str, pd.DataFrame]:
    """Evaluate the units (task, m) for every m of ``methods`` in this process (one evaluation job):
    each writes ``runs/<task>/<m>/evaluation.csv``, its sweep points' rows and its timing. The base
    model, the data checks, the zero-shot table and the zero-shot model's accuracies on the sweep
    points' images are loaded or computed once for all of them.

    Checks come first, cheapest first, for every unit before any work: parameters, the data, the
    zero-shot table, the runs."""
    profile = cfg["name"]
    p = config.stage_params(STAGE, profile)  # validated by the schema (batch_size >= 1, num_workers >= 0)
    batch_size, num_workers = p["batch_size"], p["num_workers"]
    panel = p.get("forgetting_panel")  # None: every task (world v2); study v3: a fixed panel
    source = source_for(cfg)
    source.task(task)
    source.check()
    zs = zero_shot_rows(profile)
    units = evaluation_units(runs(cfg))  # the grid, built and validated once
    for method in methods:
        if (task, method) not in units:
            valid = ", ".join(f"{t}/{m}" for t, m in units)
            raise ConfigError(f"({task}, {method}) is not an evaluation unit of profile {profile!r}; valid: {valid}")
    todo = {}
    for method in dict.fromkeys(methods):
        rs = units[(task, method)]
        missing = [r for r in rs if finished_row(profile, r) is None]
        if missing:
            why = marker_problem(profile, missing[0])
            raise FileNotFoundError(f"{len(missing)} runs of unit {task}/{method} are not finished (e.g. "
                                    f"{missing[0].label}: {why}): make finetune PROFILE={profile}")
        todo[method] = rs
    base = base_model(cfg)
    base_state = models.state_fingerprint(base.model)
    sweep = SweepSplits(source, task, panel, p.get("sweep_eval_images"), base, batch_size, num_workers)
    out = {}
    for method, rs in todo.items():
        started = time.time()
        rows, timing = [], []
        for i, r in enumerate(rs, 1):
            t0 = time.perf_counter()
            got = evaluate_run(r, profile, base, base_state, source, zs, batch_size, num_workers, panel)
            seconds = time.perf_counter() - t0
            cached = isinstance(got, CachedRows)
            timing.append({"run": r.label, "seconds": seconds, "images": int(sum(x["n_images"] for x in got)),
                           "cached": cached})
            rows += got
            if progress:
                state = "cached" if cached else f"{timing[-1]['images'] / seconds:,.0f} images/s"
                log(f"[{i}/{len(rs)}] evaluated {r.label} ({state})")
        df = pd.DataFrame(rows)[EVAL_COLUMNS]
        schema.validate(df, schema.EVALUATION, f"the evaluation rows of unit {task}/{method}", profile)
        write_csv(df, paths.unit_eval_csv(profile, task, method),
                  {"unit": f"{task}/{method}", "eval_version": EVAL_VERSION,
                   "inputs": {r.label: content_hash(x) for r, x in zip(rs, _by_run(rows, rs))}},
                  float_format=None)
        t0 = time.perf_counter()
        srows = sweep_rows(cfg, task, method, sweep)
        write_csv(pd.DataFrame(srows, columns=SWEEP_COLUMNS),
                  paths.product(profile, paths.UNIT_SWEEP_EVAL_CSV, task=task, method=method),
                  {"unit": f"{task}/{method}", "sweep_eval_images": p.get("sweep_eval_images")})
        if srows and progress:
            log(f"evaluated {len({x['lr'] for x in srows})} sweep points of {task}/{method} on "
                f"{p.get('sweep_eval_images')} images per split ({time.perf_counter() - t0:.1f} s)")
        write_json(paths.unit_eval_timing(profile, task, method), {"unit": f"{task}/{method}", "start": started,
                                                                   "end": time.time(), "runs": timing})
        out[method] = df
    return out


class SweepSplits:
    """The images every sweep point of one task is evaluated on (the first ``n_images`` test images of
    each split :func:`lib.evaluate.eval_splits` names) and the zero-shot model's accuracy on them:
    loaded and computed once per evaluation job, on first use (a profile without sweep evaluation,
    or a job whose methods have no sweep, never loads them)."""

    def __init__(self, source, task: str, panel: list[str] | None, n_images: int | None, base,
                 batch_size: int, num_workers: int):
        self.source, self.task, self.panel, self.n_images = source, task, panel, n_images
        self.base, self.batch_size, self.num_workers = base, batch_size, num_workers
        self._splits = None

    def accuracy(self, clf, sp) -> float:
        return train.accuracy(clf, sp, self.base, self.batch_size, num_workers=self.num_workers)

    @property
    def splits(self) -> list[tuple]:
        """[(eval task, domain, images, zero-shot accuracy)]."""
        if self._splits is None:
            splits = []
            for t, d, sp in eval_splits(self.source, self.task, self.panel):
                full = self.source.load(t, d, sp)
                splits.append((t, d, full.subset(np.arange(min(int(self.n_images), len(full))))))
            zs = M.build(self.base.model, "full")  # untrained: the zero-shot model itself
            self._splits = [(t, d, sp, self.accuracy(zs, sp)) for t, d, sp in splits]
            del zs
        return self._splits


SWEEP_COLUMNS = ["task", "method", "lr", "seed", "selected", "nonfinite", "eval_task", "eval_domain", "schema",
                 "n_images", "acc_zero_shot", "acc_finetuned"]


def sweep_rows(cfg: dict, task: str, method: str, sweep: SweepSplits) -> list[dict]:
    """Every learning-rate sweep point of the unit (the extension's too) evaluated like a study run but on
    the first ``n_images`` test images of each of its splits (``sweep_eval_images``), accuracy only,
    with the zero-shot model's accuracy on the same images (``sweep``): the trade-off of ID gain, DG
    gain and forgetting along the learning rate. None / 0 (world v2's profiles): no rows."""
    if not sweep.n_images:
        return []
    profile = cfg["name"]
    pts, prows, sel = Unit(cfg, task, method).sweep_state()
    if not pts:
        return []  # one rate: no sweep
    if any(r is None for r in prows) or sel is None:
        raise FileNotFoundError(f"the sweep of {task}/{method} is not finished: make finetune PROFILE={profile}")
    id_domain = sweep.source.task(task).id_domain
    rows = []
    for r, row in zip(pts, prows):
        clf = train.load_run(sweep.base, r.dir(profile))
        for t, d, sp, zs_acc in sweep.splits:
            rows.append({"task": task, "method": method, "lr": r.lr, "seed": r.seed, "selected": r.lr == sel,
                         "nonfinite": bool(row.get("nonfinite")), "eval_task": t, "eval_domain": d,
                         "schema": schema_of(task, t, d, id_domain), "n_images": len(sp),
                         "acc_zero_shot": zs_acc, "acc_finetuned": sweep.accuracy(clf, sp)})
    return rows


def _by_run(rows: list[dict], rs: list[RunId]) -> list[list[dict]]:
    """``rows`` split per run of ``rs`` (each run's rows, in order)."""
    key = {(r.task, r.method, r.variant, r.seed): i for i, r in enumerate(rs)}
    out = [[] for _ in rs]
    for x in rows:
        out[key[(x["train_task"], x["method"], x["variant"], x["seed"])]].append(x)
    return out


class CachedRows(list):
    """Rows read back from a run's ``eval.json`` (nothing was encoded)."""


USAGE = ("usage: python -m lib.pipeline.evaluate <profile> <task> [<task> ...] --methods <method> [<method> ...]\n"
         "       python -m lib.pipeline.evaluate <profile> <task> <method> [<method> ...]")


def parse_args(argv: list[str]) -> tuple[str, list[str], list[str]] | None:
    """(profile, tasks, methods) of the command line, or None when it has neither form of USAGE.
    With ``--methods`` the words before it are the profile and the job's tasks (an evaluation job of
    ``tasks_per_job`` tasks, :func:`lib.pipeline.grid.task_jobs`); without it, one task and its methods."""
    if "--methods" in argv:
        i = argv.index("--methods")
        head, methods = argv[:i], argv[i + 1:]
        if len(head) < 2 or not methods or "--methods" in methods:
            return None
        return head[0], head[1:], methods
    if len(argv) < 3:
        return None
    return argv[0], [argv[1]], argv[2:]


def main(argv=None) -> int:
    got = parse_args(sys.argv[1:] if argv is None else argv)
    if got is None:
        print(USAGE, file=sys.stderr)
        return 2
    profile, tasks, methods = got

    def work():
        config.check_profile_name(profile)
        for t in tasks:
            config.check_name(t, "task", key="a <task> argument")
        for m in methods:
            config.check_name(m, "method", key="a <method> argument")
        if len(set(tasks)) < len(tasks):
            raise ConfigError(f"a task is named twice in {tasks}")
        cfg, units = None, None
        for task in tasks:   # one process for the job's tasks: the imports (~5 s on 2 cores) once
            label = f"evaluate {task}/{methods[0]}" if len(methods) == 1 else f"evaluate {task}"
            if cfg is None:
                cfg = setup(profile, STAGE, label=label)
                units = set(evaluation_units(runs(cfg)))
            else:
                progress.set_label(label)
            evaluate_task(cfg, task, job_methods(units, task, methods))
    return cli(work)


def job_methods(units: set, task: str, methods: list[str]) -> list[str]:
    """The methods of ``methods`` that have runs on ``task`` (``units``: the profile's (task, method)
    evaluation units; a job names every method of its tasks, a task that lacks one, e.g. a method run
    on some tasks only, evaluates the others). None of them: :func:`evaluate_task` says which pairs are units."""
    have = {m for t, m in units if t == task}
    return [m for m in methods if m in have] or methods


if __name__ == "__main__":
    sys.exit(main())
