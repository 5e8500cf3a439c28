"""Stage 02: fine-tune every run of one task's unit in one kernel (``notebooks/02_finetune.ipynb``):
for each method, its learning-rate sweep (seed 0 at every rate of ``lr_grid``), the rate chosen on
ID validation accuracy (:func:`choose_lr`), then the study's seeds and variants at that rate.

A run is reused when its marker (``row.json``) parses, records the same request (task, method,
variant, options, hyperparameters, seed, base model, code) and its state file has the recorded
size; otherwise it is trained again.

A marker is also verified by content when read (:func:`marker_problem`): every field of
:data:`lib.schema.MARKER_FIELDS` present with its type and range (accuracy a finite number in
[0, 1], ...), the run's identity that of its folder, and its numbers those of the run's
``meta.json`` (request, trainable parameters, epochs and rate, divergence, the best epoch's
validation accuracy in the training history). Markers written since reliability v3 also record
the sha256 of the state file, of ``meta.json`` and of their own fields (``state_sha256``,
``meta_sha256``, ``row_sha256``), which are checked when present; older markers have none and are
verified by the checks above, so runs finished before stay reusable. A marker that fails is
**not finished**: the fine-tuning unit trains the run again (the log names the file and why
once), and the aggregate and the evaluation refuse with the same reason. A new run is written completely into a temporary folder
first, the old marker is removed, the files are moved in and the new marker comes last, so a kill
at any moment leaves either the old complete run or no marker.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from .. import config, provenance, schema, train
from ..config import ConfigError
from ..data import source_for
from ..io import content_hash, file_sha256, read_json, write_json
from ..methods import get_spec, resolve_options, variant_options
from ..paths import RunId
from ..progress import log
from ..selection import SELECTION_RULE, choose_lr, half_decade, next_rate
from ..train import resolve_hp
from . import codegraph
from .common import base_fingerprint, base_model, seed_everything
from .grid import lr_grid, run_options, sweep_seed, unit_runs

# the method's parameters (lib.pipeline.grid) and the selection rule (lib.selection), read here too
__all__ = ["lr_grid", "run_options", "SELECTION_RULE", "choose_lr", "half_decade"]

STAGE = "02_finetune"
RESULT_COLUMNS = ["task", "method", "variant", "seed", "trainable_params", "best_val_acc", "best_epoch",
                  "epochs", "lr", "nonfinite", "options"]
TIMING_COLUMNS = ["train_seconds", "peak_memory_mb"]
# the code a run's result depends on: lib.train and every lib module it imports, transitively
# (lib.pipeline.codegraph); a change to any of them (lib/schedule.py too) trains the runs again
CODE = ("lib.train",)
NOT_SWEEP = ("threads", "tasks_per_job", "lr_extend", "lr_rule")  # stage params that say how to run / search, not how to train


def recipe(profile: str) -> dict:
    """The stage's training recipe for a profile (``params/02_finetune.yaml`` + overlay), without the
    thread count (how many threads is not how to train: :func:`lib.pipeline.common.setup` uses it)."""
    return {k: v for k, v in config.stage_params(STAGE, profile).items() if k not in NOT_SWEEP}


def lr_extend(profile: str) -> int:
    """How many rates a sweep may add beyond an end of its grid (``lr_extend``, 0 if unset)."""
    return int(config.stage_params(STAGE, profile).get("lr_extend") or 0)


def lr_rule(profile: str) -> str:
    """The selection rule of the profile's sweeps (``lr_rule``: "best", the default, or "one_se";
    :mod:`lib.selection`)."""
    return str(config.stage_params(STAGE, profile).get("lr_rule") or "best")


def code_hash(root=codegraph.ROOT) -> str:
    """The fingerprint of the training code: the hash of :data:`CODE`'s import closure under ``root``."""
    return codegraph.closure_hash(*CODE, root=root)


def request(run: RunId, hp: dict, opts: dict, base: str | dict, code: str) -> dict:
    """What identifies a run's result: the run, its recipe and options, the base model's
    fingerprint and the fingerprint of the code that trains it. A sweep point and the study's run
    of the same seed at the same rate make the same request (the second reuses the first)."""
    return {"task": run.task, "method": run.method, "variant": run.variant, "seed": run.seed, "hp": hp,
            "options": opts, "base_model": base, "code": code}


