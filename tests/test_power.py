"""The minimal detectable effects are simulated for the tests the claims run (lib.stats, "power (v3)"):
each is shown here against a closed form where one exists and against a brute-force power simulation
of the test itself, at the study's number of tasks."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as ss

from lib import stats as S
from lib.analysis import claims as C
from lib.analysis import tables as T


def _t_mde(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    return (ss.t.ppf(1 - alpha / 2, n - 1) + ss.t.ppf(power, n - 1)) * sd / math.sqrt(n)


def _power(d, delta: float, alpha: float, draws: int = 600, seed: int = 11) -> float:
    """Brute force: the share of n-task samples (drawn from d centred at its Hodges-Lehmann estimate, then
    shifted by delta) where the exact two-sided signed-rank test rejects at alpha with a positive estimate."""
    d = np.asarray(d, float)
    rng = np.random.default_rng(seed)
    base = d - S.hodges_lehmann(d)[0]
    hits = 0
    for _ in range(draws):
        x = base[rng.integers(0, d.size, d.size)] + delta
        hits += S.signed_rank_p(x) < alpha and S.hodges_lehmann(x)[0] > 0
    return hits / draws


def _skewed(n: int = 32) -> np.ndarray:
    """Most tasks differ a little, a few a lot (study3's 3a and 2a comparisons look like this)."""
    rng = np.random.default_rng(3)
    return np.concatenate([0.01 * rng.standard_normal(n - 4), [0.30, -0.25, 0.40, 0.35]])


def test_normal_tasks_give_the_t_formula_within_the_signed_rank_tests_efficiency():
    """For normal differences the signed-rank test needs about 1 / sqrt(0.955) of the t-test's effect."""
    d = np.random.default_rng(0).standard_normal(4000)[:32]
    d = (d - d.mean()) / d.std(ddof=1)                       # SD 1 exactly
    for alpha in (0.05, 0.0125):
        assert S.mde_signed_rank(d, alpha) == pytest.approx(_t_mde(1.0, 32, alpha), rel=0.12)


@pytest.mark.parametrize("alpha", [0.05, 0.0125])
def test_the_test_detects_the_simulated_mde_with_80_percent_power(alpha):
    """Brute force with another seed and the exact p: ~80% power at the MDE, far less at half of it."""
    d = _skewed()
    m = S.mde_signed_rank(d, alpha, direction=1)
    assert _power(d, m, alpha) == pytest.approx(0.80, abs=0.06)
    assert _power(d, m / 2, alpha) < 0.5


def test_a_few_large_tasks_inflate_the_sd_but_not_the_rank_tests_mde():
    d = _skewed()
    assert S.mde_signed_rank(d) < 0.5 * _t_mde(d.std(ddof=1), d.size)


def test_direction_is_the_claimed_side_and_zero_the_larger():
    d = np.abs(_skewed())                                    # skewed to the right
    up, down, both = (S.mde_signed_rank(d, direction=k) for k in (1, -1, 0))
    assert up != down and both == max(up, down)
    assert S.mde_signed_rank(-d, direction=1) == pytest.approx(down)


def test_deterministic_and_undefined_cases():
    d = _skewed()
    assert S.mde_signed_rank(d) == S.mde_signed_rank(d)
    assert S.mde_signed_rank(d[:5]) == math.inf              # 5 tasks: no two-sided 95% interval exists
    assert math.isnan(S.mde_signed_rank(d[:1]))
    assert S.mde_signed_rank(np.zeros(10)) == 0.0            # no spread: any shift moves every task
    assert math.isnan(S.mde_correlation(3)) and S.mde_correlation(8, 1e-5) == math.inf   # below 2 / 8!


@pytest.mark.parametrize("n", [24, 32, 40])
def test_spearman_mde_is_close_to_fisher_z_and_has_80_percent_power(n):
    """The Fisher-z formula is Pearson's; Spearman's test needs a little more. Brute force: at the MDE
    (a Gaussian copula), scipy's Spearman test rejects in ~80% of 1,000 new samples."""
    m = S.mde_correlation(n)
    fisher = math.tanh(S.power_z(0.05) / math.sqrt(n - 3))
    assert fisher - 0.01 <= m <= fisher + 0.03
    r = 2 * math.sin(math.pi * m / 6)                        # the Pearson r of that Spearman rho
    rng = np.random.default_rng(5)
    x, z = rng.standard_normal((2, 1000, n))
    y = r * x + math.sqrt(1 - r * r) * z
    hits = [ss.spearmanr(a, b).pvalue < 0.05 for a, b in zip(x, y)]
    assert np.mean(hits) == pytest.approx(0.80, abs=0.05)


def _runs(n: int = 32) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    rows = []
    for m, shift in (("lora", 0.0), ("full", 0.01)):
        for i in range(n):
            rows.append(dict(train_task=f"t{i}", seed=0, variant="default", method=m,
                             **{q: shift + 0.02 * rng.standard_normal() for q in T.COMPARED}))
    return pd.DataFrame(rows)


def test_claims_mde_is_the_signed_rank_mde_of_the_tests_own_values_at_the_family_level():
    runs = _runs()
    tables = {"runs": runs, "comparisons": T.comparisons(runs)}
    (test,) = C._comparison_tests(tables, "lora", ["cf_drop"], -1)
    d = T.task_values(runs, "cf_drop", "lora", "full")
    assert d.size == 32
    assert test.mde == pytest.approx(100 * S.mde_signed_rank(d, 0.05, direction=-1))
    assert tables["comparisons"].set_index("quantity").loc["cf_drop", "mde"] == pytest.approx(
        S.mde_signed_rank(d, 0.05))
    C._GATE[0] = False                                       # leaving one task out: no verdict reads it
    try:
        assert math.isnan(C._comparison_tests(tables, "lora", ["cf_drop"], -1)[0].mde)
    finally:
        C._GATE[0] = True
    assert T.comparisons(runs, equivalence=False)["mde"].isna().all()
    assert T.effects(runs, mde=False)["mde"].isna().all() and T.effects(runs)["mde"].notna().all()
