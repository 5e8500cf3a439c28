"""Stage 03: evaluate fine-tuned runs on ID, DG and CF data.

One job per (task, method) unit (``python -m lib.pipeline.evaluate <profile> <task> <method>``,
a Make target each, so ``make -j`` runs them in parallel) writes ``runs/<task>/<method>/evaluation.csv``;
each run's rows are also cached in its ``eval.json``, keyed by its trained state and the data, so
a changed run re-evaluates alone. ``notebooks/03_evaluate.ipynb`` gathers the units into
``results/evaluation.csv`` (:func:`lib.pipeline.aggregate.aggregate_evaluation`).
"""
from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import pandas as pd

from .. import config, paths
from ..data import source_for
from ..io import read_json, write_csv, write_json
from ..paths import RunId
from ..progress import log

STAGE = "03_evaluate"
EVAL_VERSION = 3


def zero_shot_rows(profile: str) -> dict:
    f = paths.results_dir(profile) / "zero_shot.csv"
    if not f.exists():
        raise FileNotFoundError(f"{f} is missing: run the zero-shot stage first (make zero-shot PROFILE={profile})")
    zs = pd.read_csv(f)
    return {(r["task"], r["domain"]): r for r in zs.to_dict("records")}


def _file_hash(p: Path) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()[:16]


def evaluate_run(run: RunId, profile: str, base, base_state: str, source, zs_rows: dict,
                 batch_size: int, num_workers: int) -> list[dict]:
    """Rows of evaluation.csv for one complete run (cached in ``<run>/eval.json``)."""
    from .. import train
    from ..evaluate import MEASURES, eval_splits, run_measures, schema_of
    rdir = run.dir(profile)
    meta = train.load_meta(rdir)
    state_fp = _file_hash(rdir / RunId.STATE)
    splits = eval_splits(source)
    key = {"version": EVAL_VERSION, "state": state_fp, "request": meta.get("request_fingerprint"),
           "base": base_state,
           "data": {f"{t}/{d}": zs_rows[(t, d)]["data_fingerprint"] for t, d, _ in splits}}
    cache = read_json(rdir / "eval.json")
    if isinstance(cache, dict) and cache.get("key") == key and isinstance(cache.get("rows"), list):
        return CachedRows(cache["rows"])
    clf = train.load_run(base, rdir)  # builds a copy: the base model is never modified
    got = run_measures(clf, base, source, splits, profile, f"run:{state_fp}:{meta.get('request_fingerprint')}",
                       base_state, batch_size, num_workers)
    rows = []
    for task, domain, _ in splits:
        n, m = got[(task, domain)]
        z = zs_rows[(task, domain)]
        row = {"train_task": meta["task"], "method": meta["method"], "variant": meta["variant"],
               "seed": meta["seed"], "eval_task": task, "eval_domain": domain,
               "schema": schema_of(meta["task"], task, domain, source.task(task).id_domain), "n_images": n}
        for k in MEASURES:
            row[f"{k}_zero_shot"] = z[k]
            row[f"{k}_finetuned"] = m[k]
        rows.append(row)
    write_json(rdir / "eval.json", {"key": key, "rows": rows})
    return rows


def evaluate_unit(cfg: dict, task: str, method: str, progress: bool = True) -> pd.DataFrame:
    """Evaluate every run of one (task, method) unit; writes ``runs/<task>/<method>/evaluation.csv``.

    Checks come first, cheapest first: parameters, the data, the zero-shot table, the runs."""
    from .. import models
    from ..evaluate import EVAL_COLUMNS
    from .common import base_model
    from .finetune import finished_row
    from .grid import evaluation_units, runs
    started = time.time()
    profile = cfg["name"]
    p = config.stage_params(STAGE, profile)
    batch_size = config.check_type("batch_size", p["batch_size"], int, positive=True)
    num_workers = config.check_type("num_workers", p["num_workers"], int, nonneg=True)
    source = source_for(cfg)
    source.task(task)
    source.check()
    zs = zero_shot_rows(profile)
    rs = evaluation_units(runs(cfg)).get((task, method))
    if not rs:
        valid = ", ".join(f"{t}/{m}" for t, m in evaluation_units(runs(cfg)))
        raise ConfigError(f"({task}, {method}) is not an evaluation unit of profile {profile!r}; valid: {valid}")
    missing = [r.label for r in rs if finished_row(profile, r) is None]
    if missing:
        raise FileNotFoundError(f"{len(missing)} runs of unit {task}/{method} are not finished (e.g. {missing[0]}): "
                                f"make finetune PROFILE={profile}")
    base = base_model(cfg)
    base_state = models.state_fingerprint(base.model)
    rows, timing = [], []
    for i, r in enumerate(rs, 1):
        t0 = time.perf_counter()
        got = evaluate_run(r, profile, base, base_state, source, zs, batch_size, num_workers)
        seconds = time.perf_counter() - t0
        cached = isinstance(got, CachedRows)
        timing.append({"run": r.label, "seconds": seconds, "images": int(sum(x["n_images"] for x in got)),
                       "cached": cached})
        rows += got
        if progress:
            state = "cached" if cached else f"{timing[-1]['images'] / seconds:,.0f} images/s"
            log(f"[{i}/{len(rs)}] evaluated {r.label} ({state})")
    df = pd.DataFrame(rows)[EVAL_COLUMNS]
    out = paths.unit_eval_csv(profile, task, method)
    write_csv(df, out, float_format=None)
    write_json(paths.unit_eval_timing(profile, task, method), {"unit": f"{task}/{method}", "start": started,
                                                 "end": time.time(), "runs": timing})
    return df


class CachedRows(list):
    """Rows read back from a run's ``eval.json`` (nothing was encoded)."""


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print("usage: python -m lib.pipeline.evaluate <profile> <task> <method>", file=sys.stderr)
        return 2
    from .common import cli, setup
    profile, task, method = argv

    def work():
        config.check_profile_name(profile)
        evaluate_unit(setup(profile, STAGE, label=f"evaluate {task}/{method}"), task, method)
    return cli(work)


if __name__ == "__main__":
    sys.exit(main())