MARKER_HASHES = ("state_sha256", "meta_sha256", "row_sha256")  # recorded by markers written since v3
_REPORTED: set = set()


def _check_marker(profile: str, run: RunId, want: str | None = None) -> tuple[dict | None, str | None, bool]:
    """(row, None, _) for a finished run; else (None, why, damaged): ``damaged`` when the files are
    there but invalid or inconsistent (not for a run that is merely absent or made for another
    request)."""
    d, f = run.dir(profile), run.marker(profile)
    if not f.exists():
        return None, f"{f} does not exist", False
    row = read_json(f)
    if row is None:
        return None, f"{f} does not parse", True
    bad = schema.record_problems(row, schema.MARKER_FIELDS)
    if bad:
        return None, f"{f}: " + "; ".join(bad), True
    ident = [k for k in ("task", "method", "variant", "seed") if row[k] != getattr(run, k)]
    if run.is_sweep and not math.isclose(row["lr"], run.lr, rel_tol=1e-9):
        ident.append("lr")
    if ident:
        return None, f"{f}: {', '.join(f'{k} {row[k]!r}' for k in ident)} is not this run's ({run.label})", True
    if row["best_epoch"] > row["epochs"]:
        return None, f"{f}: best_epoch {row['best_epoch']} > epochs {row['epochs']}", True
    if want is not None and row["request_fingerprint"] != want:
        return None, f"{f} was made for another request (parameters, data, base model or code changed)", False
    meta = read_json(d / RunId.META)
    state = d / RunId.STATE
    if not isinstance(meta, dict):
        return None, f"{d / RunId.META} is missing or does not parse", True
    if not state.exists():
        return None, f"{state} is missing", True
    if state.stat().st_size != meta.get("state_bytes", state.stat().st_size):
        return None, f"{state} has {state.stat().st_size} bytes, meta.json recorded {meta.get('state_bytes')}", True
    why = _meta_mismatch(row, meta)
    if why:
        return None, f"{f} disagrees with {d / RunId.META}: {why}", True
    for k, got in (("state_sha256", lambda: file_sha256(state)), ("meta_sha256", lambda: file_sha256(d / RunId.META)),
                   ("row_sha256", lambda: content_hash({x: v for x, v in row.items() if x != "row_sha256"}))):
        if k in row and row[k] != got():
            return None, f"{f}: {k} does not match the content (edited or damaged after the run was written)", True
    return row, None, False


def _meta_mismatch(row: dict, meta: dict) -> str | None:
    """Where a marker's numbers differ from its run's meta.json (keys meta.json lacks are skipped)."""
    pairs = [(k, meta.get(k)) for k in ("request_fingerprint", "trainable_params", "task", "method", "variant", "seed")]
    hp = meta.get("hp") if isinstance(meta.get("hp"), dict) else {}
    pairs += [("epochs", hp.get("epochs")), ("lr", hp.get("lr"))]
    for k, v in pairs:
        if v is not None and v != row[k]:
            return f"{k} {row[k]!r} vs {v!r}"
    if "nonfinite" in meta and bool(meta["nonfinite"]) != row["nonfinite"]:
        return f"nonfinite {row['nonfinite']!r} vs {meta['nonfinite']!r}"
    hist = meta.get("history")
    if isinstance(hist, list) and row["best_epoch"] > 0:
        best = [h.get("val_acc") for h in hist if isinstance(h, dict) and h.get("epoch") == row["best_epoch"]]
        if best != [row["best_val_acc"]]:
            return (f"best_val_acc {row['best_val_acc']!r} is not the validation accuracy of epoch "
                    f"{row['best_epoch']} in the training history ({best[0] if best else 'no such epoch'!r})")
    return None


def marker_problem(profile: str, run: RunId, want: str | None = None) -> str | None:
    """Why ``run`` is not a finished run (made by request ``want``), naming the file; None if it is."""
    return _check_marker(profile, run, want)[1]


def finished_row(profile: str, run: RunId, want: str | None = None) -> dict | None:
    """The run's result row if it is complete and valid (and made by request ``want``), else None.
    A damaged or edited run is logged once per process (file and reason) and counts as not finished."""
    row, why, damaged = _check_marker(profile, run, want)
    if damaged and why not in _REPORTED:
        _REPORTED.add(why)
        log(f"{run.label} is not reused: {why}")
    return row


