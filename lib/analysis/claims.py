"""The paper's claims, each a small registered function ``(tables) -> Verdict``.

Every claim reads the tables of :func:`lib.analysis.tables.compute` (it computes nothing new) and
applies one rule over a *family* of tests, each a test over tasks (``lib.stats``):

1. every test in the family has a claimed direction, an estimate, an interval that inverts the same
   test, and a p-value; the family's p-values are Holm-adjusted (``stats.holm``, statsmodels);
2. a test is *decided* when its Holm-adjusted p < ``ALPHA``: ``+`` when its estimate lies on the
   claimed side, ``-`` when on the other; otherwise ``0``;
3. fewer than ``MIN_TASKS`` tasks: ``"inconclusive (too few tasks)"`` whatever the tests say.

The rule that maps the decisions to a verdict is stated next to each claim, and as truth tables in
``docs/methods.md``; tests/test_claims_rules.py tests every row. Each verdict names its *binding*
test (the one whose decision set the verdict, or that kept it from holding) with that test's
estimate, interval, Holm-adjusted p and minimal detectable effect (80% power at the family's
Bonferroni level, the between-task SD observed). ``near_threshold`` is True when the verdict is
undecided or the binding Holm p lies within a factor of 2 of ``ALPHA``. Leaving one task out is
reported beside it (``loto_flips``: the tasks whose removal changes the verdict, filled in by
:func:`evaluate_all`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import pandas as pd

from .. import stats
from ..config import CLAIM_RULES  # analysis.claim_rule of a profile (default v3); docs/methods.md
from . import tables as T
from .formats import fmt_ci, fmt_p

MIN_TASKS = 8
ALPHA = stats.ALPHA
HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
TOO_FEW = "inconclusive (too few tasks)"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, TOO_FEW)
COLUMNS = ["id", "claim", "verdict", "statistic", "binding", "estimate", "lo", "hi", "ci_method", "p", "p_holm",
           "p_method", "mde", "family_size", "n_tasks", "near_threshold", "loto_flips", "loto_tasks", "rule", "detail"]
TEST_COLUMNS = ["id", "test", "direction", "estimate", "lo", "hi", "ci_method", "p", "p_holm", "p_method", "decision",
                "mde", "n_tasks"]


@dataclass(frozen=True)
class Test:
    """One test of a claim's family; ``direction`` +1: the claim says the estimate is > 0, -1: < 0,
    0: an equivalence test (the claim's rule reads it as 'no effect' when decided)."""
    name: str
    direction: int
    estimate: float
    lo: float
    hi: float
    p: float
    ci_method: str
    p_method: str
    n_tasks: int
    mde: float = float("nan")
    p_min: float = 0.0
    p_holm: float = float("nan")

    @property
    def decision(self) -> str:
        return self._decide(self.p_holm)

    @property
    def raw_decision(self) -> str:
        """The decision at the unadjusted p (claim rule v4's intersection-union reading of "holds")."""
        return self._decide(self.p)

    def _decide(self, p: float) -> str:
        if not (np.isfinite(p) and p < ALPHA):
            return "0"
        if self.direction == 0:
            return "="
        return "+" if self.direction * self.estimate > 0 else "-"


@dataclass(frozen=True)
class Verdict:
    id: str
    claim: str
    verdict: str
    statistic: str
    binding: str
    estimate: float
    lo: float
    hi: float
    ci_method: str
    p: float
    p_holm: float
    p_method: str
    mde: float
    family_size: int
    n_tasks: int
    near_threshold: bool
    rule: str
    detail: str = ""
    loto_flips: int = 0
    loto_tasks: str = ""
    tests: tuple = ()


REGISTRY: dict[str, tuple[str, Callable]] = {}


def claim(cid: str, text: str):
    """Register ``fn(tables) -> Verdict`` as claim ``cid``."""
    def deco(fn):
        if cid in REGISTRY:
            raise ValueError(f"claim {cid} registered twice")
        REGISTRY[cid] = (text, fn)
        return fn
    return deco


# ----------------------------------------------------------------------------- the shared rule pieces
def adjust(tests: list[Test]) -> list[Test]:
    """The family's tests with Holm-adjusted p-values."""
    adj = stats.holm([t.p for t in tests])
    return [replace(t, p_holm=float(a)) for t, a in zip(tests, adj)]


RULE_ALL = ("Holm over the family; holds if every test is decided on the claimed side (+), does not hold if any "
            "is decided on the other side (-), else inconclusive")


def rule_all(decisions: list[str]) -> str:
    """Every test '+' -> holds; any '-' -> does not hold; else inconclusive."""
    if decisions and all(d == "+" for d in decisions):
        return HOLDS
    if any(d == "-" for d in decisions):
        return FAILS
    return INCONCLUSIVE


RULE_1 = ("Holm over {S: rho(ss, gain), D: |rho(ss, gain)| - |rho(ACS, gain)|}; holds if S is + and D is +; does not "
          "hold if S is - (ss decisively in the wrong direction) or D is - (ACS decisively stronger); else "
          "inconclusive")


def rule_1(s: str, d: str) -> str:
    """Claim 1's truth table: S = decision on rho(ss, gain) > 0, D = decision on |rho_ss| - |rho_acs| > 0."""
    if s == "-" or d == "-":
        return FAILS
    if s == "+" and d == "+":
        return HOLDS
    return INCONCLUSIVE


RULE_4B = ("Holm over, for CLIP-Adapter and Full, {DG gain > 0, DG gain within +/-SESOI (TOST), CF drop > 0}; holds if "
           "both DG gains and both CF drops are +; does not hold if any DG gain is - or equivalent to 0 (=), or any "
           "CF drop is -; else inconclusive")


def rule_4b(dg: list[str], tost: list[str], cf: list[str]) -> str:
    """Claim 4b: per method the DG-gain decision (+/-/0), its equivalence decision ('=' or '0') and the
    CF-drop decision."""
    if any(d == "-" for d in dg) or any(e == "=" for e in tost) or any(c == "-" for c in cf):
        return FAILS
    if dg and all(d == "+" for d in dg) and all(c == "+" for c in cf):
        return HOLDS
    return INCONCLUSIVE


RULE_V4 = ("claim rule v4 (registered for new data): holds if every paired test has its raw two-sided p < 0.05 on "
           "the claimed side (an intersection-union test, no Holm step); else Holm over the paired tests and the "
           "equivalence tests (TOST within +/-SESOI) together: does not hold if any paired test is decided against "
           "the claim (-) or any equivalence is decided (=, no advantage of SESOI or more over that method); else "
           "inconclusive")


def claim_rule(cfg: dict | None) -> str:
    """The profile's claim rule (``analysis.claim_rule``; v3 without a profile or the key)."""
    rule = ((cfg or {}).get("analysis") or {}).get("claim_rule", CLAIM_RULES[0])
    if rule not in CLAIM_RULES:
        raise ValueError(f"unknown claim rule {rule!r}; valid: {', '.join(CLAIM_RULES)}")
    return rule


def rule_v4(raw: list[str], decisions: list[str]) -> str:
    """Claim rule v4 for a comparison claim. ``raw``: each paired test's decision at its unadjusted p
    (+ / - / 0); ``decisions``: every test's decision after Holm over the paired tests and the
    equivalence tests together (+ / - / 0 for paired tests, = / 0 for equivalence tests).
    Every raw + -> holds; else any - or = -> does not hold; else inconclusive."""
    if raw and all(d == "+" for d in raw):
        return HOLDS
    if any(d in ("-", "=") for d in decisions):
        return FAILS
    return INCONCLUSIVE


def _binding(tests: list[Test], verdict: str, claimed: list[Test] | None = None) -> Test:
    """The test that set the verdict: for 'does not hold' the decided opposing test with the smallest
    Holm p; otherwise the test (among ``claimed``, default all) with the largest Holm p."""
    pool = claimed or tests
    if verdict == FAILS:
        against = [t for t in tests if t.decision in ("-", "=")]
        if against:
            return min(against, key=lambda t: t.p_holm)
    return max(pool, key=lambda t: (t.p_holm if np.isfinite(t.p_holm) else 2.0))


_GATE = [True]   # False while leaving one task out: the flips count data-driven changes, not the gate


def _verdict(cid: str, statistic: str, tests: list[Test], verdict: str, rule: str, detail: str,
             claimed: list[Test] | None = None) -> Verdict:
    n = min(t.n_tasks for t in tests)
    if n < MIN_TASKS and _GATE[0]:
        verdict = TOO_FEW
    b = _binding(tests, verdict, claimed)
    near = bool(np.isfinite(b.p_holm) and ALPHA / 2 <= b.p_holm <= 2 * ALPHA) or verdict in (INCONCLUSIVE, TOO_FEW)
    tests_txt = "; ".join(f"{t.name}: {fmt_ci(t.estimate, t.lo, t.hi)}, p = {fmt_p(t.p)}, Holm p = {fmt_p(t.p_holm)} "
                          f"[{t.decision}]" for t in tests)
    return Verdict(cid, REGISTRY[cid][0], verdict, statistic, b.name, float(b.estimate), float(b.lo), float(b.hi),
                   b.ci_method, float(b.p), float(b.p_holm), b.p_method, float(b.mde), len(tests), int(n), near, rule,
                   (detail + "; " if detail else "") + tests_txt, tests=tuple(tests))


def _na(cid: str, why: str) -> Verdict:
    nan = float("nan")
    return Verdict(cid, REGISTRY[cid][0], INCONCLUSIVE, "n/a", "", nan, nan, nan, "", nan, nan, "", nan, 0, 0, True,
                   "", why)


def _lab(m: str) -> str:
    return T.METHOD_LABELS.get(m, m)


def attainable(p_min: float, family: int) -> bool:
    """Whether a test whose smallest possible p is ``p_min`` can be decided in a Holm family of
    ``family`` tests that must all be decided (m * p_min < ALPHA): e.g. the exact signed-rank test over
    8 tasks has p >= 2 / 2^8, so a family of 8 such tests can never all be decided."""
    return family * p_min < ALPHA


def _mde(tables: dict, family: int, p_min: float, direction: int, quantity: str, a: str,
         b: str | None = None) -> float:
    """Minimal detectable shift (80% power) of the test's per-task values (``T.task_values``: a - b, or
    a's own) in the claimed ``direction`` at the family's Bonferroni level, simulated for the signed-rank
    test itself (``lib.stats.mde_signed_rank``); infinite when the test's discreteness makes the family
    undecidable at this number of tasks; NaN while leaving one task out (no verdict reads it) or
    without the run table."""
    if not attainable(p_min, family):
        return float("inf")
    if not _GATE[0] or "runs" not in tables:
        return float("nan")
    return stats.mde_signed_rank(T.task_values(tables["runs"], quantity, a, b), ALPHA / max(family, 1),
                                 direction=direction)


def _p_min_signed_rank(n: int, sides: int = 2) -> float:
    return sides / 2.0 ** n if n > 0 else 1.0


def _pairs(comp: pd.DataFrame, target: str, quantities: list[str]) -> list[tuple[str, dict]] | None:
    """``target`` against each other method in ``comparisons``: [(test name, the row of target - other)]
    for every quantity, rows without a finite estimate left out; None when ``target`` has no row."""
    ms = T.methods_in(pd.DataFrame({"method": list(comp["method"]) + list(comp["versus"])}))
    if target not in ms:
        return None
    rows = []
    for q in quantities:
        for m in ms:
            if m == target:
                continue
            c = T.comparison(comp, q, target, m)
            if c is None or not np.isfinite(c["estimate"]):
                continue
            rows.append((f"{q} {_lab(target)} - {_lab(m)}", c))
    return rows


def _comparison_tests(tables: dict, target: str, quantities: list[str], direction: int, scale: float = 100.0):
    rows = _pairs(tables["comparisons"], target, quantities)
    if rows is None:
        return None
    fam = len(rows)
    out = []
    for name, c in rows:
        n = int(c["n_tasks"])
        pm = _p_min_signed_rank(n)
        mde = _mde(tables, fam, pm, direction, c["quantity"], c["method"], c["versus"])
        out.append(Test(name, direction, c["estimate"] * scale, c["lo"] * scale, c["hi"] * scale, c["p"],
                        c["ci_method"], c["p_method"], n, mde * scale, pm))
    return out


def _equivalence_tests(tables: dict, target: str, quantities: list[str], scale: float = 100.0) -> list[Test]:
    """``target`` against each other method: the equivalence test within +/- ``SESOI`` (two one-sided
    signed-rank tests; ``comparisons``' ``tost_p``) of every quantity in accuracy points (none for 3a's
    changes of ss and ACS, for which no smallest effect of interest was fixed). Its MDE is not
    simulated (NaN): the registered power figures are the paired tests'."""
    comp = tables["comparisons"]
    if not set(quantities) <= set(T.EFFECT_QUANTITIES) or "tost_p" not in comp:
        return []
    out = []
    for name, c in _pairs(comp, target, quantities) or []:
        if not np.isfinite(c["tost_p"]):
            continue
        n = int(c["n_tasks"])
        out.append(Test(f"{name} within +/-{scale * c['sesoi']:g} pts (TOST)", 0, c["estimate"] * scale,
                        c["tost_lo90"] * scale, c["tost_hi90"] * scale, c["tost_p"], "90% " + c["ci_method"],
                        "two one-sided exact signed-rank tests", n, float("nan"), _p_min_signed_rank(n, 1)))
    return out


def _versus_all(cid: str, tables: dict, target: str, quantities: list[str], direction: int, statistic: str,
                scale: float = 100.0, detail: str = "") -> Verdict:
    tests = _comparison_tests(tables, target, quantities, direction, scale)
    if tests is None:
        return _na(cid, f"no {_lab(target)} runs")
    if not tests:
        return _na(cid, "no paired runs")
    if tables.get("claim_rule", "v3") == "v4":
        k = len(tests)
        fam = adjust(tests + _equivalence_tests(tables, target, quantities, scale))
        verdict = rule_v4([t.raw_decision for t in fam[:k]], [t.decision for t in fam])
        # "holds" rests on the raw p-values: the binding test is the paired test with the largest one
        claimed = [max(fam[:k], key=lambda t: t.p)] if verdict == HOLDS else fam[:k]
        return _verdict(cid, statistic, fam, verdict, RULE_V4, detail, claimed=claimed)
    tests = adjust(tests)
    verdict = rule_all([t.decision for t in tests])
    return _verdict(cid, statistic, tests, verdict, RULE_ALL, detail)


# ----------------------------------------------------------------------------- claim 1
def _rho_test(name: str, r: dict, direction: int, family: int) -> Test:
    n = int(r["n_tasks"])
    pm = 2.0 / math.factorial(n) if 0 < n <= stats.EXACT_MAX_TASKS else 1.0 / (stats.N_PERMUTATIONS + 1)
    mde = stats.mde_correlation(n, ALPHA / family) if attainable(pm, family) else float("inf")
    return Test(name, direction, r["rho"], r["lo"], r["hi"], r["p"], r["ci_method"], r["p_method"], n, mde, pm)


@claim("1", "Zero-shot ss tracks task difficulty (the fine-tuning gain) better than ACS.")
def claim_1(tables: dict) -> Verdict:
    pred, con = tables["predictors"], tables["predictor_contrasts"]
    sel = pred[(pred["method"] == "pooled") & (pred["stratum"] == T.CLAIM_STRATUM)
               & (pred["form"] == T.CLAIM_FORM)].set_index("measure")
    c = con[(con["stratum"] == T.CLAIM_STRATUM) & (con["form"] == T.CLAIM_FORM)]
    if not {"ss", "acs"} <= set(sel.index) or not len(c):
        return _na("1", "no ss / ACS columns or no ID evaluation rows")
    c = c.iloc[0]
    s = _rho_test("S: rho(ss, ID gain)", sel.loc["ss"], 1, 2)
    d = Test("D: |rho(ss)| - |rho(ACS)|", 1, c["diff"], c["lo"], c["hi"], c["p"], c["ci_method"], c["p_method"],
             int(c["n_tasks"]), float(c["mde"]))
    s, d = adjust([s, d])
    acs = sel.loc["acs"]
    detail = (f"rho(ACS, ID gain) = {fmt_ci(acs['rho'], acs['lo'], acs['hi'])}, p = {fmt_p(acs['p'])} (expected "
              f"direction: negative)")
    stat = ("one point per task: its ID domain's zero-shot ss / ACS vs its raw ID gain averaged over methods and "
            "seeds; S = Spearman rho(ss, gain) (expected > 0), D = |rho_ss| - |rho_ACS| (> 0: ss tracks more strongly)")
    return _verdict("1", stat, [s, d], rule_1(s.decision, d.decision), RULE_1, detail, claimed=[s, d])


# ----------------------------------------------------------------------------- claims 2-4
# The comparison claims ("one method beats every other"): the claimed method, the quantities compared
# and the claimed direction of "claimed - other" (+1: larger, -1: smaller)
VERSUS_ALL = {"2a": ("bitfit", ["cf_drop"], 1), "3a": ("lora", ["cf_abs_d_ss", "cf_abs_d_acs"], -1),
              "3b": ("lora", ["cf_drop"], -1), "3c": ("lora", ["dg_gain"], -1), "4a": ("aclip", ["balance"], 1)}


@claim("2a", "BitFit forgets most.")
def claim_2a(tables: dict) -> Verdict:
    return _versus_all("2a", tables, *VERSUS_ALL["2a"],
                       "per-task CF drop difference BitFit - each other method (acc. points; Hodges-Lehmann)")


@claim("2b", "BitFit forgets most after tuning on tasks with high zero-shot ss.")
def claim_2b(tables: dict) -> Verdict:
    sp = tables["forgetting_spearman"].set_index("method")
    if T.EXCESS not in sp.index:
        return _na("2b", "no BitFit runs or no other method")
    t = adjust([_rho_test("rho(ss, BitFit excess CF drop)", sp.loc[T.EXCESS], 1, 1)])
    others = "; ".join(f"{_lab(m)} {x.rho:+.2f}" for m, x in sp.iterrows() if m != T.EXCESS)
    stat = ("Spearman rho over trained tasks of the task's zero-shot ss (ID domain) vs BitFit's CF drop minus the "
            "mean CF drop of the other methods (the interaction: BitFit's excess forgetting grows with ss)")
    return _verdict("2b", stat, t, rule_all([t[0].decision]), RULE_ALL, f"per-method rho(ss, CF drop): {others}")


@claim("3a", "LoRA changes the embedding space least (|change| of ss and ACS on CF data).")
def claim_3a(tables: dict) -> Verdict:
    return _versus_all("3a", tables, *VERSUS_ALL["3a"],
                       "per-task |change| of ss and ACS on CF data, LoRA - each other method (Hodges-Lehmann)",
                       scale=1.0)


@claim("3b", "LoRA forgets least.")
def claim_3b(tables: dict) -> Verdict:
    return _versus_all("3b", tables, *VERSUS_ALL["3b"],
                       "per-task CF drop difference LoRA - each other method (acc. points; Hodges-Lehmann)")


@claim("3c", "LoRA has smaller DG gains than the other methods (ID gains reported beside them).")
def claim_3c(tables: dict) -> Verdict:
    comp = tables["comparisons"]
    idp = []
    for m in T.methods_in(pd.DataFrame({"method": list(comp["method"]) + list(comp["versus"])})):
        c = T.comparison(comp, "id_gain", "lora", m) if m != "lora" else None
        if c is not None:
            idp.append(f"id_gain LoRA - {_lab(m)} = {fmt_ci(100 * c['estimate'], 100 * c['lo'], 100 * c['hi'])}, "
                       f"p = {fmt_p(c['p'])}")
    return _versus_all("3c", tables, *VERSUS_ALL["3c"],
                       "per-task DG gain difference LoRA - each other method (acc. points; Hodges-Lehmann)",
                       detail="ID gains (reported, not tested): " + "; ".join(idp))


@claim("4a", "A-CLIP gives the best balance of DG gain and forgetting, averaged over tasks.")
def claim_4a(tables: dict) -> Verdict:
    return _versus_all("4a", tables, *VERSUS_ALL["4a"],
                       "per-task balance (DG gain - CF drop) difference A-CLIP - each other method (acc. points)")


@claim("4b", "CLIP-Adapter and full fine-tuning gain DG at a forgetting cost.")
def claim_4b(tables: dict) -> Verdict:
    e = tables["effects"].set_index(["method", "quantity"])
    present = [m for m in ("clip_adapter", "full") if (m, "dg_gain") in e.index]
    if not present:
        return _na("4b", "no CLIP-Adapter / Full runs")
    fam = 3 * len(present)
    tests = []
    for m in present:
        for q, kind in (("dg_gain", 1), ("dg_gain", 0), ("cf_drop", 1)):
            r = e.loc[(m, q)]
            pm = _p_min_signed_rank(int(r["n_tasks"]), 1 if kind == 0 else 2)
            mde = _mde(tables, fam, pm, kind, q, m) * 100
            if kind == 0:
                tests.append(Test(f"{_lab(m)} DG gain within +/-{100 * r['sesoi']:g} pts (TOST)", 0,
                                  r["estimate"] * 100, r["tost_lo90"] * 100, r["tost_hi90"] * 100, r["tost_p"],
                                  "90% " + r["ci_method"], "two one-sided exact signed-rank tests", int(r["n_tasks"]),
                                  mde, pm))
            else:
                tests.append(Test(f"{_lab(m)} {q} > 0", 1, r["estimate"] * 100, r["lo"] * 100, r["hi"] * 100, r["p"],
                                  r["ci_method"], r["p_method"], int(r["n_tasks"]), mde, pm))
    tests = adjust(tests)
    dg = [t.decision for t in tests[0::3]]
    tost = [t.decision for t in tests[1::3]]
    cf = [t.decision for t in tests[2::3]]
    verdict = rule_4b(dg, tost, cf) if len(present) == 2 else (FAILS if rule_4b(dg, tost, cf) == FAILS else INCONCLUSIVE)
    stat = (f"per-task DG gain and CF drop of CLIP-Adapter and Full tested against 0 (acc. points; Hodges-Lehmann), "
            f"and the DG gain's equivalence to 0 within the pre-registered smallest effect of interest "
            f"(+/-{100 * T.SESOI:g} points)")
    return _verdict("4b", stat, tests, verdict, RULE_4B, "", claimed=[t for t in tests if t.direction != 0])


# ----------------------------------------------------------------------------- all claims
def _verdicts(tables: dict) -> list[Verdict]:
    out = []
    for cid, (_, fn) in REGISTRY.items():
        v = fn(tables)
        if v.verdict not in VERDICTS:
            raise AssertionError(f"claim {cid} returned verdict {v.verdict!r}")
        out.append(v)
    return out


def leave_one_task_out(tables: dict) -> dict[str, list[str]]:
    """For every claim, the tasks whose removal (as a trained task: its runs and its zero-shot points)
    changes the verdict, recomputing only the tables the claims read. The ``MIN_TASKS`` gate is off
    here (n - 1 tasks would otherwise always read 'too few'); the discreteness of exact tests is not:
    over 7 tasks a Holm family of 4 signed-rank tests cannot all be decided (4 x 2/2^7 > 0.05), which
    a flip then shows."""
    runs, zs, pts = tables["runs"], tables["zero_shot"], tables["gain_points"]
    rule = tables.get("claim_rule", "v3")
    base = {v.id: v.verdict for v in _verdicts(tables)}
    flips = {cid: [] for cid in base}
    _GATE[0] = False
    try:
        for task in sorted(runs["train_task"].unique()):
            t = T.claim_tables(zs[zs["task"] != task], runs[runs["train_task"] != task],
                               pts[pts["task"] != task], full=False, tost=rule == "v4")
            t["claim_rule"] = rule
            for v in _verdicts(t):
                if v.verdict != base[v.id]:
                    flips[v.id].append(task)
    finally:
        _GATE[0] = True
    return flips


# ----------------------------------------------------------------------------- post hoc: equivalence
POSTHOC = ("post hoc: written after study3's results were seen; not a verdict (docs/methods.md, "
           "'Equivalence: post hoc, and the rule proposed for new data')")
EQUIVALENCE_COLUMNS = ["id", "claim", "test", "estimate", "lo90", "hi90", "sesoi", "tost_p", "tost_p_holm", "equivalent",
                       "n_tasks", "analysis"]


def equivalence_posthoc(tables: dict) -> pd.DataFrame:
    """For each comparison claim stated in accuracy points (``VERSUS_ALL``; not 3a, whose quantities are
    silhouette and cosine changes), its claimed method against each other method: the equivalence test
    (two one-sided signed-rank tests, ``comparisons``' ``tost_p``) within +/- the smallest effect of interest
    pre-registered for claim 4b (``tables.SESOI``, 2 points), Holm-adjusted within the claim's family;
    ``equivalent`` when the Holm-adjusted TOST p < ALPHA: the claimed method's advantage over that method
    is, at most, smaller than 2 points. In points; the 90% Hodges-Lehmann interval is the one the TOST
    inverts. A description, not a verdict: the rule that would read it was written after study3's
    results were seen (``analysis`` says so on every row)."""
    comp = tables["comparisons"]
    rows = []
    for cid, (target, quantities, _) in VERSUS_ALL.items():
        if not set(quantities) <= set(T.EFFECT_QUANTITIES) or "tost_p" not in comp:
            continue
        fam = [(name, c) for name, c in _pairs(comp, target, quantities) or [] if np.isfinite(c["tost_p"])]
        holm = stats.holm([c["tost_p"] for _, c in fam]) if fam else []
        for (name, c), ph in zip(fam, holm):
            rows.append(dict(id=cid, claim=REGISTRY[cid][0], test=name, estimate=100 * c["estimate"],
                             lo90=100 * c["tost_lo90"], hi90=100 * c["tost_hi90"], sesoi=100 * c["sesoi"],
                             tost_p=c["tost_p"], tost_p_holm=float(ph), equivalent=bool(ph < ALPHA),
                             n_tasks=int(c["n_tasks"]), analysis=POSTHOC))
    return pd.DataFrame(rows, columns=EQUIVALENCE_COLUMNS)


def evaluate_all(tables: dict, loto: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every registered claim, one row each, with the leave-one-task-out flips (``loto``); and every
    test of every claim's family with its raw and Holm-adjusted p and its decision."""
    vs = _verdicts(tables)
    flips = leave_one_task_out(tables) if loto and "runs" in tables else {}
    rows, trows = [], []
    for v in vs:
        f = flips.get(v.id, [])
        v = replace(v, loto_flips=len(f), loto_tasks=",".join(f))
        rows.append({c: getattr(v, c) for c in COLUMNS})
        trows += [dict(id=v.id, test=t.name, direction=t.direction, estimate=t.estimate, lo=t.lo, hi=t.hi,
                       ci_method=t.ci_method, p=t.p, p_holm=t.p_holm, p_method=t.p_method, decision=t.decision,
                       mde=t.mde, n_tasks=t.n_tasks) for t in v.tests]
    return pd.DataFrame(rows, columns=COLUMNS), pd.DataFrame(trows, columns=TEST_COLUMNS)


def evaluate(tables: dict, loto: bool = True) -> pd.DataFrame:
    """The claims table of :func:`evaluate_all`."""
    return evaluate_all(tables, loto)[0]
