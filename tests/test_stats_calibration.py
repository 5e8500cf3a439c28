"""Coverage of every interval the claims use, simulated at the study's numbers of tasks (8 and 32),
for normal and skewed data (slow tier). The nominal level is 95%; each must cover >= 93%.

* the Hodges-Lehmann interval of the exact signed-rank test (paired comparisons, one-sample effects):
  its estimand is the pseudo-median of the per-task differences, covered whatever their skew;
* the Fisher-z (Bonett-Wright) interval of Spearman's rho: rank-based, so the margins' skew does not
  matter; the estimand is the population Spearman rho, 6/pi asin(r/2) for a bivariate normal;
* Zou's interval for |rho(x1, y)| - |rho(x2, y)|.
The t interval of a mean is shown for contrast (it under-covers skewed data at 8 tasks, which is why
the claims do not use it)."""
import math

import numpy as np
import pytest

from lib import stats as S

pytestmark = pytest.mark.slow
LEVEL = 0.93


def _pseudo_median(sample, rng):
    x, y = sample(rng, 400_000), sample(rng, 400_000)
    return float(np.median((x + y) / 2))


SKEWED = {"normal": lambda rng, n: rng.normal(0.3, 1, n),
          "lognormal": lambda rng, n: rng.lognormal(0, 1, n),
          "exponential": lambda rng, n: rng.exponential(1, n)}


@pytest.mark.parametrize("n", [8, 32])
@pytest.mark.parametrize("dist", list(SKEWED))
def test_signed_rank_interval_covers_the_pseudo_median(n, dist):
    rng = np.random.default_rng(100 + n)
    target = _pseudo_median(SKEWED[dist], rng)
    reps = 1500
    hit = 0
    for _ in range(reps):
        _, lo, hi = S.hodges_lehmann(SKEWED[dist](rng, n))
        hit += lo <= target <= hi
    assert hit / reps >= LEVEL


def _spearman_pop(r):
    return 6 / math.pi * math.asin(r / 2)


@pytest.mark.parametrize("n", [8, 32])
@pytest.mark.parametrize("r", [0.0, 0.5, 0.8])
@pytest.mark.parametrize("skew", [False, True])
def test_fisher_z_interval_covers_spearman_rho(n, r, skew):
    rng = np.random.default_rng(200 + n)
    cov = np.array([[1, r], [r, 1]])
    reps, hit = 1500, 0
    for _ in range(reps):
        xy = rng.multivariate_normal([0, 0], cov, size=n)
        if skew:                                   # monotone skewing of both margins
            xy = np.exp(xy)
        lo, hi = S._fisher_ci(S.spearman(xy[:, 0], xy[:, 1]), n, 0.95)
        hit += lo <= _spearman_pop(r) <= hi
    assert hit / reps >= LEVEL


@pytest.mark.parametrize("n", [8, 32])
@pytest.mark.parametrize("r1,r2,r12", [(0.0, 0.0, 0.3), (0.6, 0.2, 0.3), (0.5, -0.5, -0.4), (0.7, 0.6, 0.6)])
def test_zou_interval_covers_the_strength_difference(n, r1, r2, r12):
    rng = np.random.default_rng(300 + n)
    cov = np.array([[1, r1, r2], [r1, 1, r12], [r2, r12, 1]])
    target = abs(_spearman_pop(r1)) - abs(_spearman_pop(r2))
    reps, hit = 800, 0
    for _ in range(reps):
        v = np.exp(rng.multivariate_normal([0, 0, 0], cov, size=n))
        o = S.abs_correlation_difference(v[:, 1], v[:, 2], v[:, 0])
        hit += o["lo"] <= target <= o["hi"]
    assert hit / reps >= LEVEL


def test_t_interval_under_covers_skewed_means_at_8_tasks():
    """Why the claims do not test means: the t interval of a lognormal mean covers ~80% at 8 tasks."""
    rng = np.random.default_rng(400)
    mean = math.exp(0.5)
    hit = sum(lo <= mean <= hi for lo, hi in (S.t_interval(rng.lognormal(0, 1, 8)) for _ in range(2000)))
    assert hit / 2000 < 0.88