class TaskData:
    """What every method of one task's unit loads once: data splits, base model, fingerprints."""

    def __init__(self, cfg: dict, task: str):
        self.cfg, self.task = cfg, task
        self.source = source_for(cfg)
        self.spec = self.source.task(task)
        self.source.check()
        self._bundle = self._splits = self._identity = None

    def bundle(self):
        if self._bundle is None:
            self._bundle = base_model(self.cfg)
        return self._bundle

    def splits(self):
        if self._splits is None:
            self._splits = (self.source.load(self.task, self.spec.id_domain, "train"),
                            self.source.load(self.task, self.spec.id_domain, "val"))
        return self._splits

    def identity(self) -> tuple:
        """The base model's and the code's fingerprints (read on first use, so a missing
        checkpoint is reported only when a run needs it)."""
        if self._identity is None:
            self._identity = (base_fingerprint(self.cfg), code_hash())
        return self._identity


class Unit:
    """The runs of one (task, method): its learning-rate sweep (seed 0 at every rate of the grid),
    the selection (:func:`choose_lr`), then the study's runs (seeds, variants) at the selected rate.

    By default the runs, the grid, the recipe and the options come from the profile and ``params/``;
    ``runs``, ``hp`` (with ``lr``: that one rate, no sweep), ``options`` and ``variants`` override
    them (for your own script, or a test). Every value is checked before any data or model is
    loaded."""

    def __init__(self, cfg: dict, task: str, method: str, runs: list[RunId] | None = None,
                 hp: dict | None = None, options: dict | None = None, variants: dict | None = None,
                 shared: TaskData | None = None):
        self.cfg, self.task, self.method = cfg, task, method
        self.profile = cfg["name"]
        get_spec(method)  # the registry's check, for a caller that did not come through the grid
        if hp is not None:
            self.recipe = {k: v for k, v in hp.items() if k != "lr"}
            self.grid = [hp["lr"]] if hp.get("lr") is not None else lr_grid(self.profile, method)
            self.extend, self.rule = 0, "best"
        else:
            self.recipe, self.grid = recipe(self.profile), lr_grid(self.profile, method)
            self.extend, self.rule = lr_extend(self.profile), lr_rule(self.profile)
        self.grid = [resolve_hp({**self.recipe, "lr": lr})["lr"] for lr in self.grid]
        self.runs = list(runs) if runs is not None else [r for r in unit_runs(cfg, task) if r.method == method]
        for r in self.runs:
            config.check_type("seed", r.seed, int, nonneg=True)
        self.seed0 = sweep_seed(cfg) if runs is None else min((r.seed for r in self.runs), default=0)
        mp = config.method_params(method, self.profile) if options is None or variants is None else {}
        options = mp.get("options") if options is None else options
        variants = mp.get("variants") if variants is None else variants
        self.options = {r.variant: variant_options(method, r.variant, options, variants)
                        for r in [RunId(task, method, "default", self.seed0)] + self.runs}
        for opts in self.options.values():
            resolve_options(method, opts)  # unknown / invalid options fail before any work
        self.shared = shared or TaskData(cfg, task)

    # ------------------------------------------------------------------ identity and selection
    def hp(self, lr: float) -> dict:
        return resolve_hp({**self.recipe, "lr": lr})

    def request(self, r: RunId, lr: float) -> dict:
        return request(r, self.hp(lr), self.options[r.variant], *self.shared.identity())

    def _want(self, r: RunId, lr: float) -> str:
        return config.fingerprint(self.request(r, lr))

    def sweep_state(self) -> tuple[list[RunId], list[dict | None], float | None]:
        """The sweep as far as the finished points define it: its points (the grid, plus the rates
        the extension rule of :data:`SELECTION_RULE` added), each point's result row (None while
        not done) and the selected rate (None until every point needed is done). Recomputed from
        the runs on disk, so a resumed unit selects exactly as an uninterrupted one."""
        if len(self.grid) < 2:
            return [], [], self.grid[0]
        lrs, added = sorted(self.grid), 0
        while True:
            pts = [RunId(self.task, self.method, "default", self.seed0, lr) for lr in lrs]
            rows = [finished_row(self.profile, r, self._want(r, r.lr)) for r in pts]
            if any(x is None for x in rows):
                return pts, rows, None
            nxt = next_rate(lrs, rows, added, self.extend)
            if nxt is None:
                n_val = len(self.shared.splits()[1].labels) if self.rule == "one_se" else None
                return pts, rows, float(choose_lr(rows, self.rule, n_val))
            lrs, added = sorted(lrs + [nxt]), added + 1

    @property
    def sweep(self) -> list[RunId]:
        return self.sweep_state()[0]

    def selected_lr(self) -> float | None:
        """The selected rate; None while the sweep is incomplete."""
        return self.sweep_state()[2]

    def plan(self) -> pd.DataFrame:
        """Each run of the unit, its rate (blank until the sweep selects it) and whether it is done."""
        pts, _, lr_sel = self.sweep_state()
        rows = []
        for r in pts + self.runs:
            lr = r.lr if r.is_sweep else lr_sel
            done = lr is not None and finished_row(self.profile, r, self._want(r, lr)) is not None
            rows.append({"run": r.label, "method": r.method, "variant": r.variant, "seed": r.seed,
                         "sweep": r.is_sweep, "lr": lr, "done": done})
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ training
    def run(self, r: RunId, progress: bool = True) -> dict:
        """Fine-tune one run of the unit (or reuse it); returns its result row. A study run needs
        the sweep done; the sweep's point at the selected rate is reused as its seed's run."""
        lr = r.lr if r.is_sweep else self.selected_lr()
        if lr is None:
            raise RuntimeError(f"{r.label}: the learning-rate sweep of {self.task}/{self.method} is not "
                               f"complete; run the unit (Unit.run_all) so the sweep comes first")
        opts, req = self.options[r.variant], self.request(r, lr)
        want = config.fingerprint(req)
        row = finished_row(self.profile, r, want)
        if row is not None:
            return {**row, "reused": True}
        twin = None if r.is_sweep or r.variant != "default" or r.seed != self.seed0 else \
            RunId(self.task, self.method, "default", self.seed0, lr)
        row = None if twin is None else finished_row(self.profile, twin, want)
        if row is not None:
            src = twin.dir(self.profile)
            _commit(r.dir(self.profile), lambda staged: [shutil.copy2(src / n, staged / n)
                                                         for n in (RunId.STATE, RunId.META)], row)
            return {**row, "reused": True}
        seed_everything(r.seed)  # as a fresh process would be
        train_split, val_split = self.shared.splits()
        hp = self.hp(lr)
        res = train.finetune(self.shared.bundle(), self.method, opts, train_split, val_split, hp, r.seed,
                             progress=progress)
        row = {"task": r.task, "method": r.method, "variant": r.variant, "seed": r.seed,
               "trainable_params": int(res.trainable_params), "best_val_acc": float(res.best_val_acc),
               "best_epoch": int(res.best_epoch), "epochs": hp["epochs"], "lr": hp["lr"],
               "nonfinite": res.nonfinite is not None, "options": json.dumps(opts, sort_keys=True),
               "train_seconds": float(res.train_seconds), "peak_memory_mb": float(res.peak_memory_mb),
               "request_fingerprint": want}
        meta = {"request": req, "request_fingerprint": want, "history": res.history, "method": r.method,
                "options": opts, "variant": r.variant, "task": r.task, "seed": r.seed,
                "trainable_params": int(res.trainable_params),
                "data": {"train": train_split.fingerprint, "val": val_split.fingerprint},
                "provenance": provenance.collect(self.cfg, stage=STAGE)}
        _commit(r.dir(self.profile), lambda staged: train.save_run(res, staged, meta), row)
        return {**row, "reused": False}

    def run_all(self, progress: bool = True) -> pd.DataFrame:
        """The sweep (extended while its best rate is an end), the selection, then the study's
        runs; one log line per run."""
        rows, t0, done = [], time.perf_counter(), set()

        def one(r: RunId, i: int, n: int):
            row = self.run(r, progress=progress)
            rows.append({**row, "sweep": r.is_sweep})
            state = "reused" if row["reused"] else f"trained in {row['train_seconds']:.1f} s"
            bad = " DIVERGED" if row.get("nonfinite") else ""
            log(f"[{i}/{n}] {r.label}: best val acc {row['best_val_acc']:.3f}{bad} ({state}); "
                f"unit {time.perf_counter() - t0:.0f} s")
        while True:
            pts, _, sel = self.sweep_state()
            todo = [r for r in pts if r not in done]
            if not todo:
                break
            for r in todo:
                done.add(r)
                one(r, len(done), len(pts) + len(self.runs))
        if pts:
            extra = [f"{r.lr:g}" for r in pts if r.lr not in self.grid]
            log(f"{self.task}/{self.method}: selected lr {sel:g} of {', '.join(f'{r.lr:g}' for r in pts)}"
                + (f" (added beyond the grid: {', '.join(extra)})" if extra else "")
                + f" (ID validation, seed {self.seed0})")
        for k, r in enumerate(self.runs, 1):
            one(r, len(pts) + k, len(pts) + len(self.runs))
        return pd.DataFrame(rows)


