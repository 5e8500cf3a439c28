"""Schemas of the result tables and the run markers, checked where they are read: one place, so
the pipeline (``lib.pipeline.aggregate``, ``lib.pipeline.evaluate``, ``lib.pipeline.finetune``) and
the analysis validate with the same rules.

    from lib import schema
    ev = schema.read_table(path, schema.EVALUATION)      # SchemaError naming the file if invalid
    problems = schema.problems(df, schema.FINETUNE)       # the same checks, as a list of strings

A table's schema is its columns (each with a dtype, a range, allowed values and whether a blank /
NaN cell is allowed), a key that must be unique, and row checks between columns. A CSV that does
not fit is refused with every problem listed (file, column, rows, values) and the command that
rebuilds it; nothing is silently dropped, filled or coerced.

Why a small schema of our own rather than ``pandera``: pandera is not installed, and a new
dependency needs the one lock for every platform (``requirements-lock.txt``) re-resolved and
re-checked; the checks needed here (columns, four dtypes, ranges, no NaN, a unique key, a few row
checks) are ~150 lines, read the CSV exactly as the analysis reads it (``pandas.read_csv``) and
give messages that name the file and the fix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .io import csv_hash_problem

EPS = 1e-6  # float tolerance of a range (cosines of normalised float32 vectors exceed 1 by ~1e-7)


class SchemaError(ValueError):
    """A table or marker that does not fit its schema (the message names the file and the fix)."""


@dataclass(frozen=True)
class Col:
    """One column: ``kind`` is ``str``, ``int``, ``float`` or ``bool``; ``lo`` / ``hi`` an
    inclusive range; ``nullable`` whether a blank / NaN cell is allowed; ``choices`` the allowed
    values. Floats must be finite (a NaN is a blank: allowed only where ``nullable``)."""
    name: str
    kind: str
    lo: float | None = None
    hi: float | None = None
    nullable: bool = False
    choices: tuple = ()
    doc: str = ""


@dataclass(frozen=True)
class Table:
    """A table's columns (in order), its unique key, row checks ``(description, fn(df) -> bad-row
    mask)`` and the command that rebuilds it (``fix``, ``{profile}`` filled in when known)."""
    name: str
    columns: tuple[Col, ...]
    key: tuple[str, ...] = ()
    checks: tuple[tuple[str, Callable], ...] = ()
    fix: str = ""
    extra_ok: bool = True   # columns beyond the schema are allowed (and not checked)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


# ----------------------------------------------------------------------------- checking
def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _as_bool(s: pd.Series) -> pd.Series | None:
    """A boolean column as read from CSV (True/False, or their text); None if some value is not."""
    if s.dtype == bool:
        return s
    m = {True: True, False: False, "True": True, "False": False, "true": True, "false": False}
    out = s.map(lambda v: m.get(v) if isinstance(v, (bool, np.bool_, str)) else None)
    return None if out.isna().any() else out.astype(bool)


def _rows(mask: pd.Series, limit: int = 5) -> str:
    idx = [int(i) for i in np.flatnonzero(np.asarray(mask))]
    shown = ", ".join(str(i + 2) for i in idx[:limit])  # line numbers in the CSV (header = line 1)
    return f"{len(idx)} row(s) (CSV line {shown}{', ...' if len(idx) > limit else ''})"


def column_problems(df: pd.DataFrame, col: Col) -> list[str]:
    s = df[col.name]
    blank = s.isna() | s.map(lambda v: isinstance(v, str) and not v.strip())
    out = []
    if blank.any() and not col.nullable:
        out.append(f"column {col.name!r}: blank or NaN in {_rows(blank)}")
    v = s[~blank]
    if not len(v):
        return out
    if col.kind == "str":
        bad = ~v.map(lambda x: isinstance(x, str))
        if bad.any():
            out.append(f"column {col.name!r}: not text in {_rows(bad.reindex(s.index, fill_value=False))}")
    elif col.kind == "bool":
        if _as_bool(v) is None:
            out.append(f"column {col.name!r}: values other than True / False ({sorted(set(map(str, v)))[:5]})")
        return out
    elif col.kind in ("int", "float"):
        num = pd.to_numeric(v, errors="coerce")
        bad = num.isna() | ~np.isfinite(num.astype(float))
        if bad.any():
            out.append(f"column {col.name!r}: not a finite number in {_rows(bad.reindex(s.index, fill_value=False))} "
                       f"(e.g. {v[bad].iloc[0]!r})")
        num = num[~bad].astype(float)
        if col.kind == "int":
            frac = num != np.round(num)
            if frac.any():
                out.append(f"column {col.name!r}: not an integer in {_rows(frac.reindex(s.index, fill_value=False))}")
        tol = EPS if col.kind == "float" else 0
        low = num < col.lo - tol if col.lo is not None else num < -math.inf
        high = num > col.hi + tol if col.hi is not None else num > math.inf
        if (low | high).any():
            bad_v = num[low | high].iloc[0]
            out.append(f"column {col.name!r}: outside [{col.lo}, {col.hi}] in "
                       f"{_rows((low | high).reindex(s.index, fill_value=False))} (e.g. {bad_v:g})")
    if col.choices:
        bad = ~v.isin(col.choices)
        if bad.any():
            out.append(f"column {col.name!r}: values {sorted(set(map(str, v[bad])))[:5]} not in {list(col.choices)}")
    return out


def problems(df: pd.DataFrame, table: Table) -> list[str]:
    """Every way ``df`` does not fit ``table`` (an empty list when it fits)."""
    missing = [c for c in table.names if c not in df.columns]
    out = [f"missing column(s) {missing}"] if missing else []
    if not table.extra_ok:
        extra = [c for c in df.columns if c not in table.names]
        if extra:
            out.append(f"unexpected column(s) {extra}")
    for col in table.columns:
        if col.name in df.columns:
            out += column_problems(df, col)
    if not len(df):
        out.append("no rows")
    if out:  # row checks assume well-typed columns
        return out
    if table.key:
        dup = df.duplicated(list(table.key), keep=False)
        if dup.any():
            out.append(f"key {list(table.key)} repeated in {_rows(dup)}")
    for what, fn in table.checks:
        bad = pd.Series(np.asarray(fn(df), dtype=bool), index=df.index)
        if bad.any():
            out.append(f"{what}: violated in {_rows(bad)}")
    return out


def validate(df: pd.DataFrame, table: Table, source: str | Path, profile: str | None = None) -> pd.DataFrame:
    """``df`` if it fits ``table``, its boolean columns as bool (CSV text 'True' / 'False' read back);
    else :class:`SchemaError` naming ``source``, every problem and the fix."""
    found = problems(df, table)
    if found:
        fix = table.fix.format(profile=profile or "<profile>") if table.fix else ""
        raise SchemaError(f"{source} is not a valid {table.name} table:\n  - " + "\n  - ".join(found)
                          + (f"\nFix: {fix}" if fix else ""))
    out = df.copy()
    for col in table.columns:
        if col.kind == "bool":
            out[col.name] = _as_bool(out[col.name])
    return out


def read_table(path: str | Path, table: Table, profile: str | None = None, check_hash: bool = True) -> pd.DataFrame:
    """Read a CSV and validate it (:func:`validate`); with ``check_hash`` also refuse a file whose
    bytes no longer match the hash its provenance file recorded (:func:`lib.io.csv_hash_problem`)."""
    path = Path(path)
    if not path.exists():
        fix = table.fix.format(profile=profile or "<profile>") if table.fix else ""
        raise FileNotFoundError(f"{path} is missing" + (f": {fix}" if fix else ""))
    if check_hash:
        why = csv_hash_problem(path)
        if why:
            fix = table.fix.format(profile=profile or "<profile>") if table.fix else ""
            raise SchemaError(why + (f". Fix: {fix}" if fix else ""))
    text_cols = {c.name: str for c in table.columns if c.kind == "str"}
    return validate(pd.read_csv(path, dtype=text_cols), table, path, profile)


def record_problems(rec, fields: dict[str, tuple]) -> list[str]:
    """Problems of a JSON record (a run marker): ``fields`` maps a key to ``(kind, lo, hi)``
    (kind ``str``, ``int``, ``real`` (finite) or ``bool``); every key is required."""
    if not isinstance(rec, dict):
        return [f"not a JSON object (got {type(rec).__name__})"]
    out = []
    for k, (kind, lo, hi) in fields.items():
        if k not in rec:
            out.append(f"no {k!r}")
            continue
        v = rec[k]
        ok = {"str": lambda x: isinstance(x, str) and bool(x), "int": _is_int, "bool": lambda x: isinstance(x, bool),
              "real": lambda x: _is_real(x) and math.isfinite(x)}[kind](v)
        if not ok:
            out.append(f"{k!r} is {v!r}, not a{'n' if kind == 'int' else ''} {kind if kind != 'real' else 'finite number'}")
        elif kind in ("int", "real") and ((lo is not None and v < lo) or (hi is not None and v > hi)):
            out.append(f"{k!r} is {v!r}, outside [{lo}, {hi}]")
    return out


# ----------------------------------------------------------------------------- the tables
# Each measure of lib.evaluate.measures and its range (lib.metrics): accuracy in [0, 1]; cosine
# based measures in [-1, 1]; the modality gap (distance of two centroids of unit vectors) in
# [0, 2]. class_ss is undefined (NaN) for a split with fewer than 2 classes present.
MEASURE_RANGES = {"acc": (0.0, 1.0), "acs": (-1.0, 1.0), "ss": (-1.0, 1.0), "class_ss": (-1.0, 1.0),
                  "modality_gap": (0.0, 2.0), "iimm": (-1.0, 1.0)}
NULLABLE_MEASURES = ("class_ss",)
SCHEMAS = ("ID", "DG", "CF")


def _flip_check(df: pd.DataFrame) -> np.ndarray:
    """n_won - n_lost must equal the accuracy difference in images (both from the same predictions)."""
    n = df["n_images"].astype(float)
    diff = np.round(n * (df["acc_finetuned"].astype(float) - df["acc_zero_shot"].astype(float)))
    return (df["n_won"].astype(float) - df["n_lost"].astype(float)) != diff


def _measure_cols(suffixes: tuple[str, ...]) -> tuple[Col, ...]:
    return tuple(Col(f"{m}_{w}", "float", lo, hi, nullable=m in NULLABLE_MEASURES)
                 for m, (lo, hi) in MEASURE_RANGES.items() for w in suffixes)


EVALUATION = Table(
    "evaluation",
    (Col("train_task", "str"), Col("method", "str"), Col("variant", "str"), Col("seed", "int", 0),
     Col("eval_task", "str"), Col("eval_domain", "str"), Col("schema", "str", choices=SCHEMAS),
     Col("n_images", "int", 1),
     *_measure_cols(("zero_shot", "finetuned")),
     Col("n_lost", "int", 0, doc="images the zero-shot model classified correctly and the run wrongly"),
     Col("n_won", "int", 0, doc="images the zero-shot model classified wrongly and the run correctly")),
    key=("train_task", "method", "variant", "seed", "eval_task", "eval_domain"),
    checks=(("n_lost + n_won <= n_images",
             lambda d: d["n_lost"].astype(float) + d["n_won"].astype(float) > d["n_images"].astype(float)),
            ("n_won - n_lost == round(n_images * (acc_finetuned - acc_zero_shot))", _flip_check),
            ("schema ID / DG only on the trained task, CF only on others",
             lambda d: (d["schema"] == "CF") == (d["train_task"] == d["eval_task"]))),
    fix="delete that file and evaluate again: make evaluate PROFILE={profile}")

FINETUNE = Table(
    "finetune",
    (Col("task", "str"), Col("method", "str"), Col("variant", "str"), Col("seed", "int", 0),
     Col("trainable_params", "int", 0), Col("best_val_acc", "float", 0.0, 1.0), Col("best_epoch", "int", 0),
     Col("epochs", "int", 1), Col("lr", "float", 0.0), Col("nonfinite", "bool"), Col("options", "str"),
     Col("zero_shot_val_acc", "float", 0.0, 1.0),
     Col("no_val_gain", "bool", doc="best_val_acc <= zero_shot_val_acc (same ID validation split)"),
     Col("train_seconds", "float", 0.0), Col("peak_memory_mb", "float", 0.0)),
    key=("task", "method", "variant", "seed"),
    checks=(("best_epoch <= epochs", lambda d: d["best_epoch"].astype(float) > d["epochs"].astype(float)),
            ("lr > 0", lambda d: d["lr"].astype(float) <= 0),
            ("no_val_gain == (best_val_acc <= zero_shot_val_acc)",
             lambda d: _as_bool(d["no_val_gain"]) != (d["best_val_acc"].astype(float)
                                                        <= d["zero_shot_val_acc"].astype(float)))),
    fix="rebuild it from the runs: python -m lib.pipeline.aggregate finetune {profile}")

ZERO_SHOT = Table(
    "zero_shot",
    (Col("task", "str"), Col("domain", "str"), Col("split", "str"), Col("domain_kind", "str", choices=("ID", "OOD")),
     Col("n_images", "int", 1), Col("n_classes", "int", 1), Col("chance", "float", 0.0, 1.0),
     *(Col(m, "float", lo, hi, nullable=m in NULLABLE_MEASURES) for m, (lo, hi) in MEASURE_RANGES.items()),
     Col("data_fingerprint", "str")),
    key=("task", "domain"),
    fix="delete it and rerun the zero-shot stage: make zero-shot PROFILE={profile}")

# A run's marker (row.json), as lib.pipeline.finetune writes it: key -> (kind, lo, hi).
MARKER_FIELDS = {
    "task": ("str", None, None), "method": ("str", None, None), "variant": ("str", None, None),
    "seed": ("int", 0, None), "trainable_params": ("int", 0, None), "best_val_acc": ("real", 0.0, 1.0),
    "best_epoch": ("int", 0, None), "epochs": ("int", 1, None), "lr": ("real", 0.0, None),
    "nonfinite": ("bool", None, None), "options": ("str", None, None), "train_seconds": ("real", 0.0, None),
    "peak_memory_mb": ("real", 0.0, None), "request_fingerprint": ("str", None, None),
}
