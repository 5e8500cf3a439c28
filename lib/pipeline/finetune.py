"""Stage 02: fine-tune every run of one (task, method) unit in one kernel
(``notebooks/02_finetune.ipynb``).

A run is reused when its marker (``row.json``) parses, records the same request (task, method,
variant, options, hyperparameters, seed, base model, code) and its state file has the recorded
size; otherwise it is trained again. A new run is written completely into a temporary folder
first, the old marker is removed, the files are moved in and the new marker comes last, so a kill
at any moment leaves either the old complete run or no marker.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from .. import config, provenance
from ..config import ConfigError
from ..io import read_json, write_json
from ..paths import RunId
from ..progress import log
from .common import base_fingerprint, base_model, seed_everything

STAGE = "02_finetune"
RESULT_COLUMNS = ["task", "method", "variant", "seed", "trainable_params", "best_val_acc", "best_epoch",
                  "epochs", "lr", "options"]
TIMING_COLUMNS = ["train_seconds", "peak_memory_mb"]
CODE = ("methods", "train", "models", "data")


def run_options(profile: str, method: str, variant: str) -> dict:
    """The options of one (method, variant) of a profile (see :func:`lib.methods.variant_options`)."""
    from ..methods import METHODS, variant_options
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    mp = config.method_params(method, profile)
    return variant_options(method, variant, mp.get("options"), mp.get("variants"))


def recipe(profile: str) -> dict:
    """The stage's training recipe for a profile (``params/02_finetune.yaml`` + overlay), without the
    thread count (how many threads is not how to train: :func:`lib.pipeline.common.setup` uses it)."""
    return {k: v for k, v in config.stage_params(STAGE, profile).items() if k != "threads"}


def run_hp(profile: str, method: str) -> dict:
    """A run's hyperparameters: the stage's recipe and the method's learning rate."""
    from ..train import resolve_hp
    return resolve_hp({**recipe(profile), "lr": config.method_params(method, profile).get("lr")})


def request(run: RunId, hp: dict, opts: dict, base: str | dict, code: str) -> dict:
    """What identifies a run's result: the run, its recipe and options, the base model's
    fingerprint and the fingerprint of the code that trains it."""
    return {"task": run.task, "method": run.method, "variant": run.variant, "seed": run.seed, "hp": hp,
            "options": opts, "base_model": base, "code": code}


def finished_row(profile: str, run: RunId, want: str | None = None) -> dict | None:
    """The run's result row if it is complete (and made by request ``want``), else None."""
    d = run.dir(profile)
    row = read_json(run.marker(profile))
    if not isinstance(row, dict) or (want is not None and row.get("request_fingerprint") != want):
        return None
    meta = read_json(d / RunId.META)
    state = d / RunId.STATE
    if meta is None or not state.exists() or state.stat().st_size != meta.get("state_bytes", state.stat().st_size):
        return None
    return row


class Unit:
    """Everything one (task, method) unit loads once: profile, data, base model.

    By default the runs are the grid's runs of (task, method) and the recipe and options come from
    ``params/``; ``runs``, ``hp``, ``options`` and ``variants`` override them (for your own script,
    or a test). Every value is checked before any data or model is loaded."""

    def __init__(self, cfg: dict, task: str, method: str, runs: list[RunId] | None = None,
                 hp: dict | None = None, options: dict | None = None, variants: dict | None = None):
        from ..data import source_for
        from ..methods import METHODS, resolve_options, variant_options
        from ..train import resolve_hp
        from .grid import unit_runs
        self.cfg, self.task, self.method = cfg, task, method
        self.profile = cfg["name"]
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
        self.hp = resolve_hp(hp) if hp is not None else run_hp(self.profile, method)
        self.runs = list(runs) if runs is not None else unit_runs(cfg, task, method)
        for r in self.runs:
            config.check_type("seed", r.seed, int, nonneg=True)
        mp = config.method_params(method, self.profile) if options is None or variants is None else {}
        options = mp.get("options") if options is None else options
        variants = mp.get("variants") if variants is None else variants
        self.options = {r.variant: variant_options(method, r.variant, options, variants) for r in self.runs}
        for opts in self.options.values():
            resolve_options(method, opts)  # unknown / invalid options fail before any work
        self.source = source_for(cfg)
        self.spec = self.source.task(task)
        self.source.check()
        self._bundle = None
        self._splits = None
        self._identity = None

    def bundle(self):
        if self._bundle is None:
            self._bundle = base_model(self.cfg)
        return self._bundle

    def splits(self):
        if self._splits is None:
            self._splits = (self.source.load(self.task, self.spec.id_domain, "train"),
                            self.source.load(self.task, self.spec.id_domain, "val"))
        return self._splits

    def request(self, r: RunId) -> dict:
        """The run's request; the base model's and the code's fingerprints are read once per unit
        (first use, so a missing checkpoint is reported only when a run needs it)."""
        if self._identity is None:
            self._identity = (base_fingerprint(self.cfg), config.code_fingerprint(*CODE))
        return request(r, self.hp, self.options[r.variant], *self._identity)

    def plan(self) -> pd.DataFrame:
        """Each run of the unit and whether it is already complete."""
        rows = []
        for r in self.runs:
            want = config.fingerprint(self.request(r))
            rows.append({"run": r.label, "variant": r.variant, "seed": r.seed, "lr": self.hp["lr"],
                         "done": finished_row(self.profile, r, want) is not None})
        return pd.DataFrame(rows)

    def run(self, r: RunId, progress: bool = True) -> dict:
        """Fine-tune one run of the unit (or reuse it); returns its result row."""
        from .. import train
        opts = self.options[r.variant]
        req = self.request(r)
        want = config.fingerprint(req)
        row = finished_row(self.profile, r, want)
        if row is not None:
            return {**row, "reused": True}
        seed_everything(r.seed)  # as a fresh process would be
        train_split, val_split = self.splits()
        res = train.finetune(self.bundle(), self.method, opts, train_split, val_split, self.hp, r.seed,
                             progress=progress)
        row = {"task": r.task, "method": r.method, "variant": r.variant, "seed": r.seed,
               "trainable_params": int(res.trainable_params), "best_val_acc": float(res.best_val_acc),
               "best_epoch": int(res.best_epoch), "epochs": self.hp["epochs"], "lr": self.hp["lr"],
               "options": json.dumps(opts, sort_keys=True),
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
        rows, t0 = [], time.perf_counter()
        for i, r in enumerate(self.runs, 1):
            row = self.run(r, progress=progress)
            rows.append(row)
            state = "reused" if row["reused"] else f"trained in {row['train_seconds']:.1f} s"
            log(f"[{i}/{len(self.runs)}] {r.label}: best val acc {row['best_val_acc']:.3f} ({state}); "
                f"unit {time.perf_counter() - t0:.0f} s")
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