class TaskUnit:
    """One task's unit of work: every method of the grid on that task (each :class:`Unit`: sweep,
    selection, seeds, variants) in one kernel, sharing the data and the base model."""

    def __init__(self, cfg: dict, task: str, methods: list[str] | None = None):
        rs = unit_runs(cfg, task)
        order = list(dict.fromkeys(r.method for r in rs))
        methods = order if methods is None else list(methods)
        unknown = [m for m in methods if m not in order]
        if unknown:
            raise ConfigError(f"method(s) {unknown} have no runs on task {task!r} in profile "
                              f"{cfg['name']!r}; valid: {', '.join(order)}")
        shared = TaskData(cfg, task)
        self.cfg, self.task = cfg, task
        self.units = [Unit(cfg, task, m, shared=shared) for m in methods]

    @property
    def runs(self) -> list[RunId]:
        """Every run of the unit: the sweep points found so far, then the study's runs."""
        return [r for u in self.units for r in u.sweep + u.runs]

    def plan(self) -> pd.DataFrame:
        return pd.concat([u.plan() for u in self.units], ignore_index=True)

    def run_all(self, progress: bool = True) -> pd.DataFrame:
        return pd.concat([u.run_all(progress=progress) for u in self.units], ignore_index=True)

    def sweep(self) -> pd.DataFrame:
        """Every sweep point of the unit with its validation accuracy and the selected rate."""
        return sweep_table(self.units)


