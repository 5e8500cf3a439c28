"""Claim rule v4 (docs/methods.md, "the rule proposed for new data"; the study4 profile): its truth
table row by row, its wiring (the profile's analysis.claim_rule, the equivalence tests in the family,
the intersection-union "holds" on raw p-values) and that v3 stays the default."""
import numpy as np
import pandas as pd
import pytest

from lib import analysis as A
from lib import config
from lib.analysis import claims as C
from lib.analysis import tables as T


@pytest.mark.parametrize("raw, decisions, want", [
    # every paired test + at its raw p: holds, whatever Holm and the equivalence tests say
    (["+", "+", "+"], ["+", "0", "0", "0", "0", "0"], C.HOLDS),
    (["+", "+"], ["+", "+", "=", "0"], C.HOLDS),
    # not all raw +: any paired test decided against the claim after Holm -> does not hold
    (["+", "-"], ["0", "-", "0", "0"], C.FAILS),
    (["0", "0"], ["-", "0", "=", "0"], C.FAILS),
    # no -, an equivalence decided (no advantage of 2 points over that method) -> does not hold
    (["+", "0"], ["0", "0", "0", "="], C.FAILS),
    # no -, no =, not all raw + -> inconclusive
    (["+", "0"], ["+", "0", "0", "0"], C.INCONCLUSIVE),
    (["0", "0"], ["0", "0"], C.INCONCLUSIVE),
    # no paired test at all cannot hold
    ([], [], C.INCONCLUSIVE),
])
def test_rule_v4_truth_table(raw, decisions, want):
    assert C.rule_v4(raw, decisions) == want


def test_claim_rule_comes_from_the_profile_and_defaults_to_v3():
    assert C.claim_rule(None) == "v3" and C.claim_rule({"analysis": {}}) == "v3"
    assert C.claim_rule(config.load_profile("study3")) == "v3"
    assert C.claim_rule(config.load_profile("study4")) == "v4"
    with pytest.raises(ValueError, match="unknown claim rule"):
        C.claim_rule({"analysis": {"claim_rule": "v9"}})


def _runs(effects: dict, n: int = 40, seed: int = 0) -> pd.DataFrame:
    """Runs of LoRA and the other methods on n tasks; ``effects``: method -> (centre, spread) of its
    cf_drop minus LoRA's (points / 100), the same standard normal draws for every method."""
    tasks = [f"t{i}" for i in range(n)]
    base = {k: 0.0 for k in T.COMPARED}
    rows = [pd.DataFrame({"train_task": tasks, "seed": 0, "variant": "default", "method": "lora", **base})]
    for m, (centre, spread) in effects.items():
        rows.append(pd.DataFrame({"train_task": tasks, "seed": 0, "variant": "default", "method": m, **base})
                    .assign(cf_drop=centre + spread * np.random.default_rng(seed).standard_normal(n)))
    return pd.concat(rows, ignore_index=True)


def _claim_3b(effects: dict, rule: str) -> C.Verdict:
    runs = _runs(effects)
    return C.claim_3b({"comparisons": T.comparisons(runs, equivalence=False, tost=True), "claim_rule": rule})


def test_v4_holds_on_raw_p_where_holm_over_the_family_does_not():
    """Four methods each forget more than LoRA by a margin whose raw p is below 0.05 but whose
    Holm-adjusted p (family of 4) is not: v3 says inconclusive, v4's intersection-union test holds."""
    eff = {m: (0.004, 0.012) for m in ("full", "clip_adapter", "bitfit", "aclip")}
    v4, v3 = _claim_3b(eff, "v4"), _claim_3b(eff, "v3")
    raw = [t.raw_decision for t in v4.tests if t.direction != 0]
    holm = [t.decision for t in v3.tests]
    assert raw == ["+"] * 4 and holm != ["+"] * 4, (raw, holm)
    assert v4.verdict == C.HOLDS and v3.verdict == C.INCONCLUSIVE
    assert v4.rule == C.RULE_V4 and v3.rule == C.RULE_ALL
    # the family holds the 4 paired tests and their 4 equivalence tests, Holm over all 8
    assert v4.family_size == 8 and sum(t.direction == 0 for t in v4.tests) == 4
    assert all(t.p_holm >= t.p for t in v4.tests)


def test_v4_reads_equivalence_as_does_not_hold():
    """LoRA forgets as much as CLIP-Adapter (difference ~0, tight): equivalent within +/-2 points, so
    "LoRA forgets least" does not hold under v4 (v3: inconclusive); the binding test is the TOST."""
    eff = {"clip_adapter": (0.0, 0.003), "full": (0.05, 0.02)}
    v4, v3 = _claim_3b(eff, "v4"), _claim_3b(eff, "v3")
    assert v3.verdict == C.INCONCLUSIVE
    assert v4.verdict == C.FAILS and "TOST" in v4.binding and "CLIP-Adapter" in v4.binding


def test_v4_claim_3a_has_no_equivalence_tests():
    """3a's quantities are changes of ss and ACS: no smallest effect of interest, so no TOST joins its family."""
    runs = _runs({"full": (0.0, 0.01)})
    t = {"comparisons": T.comparisons(runs, equivalence=False, tost=True), "claim_rule": "v4"}
    v = C.claim_3a(t)
    assert all(x.direction != 0 for x in v.tests) and v.rule == C.RULE_V4


def test_compute_applies_the_profiles_rule_and_loto_reads_the_tost():
    """The whole analysis under v4: the claims' rule text, equivalence tests in claim_tests, no post hoc
    equivalence table, and the leave-one-task-out recomputation reads the equivalence tests too."""
    import test_analysis as TA
    res = TA.results(8)
    t3 = A.compute(res)
    t4 = A.compute(res, {"analysis": {"claim_rule": "v4"}})
    assert t3["claim_rule"] == "v3" and "equivalence_posthoc" in t3
    assert t4["claim_rule"] == "v4" and "equivalence_posthoc" not in t4
    c4 = t4["claims"].set_index("id")
    assert (c4.loc[["2a", "3b", "3c", "4a"], "rule"] == C.RULE_V4).all()
    assert (c4.loc[["1", "2b", "4b"], "rule"] != C.RULE_V4).all()
    assert t4["claim_tests"]["test"].str.contains("TOST").any()
    part = T.claim_tables(t4["zero_shot"], t4["runs"], t4["gain_points"], full=False, tost=True)
    assert part["comparisons"]["tost_p"].notna().any() and part["comparisons"]["mde"].isna().all()
