"""The paper's claims, each a small registered function ``(tables, subset) -> Verdict``.

Every claim reads the tables of :func:`lib.analysis.tables.compute` (it computes nothing new) and
applies one rule, stated next to it. The rules share one shape: a statistic with a 95% BCa
interval from the bootstrap over tasks, compared with ``THRESHOLD`` (0):

* fewer than ``MIN_TASKS`` tasks: ``"inconclusive (too few tasks)"`` whatever the interval says;
* the interval lies entirely on the claimed side of 0: ``"holds"``;
* it lies entirely on the other side: ``"does not hold"``;
* otherwise (it contains 0, or there is none): ``"inconclusive"``.

Claims about one method beating every other apply the rule to each paired comparison and combine:
holds if all hold, does not hold if any does not hold. ``margin`` is the statistic's signed distance
from the threshold on the claimed side (for combined claims the smallest one), ``near_threshold``
is True when the value is within noise of the threshold (an interval containing it, or none; a
combined verdict is near unless its intervals decided it).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import pandas as pd

from . import tables as T
from .report import fmt_ci, fmt_p

MIN_TASKS = 8
THRESHOLD = 0.0
HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
TOO_FEW = "inconclusive (too few tasks)"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, TOO_FEW)
COLUMNS = ["id", "claim", "subset", "verdict", "statistic", "value", "lo", "hi", "margin", "near_threshold",
           "n_tasks", "rule", "detail"]


@dataclass(frozen=True)
class Verdict:
    id: str
    claim: str
    statistic: str
    value: float
    lo: float
    hi: float
    rule: str
    verdict: str
    n_tasks: int
    margin: float
    near_threshold: bool
    detail: str = ""
    subset: str = T.ALL_RUNS


REGISTRY: dict[str, tuple[str, Callable]] = {}


def claim(cid: str, text: str):
    """Register ``fn(tables, subset) -> Verdict`` as claim ``cid``."""
    def deco(fn):
        if cid in REGISTRY:
            raise ValueError(f"claim {cid} registered twice")
        REGISTRY[cid] = (text, fn)
        return fn
    return deco


# ----------------------------------------------------------------------------- the rule
RULE = (f"with >= {MIN_TASKS} tasks: holds if the 95% BCa interval over tasks of the statistic lies above "
        f"{THRESHOLD:g}, does not hold if it lies below, else inconclusive; fewer tasks: {TOO_FEW}")
RULE_ALL = (f"with >= {MIN_TASKS} tasks: holds if for every paired comparison the 95% BCa interval over tasks "
            f"of the difference lies above {THRESHOLD:g}, does not hold if any lies below, else inconclusive; "
            f"fewer tasks: {TOO_FEW}")


def decide(value: float, lo: float, hi: float, n_tasks: int, direction: int = 1) -> tuple[str, float, bool]:
    """(verdict, margin, near_threshold) of one statistic; direction +1: the claim says > 0, -1: < 0."""
    v, a, b = (direction * x for x in (value, lo, hi))
    a, b = min(a, b), max(a, b)
    margin = float(v - THRESHOLD) if np.isfinite(v) else float("nan")
    has_ci = bool(np.isfinite(a) and np.isfinite(b))
    near = not (has_ci and (a > THRESHOLD or b < THRESHOLD))
    if n_tasks < MIN_TASKS:
        return TOO_FEW, margin, near
    if has_ci and a > THRESHOLD:
        return HOLDS, margin, near
    if has_ci and b < THRESHOLD:
        return FAILS, margin, near
    return INCONCLUSIVE, margin, near


def combine(verdicts: list[str]) -> str:
    if not verdicts or TOO_FEW in verdicts:
        return TOO_FEW
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    if any(v == FAILS for v in verdicts):
        return FAILS
    return INCONCLUSIVE


def combined_near(verdict: str, nears: list[bool]) -> bool:
    """A combined verdict is near its threshold unless it was decided by intervals that exclude it
    (holds: every one does; does not hold: at least one lies on the wrong side)."""
    return False if verdict in (HOLDS, FAILS) else any(nears) or not nears


def _na(cid: str, why: str, subset: str, statistic: str = "n/a") -> Verdict:
    nan = float("nan")
    return Verdict(cid, REGISTRY[cid][0], statistic, nan, nan, nan, RULE, INCONCLUSIVE, 0, nan, True, why, subset)


def _lab(m: str) -> str:
    return T.METHOD_LABELS.get(m, m)


def _versus_all(cid: str, tables: dict, subset: str, target: str, quantities: list[str], direction: int,
                statistic: str, pct: bool = True) -> Verdict:
    """target - every other method, paired per (task, seed), for each quantity; direction +1: the
    claim says target is larger, -1: smaller."""
    comp = T.subset_of(tables["comparisons"], subset)
    ms = T.methods_in(pd.DataFrame({"method": list(comp["method"]) + list(comp["versus"])}))
    if target not in ms:
        return _na(cid, f"no {_lab(target)} runs", subset)
    parts, vs, margins, nears, ns, vals = [], [], [], [], [], []
    for q in quantities:
        for m in ms:
            if m == target:
                continue
            c = T.comparison(comp, q, target, m)
            if c is None or not np.isfinite(c["diff"]):
                continue
            v, mg, near = decide(c["diff"], c["diff_lo"], c["diff_hi"], int(c["n_tasks"]), direction)
            vs.append(v)
            margins.append(mg)
            nears.append(near)
            ns.append(int(c["n_tasks"]))
            vals.append((mg, c))
            parts.append(f"{q} {_lab(target)} - {_lab(m)} = {fmt_ci(c['diff'], c['diff_lo'], c['diff_hi'], pct)} "
                         f"(wins {int(c['wins'])}/{int(c['wins'] + c['losses'] + c['ties'])} tasks, sign p = "
                         f"{fmt_p(c['sign_p'])})")
    if not vs:
        return _na(cid, "no paired runs", subset)
    worst_margin, worst = min(vals, key=lambda t: t[0])
    verdict = combine(vs)
    return Verdict(cid, REGISTRY[cid][0], statistic, float(worst["diff"]), float(worst["diff_lo"]),
                   float(worst["diff_hi"]), RULE_ALL, verdict, min(ns), float(worst_margin),
                   combined_near(verdict, nears), "; ".join(parts), subset)


def _one(cid, statistic, value, lo, hi, n, direction, detail, subset, rule=RULE) -> Verdict:
    v, mg, near = decide(value, lo, hi, n, direction)
    return Verdict(cid, REGISTRY[cid][0], statistic, float(value), float(lo), float(hi), rule, v, int(n), mg, near,
                   detail, subset)


# ----------------------------------------------------------------------------- claim 1
def _claim1(cid: str, tables: dict, subset: str, form: str) -> Verdict:
    con = T.subset_of(tables["predictor_contrasts"], subset)
    con = con[(con["form"] == form) & (con["contrast"] == "ss vs acs")]
    if not len(con):
        return _na(cid, "no ss / ACS columns or no ID/DG evaluation rows", subset)
    c = con.iloc[0]
    pred = T.subset_of(tables["predictors"], subset)
    sel = pred[(pred["method"] == "pooled") & (pred["target"] == "ID+DG") & (pred["form"] == form)].set_index("measure")
    detail = "; ".join(f"rho_{m} = {fmt_ci(sel.loc[m, 'rho'], sel.loc[m, 'lo'], sel.loc[m, 'hi'])}, "
                       f"p = {fmt_p(sel.loc[m, 'p'])}" for m in ("ss", "acs", "iimm") if m in sel.index)
    n_pts = int(sel.loc["ss", "n_points"]) if "ss" in sel.index else 0
    detail += f"; diff = {fmt_ci(c['diff'], c['lo'], c['hi'])}; {n_pts} points in {int(c['n_tasks'])} tasks"
    stat = (f"diff = rho(ss, g) - (-rho(ACS, g)), g = {form} over (task, domain) points (ID and shifted), mean "
            "over methods and seeds; > 0: ss tracks the gain better than ACS")
    return _one(cid, stat, c["diff"], c["lo"], c["hi"], int(c["n_tasks"]), 1, detail, subset)


@claim("1", "Zero-shot ss tracks task difficulty (fine-tuning gain) better than ACS (headroom-normalised gain).")
def claim_1(tables: dict, subset: str = T.ALL_RUNS) -> Verdict:
    return _claim1("1", tables, subset, T.HEADROOM)


@claim("1-raw", "Zero-shot ss tracks the raw fine-tuning gain better than ACS (the paper's form).")
def claim_1_raw(tables: dict, subset: str = T.ALL_RUNS) -> Verdict:
    return _claim1("1-raw", tables, subset, T.RAW)


@claim("1-partial", "Zero-shot ss tracks the gain better than ACS, controlling for zero-shot accuracy.")
def claim_1_partial(tables: dict, subset: str = T.ALL_RUNS) -> Verdict:
    return _claim1("1-partial", tables, subset, T.PARTIAL)


# ----------------------------------------------------------------------------- claims 2-4
@claim("2a", "BitFit forgets most.")
def claim_2a(tables: dict, subset: str = T.ALL_RUNS) -> Verdict:
    return _versus_all("2a", tables, subset, "bitfit", ["cf_drop"], 1,
                       "paired CF drop difference BitFit - other method (smallest over methods; acc. points)")


@claim("2b", "BitFit forgets most after tuning on tasks with high zero-shot ss.")
def claim_2b(tables: dict, subset: str = T.ALL_RUNS) -> Verdict:
    sp = T.subset_of(tables["forgetting_spearman"], subset).set_index("method")
    if "bitfit" not in sp.index:
        return _na("2b", "no BitFit runs", subset)
    r = sp.loc["bitfit"]
    others = "; ".join(f"{_lab(m)} {x.rho:+.2f}" for m, x in sp.iterrows() if m != "bitfit")
    detail = f"rho = {fmt_ci(r['rho'], r['lo'], r['hi'])}, p = {fmt_p(r['p'])}, {int(r['n_tasks'])} tasks; others: {others}"
    return _one("2b", "Spearman rho over trained tasks of BitFit's CF drop vs the task's zero-shot ss (ID domain)",
                r["rho"], r["lo"], r["hi"], int(r["n_tasks"]), 1, detail, subset)


@claim("3a", "LoRA changes the embedding space least (|change| of ss and ACS on CF data).")
def claim_3a(tables: dict, subset: str = T.ALL_RUNS) -> Verdict:
    return _versus_all("3a", tables, subset, "lora", ["cf_abs_d_ss", "cf_abs_d_acs"], -1,
                       "paired |change| of ss and ACS on CF data, LoRA - other method (largest over methods "
                       "and measures)", pct=False)


@claim("3b", "LoRA forgets least.")
def claim_3b(tables: dict, subset: str = T.ALL_RUNS) -> Verdict:
    return _versus_all("3b", tables, subset, "lora", ["cf_drop"], -1,
                       "paired CF drop difference LoRA - other method (largest over methods; acc. points)")


@claim("3c", "LoRA has smaller ID and DG gains than the other methods.")
def claim_3c(tables: dict, subset: str = T.ALL_RUNS) -> Verdict:
    return _versus_all("3c", tables, subset, "lora", ["id_gain", "dg_gain"], -1,
                       "paired ID and DG gain difference LoRA - other method (largest over methods; acc. points)")


@claim("4a", "A-CLIP gives the best balance of DG gain and forgetting, averaged over tasks.")
def claim_4a(tables: dict, subset: str = T.ALL_RUNS) -> Verdict:
    return _versus_all("4a", tables, subset, "aclip", ["balance"], 1,
                       "paired balance (DG gain - CF drop) difference A-CLIP - other method (smallest; acc. points)")


@claim("4b", "CLIP-Adapter and full fine-tuning gain DG at a forgetting cost.")
def claim_4b(tables: dict, subset: str = T.ALL_RUNS) -> Verdict:
    s = T.subset_of(tables["method_summary"], subset)
    present = [m for m in ("clip_adapter", "full") if m in set(s["method"])]
    if not present:
        return _na("4b", "no CLIP-Adapter / Full runs", subset)
    w = T.wide(s).set_index("method")
    n = s.drop_duplicates("method").set_index("method")["n_tasks"]
    vs, parts, cand = [], [], []
    for m in present:
        for q in ("dg_gain", "cf_drop"):
            v, mg, near = decide(w.loc[m, q], w.loc[m, q + "_lo"], w.loc[m, q + "_hi"], int(n[m]), 1)
            vs.append(v)
            cand.append((mg, near, m, q))
            parts.append(f"{_lab(m)} {q} = {fmt_ci(w.loc[m, q], w.loc[m, q + '_lo'], w.loc[m, q + '_hi'], True)}")
    if len(present) < 2:
        vs.append(INCONCLUSIVE)
    mg, _, m, q = min(cand, key=lambda t: t[0])
    return Verdict("4b", REGISTRY["4b"][0], "DG gain and CF drop of CLIP-Adapter and Full, mean over tasks "
                   "(smallest of the four; acc. points)", float(w.loc[m, q]), float(w.loc[m, q + "_lo"]),
                   float(w.loc[m, q + "_hi"]),
                   RULE + " (for each of the four; combined: holds if all hold, does not hold if any does not)",
                   combine(vs), int(n[present].min()), mg, combined_near(combine(vs), [c[1] for c in cand]),
                   "; ".join(parts), subset)


# ----------------------------------------------------------------------------- all claims
def evaluate(tables: dict) -> pd.DataFrame:
    """Every registered claim on every subset of ``tables`` (one row per claim and subset)."""
    subsets = list(dict.fromkeys(tables["method_summary"]["subset"]))
    rows = []
    for subset in subsets:
        for cid, (_, fn) in REGISTRY.items():
            v = fn(tables, subset)
            if v.verdict not in VERDICTS:
                raise AssertionError(f"claim {cid} returned verdict {v.verdict!r}")
            rows.append(asdict(v))
    return pd.DataFrame(rows)[COLUMNS]