def sweep_table(units: list[Unit], states: list[tuple] | None = None) -> pd.DataFrame:
    """One row per sweep point (task, method, lr, seed, best_val_acc, best_epoch, nonfinite,
    in_grid, selected); a (task, method) without a sweep (one rate) gets one row, selected.
    ``states``: the units' :meth:`Unit.sweep_state` when the caller has them already."""
    rows = []
    for u, (pts, prows, sel) in zip(units, states or [u.sweep_state() for u in units]):
        if len(u.grid) < 2:
            rows.append({"task": u.task, "method": u.method, "lr": sel, "seed": None, "best_val_acc": None,
                         "best_epoch": None, "nonfinite": None, "in_grid": True, "selected": True})
        for r, row in zip(pts, prows):
            rows.append({"task": u.task, "method": u.method, "lr": r.lr, "seed": r.seed,
                         "best_val_acc": None if row is None else row["best_val_acc"],
                         "best_epoch": None if row is None else row["best_epoch"],
                         "nonfinite": None if row is None else bool(row.get("nonfinite")),
                         "in_grid": r.lr in u.grid, "selected": sel is not None and r.lr == sel})
    return pd.DataFrame(rows)


def _commit(rdir: Path, write_files, row: dict) -> None:
    """Write a run's files into a temporary folder, then swap them in; the marker goes last."""
    rdir.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=".tmp-new-", dir=rdir))
    try:
        write_files(staged)
        marker = rdir / RunId.MARKER
        if marker.exists():
            marker.unlink()
        for name in (RunId.STATE, RunId.META):
            os.replace(staged / name, rdir / name)
        row = {k: v for k, v in row.items() if k not in MARKER_HASHES}
        row["state_sha256"] = file_sha256(rdir / RunId.STATE)
        row["meta_sha256"] = file_sha256(rdir / RunId.META)
        row["row_sha256"] = content_hash(row)
        write_json(marker, row)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def metas(profile: str, runs: list[RunId]) -> list[dict]:
    """The ``meta.json`` of each complete run (for the training curves)."""
    out = []
    for r in runs:
        m = read_json(r.dir(profile) / RunId.META)
        if m is not None:
            out.append({**m, "label": r.label})
    return out
