"""Statistics with tasks as the sampling unit (numpy / scipy / statsmodels; deterministic given ``seed``).

The study has few tasks (8 on the mini profile) and a few seeds per task. Seeds of one task are not
independent replications of the *study*: they share the task. So a task's seeds are averaged first
and every test and interval here is over **tasks**. The tests and intervals that the claims use, and
why each is calibrated at 8 tasks, are described at "analysis v3" below; this part holds the shared
pieces:

* :func:`task_means` - per-task mean of per-(task, seed) values;
* :func:`task_mean_ci` - mean over tasks with its t interval (a description: the claims test
  pseudo-medians, see :func:`paired_test`);
* :func:`correlation` - Spearman rho (or partial Spearman) of points grouped in tasks and its
  permutation p-value that permutes whole tasks: enumerated exactly for ``n_tasks <=
  EXACT_MAX_TASKS`` (8! = 40,320 permutations), ``scipy.stats.permutation_test`` (Monte Carlo,
  ``N_PERMUTATIONS``) above;
* :func:`wilson_ci` - binomial (Wilson) interval of an accuracy measured on n images.

scipy does the Monte Carlo permutation tests above 8 tasks (``stats.permutation_test``), the Wilson
interval (``stats.binomtest``) and ranks (``stats.rankdata``); statsmodels the exact McNemar test.
Written here, and tested against statsmodels, scipy or brute force: the Holm adjustment (four lines,
equal to ``statsmodels.stats.multitest.multipletests(method="holm")``, which runs ``gc.collect()`` on
every call: 0.1 s or more each in a process holding torch and pandas, ~80 calls per
``lib.analysis.compute``, 9 of its 16 s measured);
Spearman and partial Spearman as the Pearson correlation of ranks, vectorised over a batch of
permutations with NaN-masked points (``spearmanr`` does not batch that way; scipy has no partial
Spearman), and the exact enumeration of task permutations for n <= 8.
"""
from __future__ import annotations

import itertools
import math
import warnings
from functools import lru_cache

import numpy as np
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar

ALPHA = 0.05
CONFIDENCE = 1.0 - ALPHA
N_PERMUTATIONS = 20000      # Monte Carlo permutations when the exact enumeration is too large
EXACT_MAX_TASKS = 8         # full enumeration of task permutations up to 8! = 40,320
MIN_TASKS_CI = 3            # fewer tasks: no interval (NaN)
SEED = 0

NAN = float("nan")


# ----------------------------------------------------------------------------- helpers
def _finite(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    return a[np.isfinite(a)]


def _clip(lo: float, hi: float, bounds) -> tuple[float, float]:
    if bounds is None:
        return lo, hi
    b0, b1 = bounds
    return (float(np.clip(lo, b0, b1)) if np.isfinite(lo) else lo,
            float(np.clip(hi, b0, b1)) if np.isfinite(hi) else hi)


# ----------------------------------------------------------------------------- means over tasks
def task_means(values, tasks) -> tuple[np.ndarray, np.ndarray]:
    """Per-task mean of ``values`` (NaN skipped), tasks sorted: (task names, means)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    t = np.asarray(tasks).reshape(-1)
    if v.shape != t.shape:
        raise ValueError(f"values and tasks differ in length: {v.size} vs {t.size}")
    names = np.array(sorted(set(t[np.isfinite(v)].tolist())), dtype=object)
    means = np.array([np.mean(v[(t == k) & np.isfinite(v)]) for k in names], dtype=np.float64)
    return names, means


def task_mean_ci(values, tasks, bounds=None, confidence: float = CONFIDENCE) -> dict:
    """Mean over tasks of the per-task mean (a task's seeds averaged first) with its t interval over
    tasks (``ci_method``), clipped to ``bounds``. No interval (NaN) with fewer than ``MIN_TASKS_CI``
    tasks; [v, v] when every task has the same value."""
    _, m = task_means(values, tasks)
    n = int(m.size)
    out = dict(value=NAN, lo=NAN, hi=NAN, n_tasks=n, ci_method=T_TASKS)
    if n == 0:
        return out
    out["value"] = float(np.mean(m))
    if n < MIN_TASKS_CI:
        return out
    if np.ptp(m) == 0:
        out["lo"] = out["hi"] = out["value"]
        return out
    out["lo"], out["hi"] = t_interval(m, confidence, bounds)
    return out


# ----------------------------------------------------------------------------- Spearman
def _ranks(a: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis, NaN kept as NaN (ties averaged, as scipy.stats.spearmanr)."""
    return stats.rankdata(a, axis=-1, nan_policy="omit")


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r along the last axis over the positions where both are finite."""
    ok = np.isfinite(a) & np.isfinite(b)
    n = ok.sum(axis=-1)
    a = np.where(ok, a, 0.0)
    b = np.where(ok, b, 0.0)
    with np.errstate(all="ignore"):
        ac = np.where(ok, a - (a.sum(-1) / n)[..., None], 0.0)
        bc = np.where(ok, b - (b.sum(-1) / n)[..., None], 0.0)
        num = (ac * bc).sum(-1)
        den = np.sqrt((ac * ac).sum(-1) * (bc * bc).sum(-1))
        r = np.where((den > 0) & (n >= 2), num / den, np.nan)
    return np.clip(r, -1.0, 1.0)


def _spearman_flat(x: np.ndarray, y: np.ndarray, z: np.ndarray | None = None) -> np.ndarray:
    """Spearman rho (z is None) or partial Spearman rho given z, along the last axis; a position is
    used only where x, y (and z) are all finite."""
    bad = ~(np.isfinite(x) & np.isfinite(y))
    if z is not None:
        bad |= ~np.isfinite(z)
    x, y = np.where(bad, np.nan, x), np.where(bad, np.nan, y)
    rx, ry = _ranks(x), _ranks(y)
    rxy = _pearson(rx, ry)
    if z is None:
        return rxy
    rz = _ranks(np.where(bad, np.nan, z))
    rxz, ryz = _pearson(rx, rz), _pearson(ry, rz)
    with np.errstate(all="ignore"):
        den = np.sqrt((1 - rxz ** 2) * (1 - ryz ** 2))
        return np.clip(np.where(den > 0, (rxy - rxz * ryz) / den, np.nan), -1.0, 1.0)


def spearman(x, y) -> float:
    """Spearman rho of two 1-D arrays (pairs with a NaN dropped); equals scipy.stats.spearmanr."""
    x, y = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (x, y))
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.size} vs {y.size}")
    return float(_spearman_flat(x, y))


def partial_spearman(x, y, z) -> float:
    """Spearman rho of x and y controlling for z: the partial correlation of the ranks,
    (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2))."""
    x, y, z = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (x, y, z))
    if not x.shape == y.shape == z.shape:
        raise ValueError(f"x, y, z differ in length: {x.size}, {y.size}, {z.size}")
    return float(_spearman_flat(x, y, z))


@lru_cache(maxsize=16)
def _all_permutations(n: int) -> np.ndarray:
    return np.array(list(itertools.permutations(range(n))), dtype=np.intp)


def _as_blocks(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be [task] or [task, slot]; got shape {a.shape}")
    return a


def _null_same_slots(X, Y, Z, slots, perms) -> np.ndarray:
    """Spearman (or partial) rho of x with every task permutation of y, when all tasks have points in
    the same ``slots``: ranks computed once, permuted by blocks."""
    n, k = X.shape[0], int(slots.sum())
    rk = lambda M: _ranks(M[:, slots].reshape(-1)).reshape(n, k)  # noqa: E731
    RX, RY = rk(X), rk(Y)
    perms = np.asarray(perms)
    ry = RY[perms].reshape(*perms.shape[:-1], -1)   # perms: [..., n] (one permutation or a batch)
    rx = RX.reshape(-1)
    rxy = _pearson(rx, ry)
    if Z is None:
        return rxy
    rz = rk(Z).reshape(-1)
    rxz, ryz = _pearson(rx, rz), _pearson(ry, rz)
    with np.errstate(all="ignore"):
        den = np.sqrt((1 - rxz ** 2) * (1 - ryz ** 2))
        return np.clip(np.where(den > 0, (rxy - rxz * ryz) / den, np.nan), -1.0, 1.0)


def correlation(x, y, z=None, n_permutations: int = N_PERMUTATIONS, seed: int = SEED) -> dict:
    """Spearman rho of ``x`` and ``y`` (partial, controlling for ``z``, when given) over points
    grouped by task: arrays of shape [task] (one point per task) or [task, slot] (e.g. slot 0 = ID,
    1.. = shifted domains; NaN = no point).

    * ``rho``: over every point where x, y (and z) are finite;
    * ``p``: two-sided permutation p-value, P(|rho*| >= |rho|), permuting whole tasks of ``y``
      against ``x`` (and ``z``): every one of the n! permutations when ``n_tasks <=
      EXACT_MAX_TASKS`` (``p_method = 'exact'``), else ``scipy.stats.permutation_test``
      (``'monte carlo'``);
    * ``n_points``, ``n_tasks``.
    """
    X, Y = _as_blocks(x, "x"), _as_blocks(y, "y")
    Z = None if z is None else _as_blocks(z, "z")
    if X.shape != Y.shape or (Z is not None and Z.shape != X.shape):
        raise ValueError(f"x, y (and z) must have the same [task, slot] shape; got {X.shape}, {Y.shape}"
                         + ("" if Z is None else f", {Z.shape}"))
    ok = np.isfinite(X) & np.isfinite(Y) & (np.isfinite(Z) if Z is not None else True)
    keep = ok.any(axis=1)
    X, Y = X[keep], Y[keep]
    Z = Z[keep] if Z is not None else None
    n, S = X.shape
    out = dict(rho=NAN, p=NAN, p_method="", n_points=int(ok.sum()), n_tasks=int(n))
    if out["n_points"] < 3:
        return out

    def stat_idx(rows_x, rows_y, rows_z):  # rows_*: index arrays (..., n) into the task axis
        xs = X[rows_x].reshape(*rows_x.shape[:-1], -1)
        ys = Y[rows_y].reshape(*rows_y.shape[:-1], -1)
        zs = None if Z is None else Z[rows_z].reshape(*rows_z.shape[:-1], -1)
        return _spearman_flat(xs, ys, zs)

    ident = np.arange(n)
    rho = float(stat_idx(ident, ident, ident))
    out["rho"] = rho
    if not np.isfinite(rho):
        return out
    # permutation p: permute whole tasks of y; x and z stay
    tol = 1e-12 * max(1.0, abs(rho))
    okk = ok[keep]
    if n <= EXACT_MAX_TASKS:
        perms = _all_permutations(n)
        if (okk == okk[0]).all():
            # every task has points in the same slots: permuting whole tasks of y permutes its ranks
            # in blocks, so rank once and correlate the permuted rank blocks (same numbers, no re-ranking)
            null = _null_same_slots(X, Y, Z, okk[0], perms)
        else:
            null = stat_idx(np.broadcast_to(ident, perms.shape), perms, np.broadcast_to(ident, perms.shape))
        null = np.where(np.isfinite(null), null, 0.0)  # undefined correlation counts as 0
        out["p"] = float(np.mean(np.abs(null) >= abs(rho) - tol))
        out["p_method"] = "exact"
    else:
        same = bool((okk == okk[0]).all())   # as above: rank once, permute rank blocks (3x faster at 32 tasks)

        def abs_stat(perm, axis=-1):
            if same:
                r = _null_same_slots(X, Y, Z, okk[0], perm)
            else:
                r = stat_idx(np.broadcast_to(ident, perm.shape), perm, np.broadcast_to(ident, perm.shape))
            return np.abs(np.where(np.isfinite(r), r, 0.0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stats.permutation_test((ident,), abs_stat, permutation_type="pairings", vectorized=True,
                                         n_resamples=n_permutations, alternative="greater",
                                         rng=np.random.default_rng(seed))
        out["p"] = float(res.pvalue)
        out["p_method"] = "monte carlo" if math.factorial(n) > n_permutations else "exact"
    return out


# ----------------------------------------------------------------------------- accuracies
def wilson_ci(acc, n, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson interval of an accuracy ``acc`` (a fraction) measured on ``n`` images
    (``scipy.stats.binomtest(...).proportion_ci``); always inside [0, 1]."""
    if not (np.isfinite(acc) and np.isfinite(n)) or n <= 0:
        return NAN, NAN
    k = int(round(float(acc) * int(n)))
    ci = stats.binomtest(k, int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


# ============================================================================= analysis v3
# Tests and intervals calibrated for few tasks (the claims use only these). Each reported p-value and
# interval address the same estimand under the same null, so p < 0.05 iff 0 lies outside the 95%
# interval (up to the discreteness of exact tests; tests/test_stats_calibration.py shows it):
#
# * paired method comparisons and one-sample effects over tasks: the Wilcoxon signed-rank test, i.e. the
#   exact sign-flip randomisation test of the per-task differences' signed ranks (all 2^n sign flips,
#   counted by a convolution over the doubled midranks, so ties and n = 40 stay exact), with the
#   Hodges-Lehmann estimate (the median of the Walsh averages) and the interval that inverts that test.
#   Estimand: the pseudo-median of the per-task difference (a typical task). A mean over 8 tasks has no
#   interval that covers 95% when the differences are skewed (t and sign-flip-of-the-mean intervals
#   cover 80-88% for lognormal or exponential data at n = 8); the signed-rank interval covers its
#   estimand >= 94% for normal, gamma, exponential and lognormal data at n = 8 and 32 (simulated in the
#   slow test). The mean is reported beside it as a description.
# * correlations over tasks: Spearman rho with the exact permutation p (all n! pairings up to 8 tasks,
#   Monte Carlo above) and the Fisher-z interval with Bonett & Wright's (2000) variance
#   (1 + rho^2 / 2) / (n - 3). Rank statistics are invariant to monotone transforms, so the interval's
#   coverage does not depend on the margins' skew.
# * the difference of two dependent correlations that share the outcome (|rho(ss, g)| - |rho(ACS, g)|):
#   Zou's (2007) interval built from the two Fisher-z intervals and the correlation of the estimates;
#   its p is the level at which that interval touches 0 (so they agree exactly).
# * minimal detectable effects (80% power) at the study's number of tasks and the family's level,
#   simulated for these tests ("power (v3)" below).
#
# Written here rather than taken from scipy: scipy.stats.wilcoxon's exact mode refuses ties and zeros
# (it falls back to a normal approximation) and has no Hodges-Lehmann interval; scipy has no Fisher-z
# interval for Spearman, no Zou interval and no partial Spearman. Each is checked against scipy where
# scipy has the same quantity (tests/test_analysis.py).
POWER = 0.80
WILCOXON = "Hodges-Lehmann, inverted exact signed-rank (sign-flip) test over tasks"
FISHER_BW = "Fisher z, Bonett-Wright variance, over tasks"
ZOU = "Zou (2007) interval for dependent correlations (Fisher z, Bonett-Wright), over tasks"
T_TASKS = "t interval over tasks"
T_SEEDS = "t interval over seeds"


def _signed_rank_parts(d: np.ndarray):
    """Doubled midranks of |d| over the nonzero d (integers) and the observed doubled T+."""
    d = d[d != 0]
    r2 = np.rint(2 * stats.rankdata(np.abs(d))).astype(np.int64)
    return r2, int(r2[d > 0].sum())


@lru_cache(maxsize=256)
def _signed_rank_null(r2: tuple) -> np.ndarray:
    """P(T+ = t) for t = 0..sum(r2) when every sign is +/- with probability 1/2 (exact convolution)."""
    total = int(sum(r2))
    dist = np.zeros(total + 1)
    dist[0] = 1.0
    for w in r2:
        shifted = np.zeros_like(dist)
        shifted[w:] = dist[:total + 1 - w]
        dist = 0.5 * (dist + shifted)
    return dist


def signed_rank_p(d, alternative: str = "two-sided") -> float:
    """Exact p of the signed-rank (sign-flip) test that the per-task differences ``d`` are symmetric
    about 0 (zeros dropped, ties as midranks); 'greater': the centre is above 0."""
    d = _finite(d)
    r2, t = _signed_rank_parts(d)
    if r2.size == 0:
        return 1.0
    dist = _signed_rank_null(tuple(sorted(r2.tolist())))
    cdf = np.cumsum(dist)
    tol = 1e-12
    upper = float(dist[t:].sum())                      # P(T+ >= t)
    lower = float(cdf[t])                              # P(T+ <= t)
    if alternative == "greater":
        return min(1.0, upper + tol)
    if alternative == "less":
        return min(1.0, lower + tol)
    centre = r2.sum() / 2.0
    dev = abs(t - centre)
    k = np.arange(dist.size)
    return float(min(1.0, dist[np.abs(k - centre) >= dev - 1e-9].sum()))


@lru_cache(maxsize=64)
def _walsh_cut(n: int, alpha: float) -> int:
    """Number of Walsh averages cut from each end for a two-sided (1 - alpha) interval: the largest c
    with P(T+ <= c - 1) <= alpha / 2 under the no-tie null of n ranks (c >= 1; 0 when none exists)."""
    cdf = np.cumsum(_signed_rank_null(tuple(range(2, 2 * n + 1, 2))))
    # T+ in doubled units: P(T+ <= 2j) for j = 0, 1, ...
    c = 0
    while 2 * c < cdf.size and cdf[2 * c] <= alpha / 2 + 1e-12:
        c += 1
    return c


def hodges_lehmann(d, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(estimate, lo, hi): the median of the Walsh averages (d_i + d_j) / 2, i <= j, and the interval
    that inverts the two-sided exact signed-rank test at 1 - confidence. (nan, nan) interval when n is
    too small for that level (e.g. n < 6 at 95%)."""
    d = _finite(d)
    n = d.size
    if n == 0:
        return NAN, NAN, NAN
    i, j = np.triu_indices(n)
    w = np.sort((d[i] + d[j]) / 2.0)
    est = float(np.median(w))
    c = _walsh_cut(n, 1.0 - confidence)
    if c == 0:
        return est, NAN, NAN
    return est, float(w[c - 1]), float(w[w.size - c])


def power_z(alpha: float, power: float = POWER) -> float:
    return float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))


# ----------------------------------------------------------------------------- power (v3): simulated
# The minimal detectable effects are simulated for the tests the claims actually run, not taken from a
# t or Fisher-z formula: the signed-rank test is more powerful than the t-test's formula says when a few
# tasks carry most of the between-task SD (study3: LoRA - CLIP-Adapter |change of ss| has SD 0.106 from a
# few large tasks, yet LoRA is below on 24 of 32), and the Spearman permutation test is a little less
# powerful than Pearson's Fisher z (var(atanh rho_s) ~ 1.06 / (n - 3)). Deterministic (numpy's
# ``default_rng(SEED)``: the same draws on every machine). tests/test_power.py shows each against a
# closed form where one exists and against brute force.
MDE_DRAWS = 2000            # bootstrap / simulation draws per minimal detectable effect
_MDE_CHUNK = 250            # draws per block of Walsh averages (memory: 250 x n(n+1)/2 floats)


def _walsh_bounds(x: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``x`` (draws x n): the c-th smallest and the c-th largest Walsh average, i.e. the
    bounds of :func:`hodges_lehmann`'s interval (c = :func:`_walsh_cut`)."""
    n = x.shape[1]
    i, j = np.triu_indices(n)
    big = i.size
    lo, hi = np.empty(len(x)), np.empty(len(x))
    for s in range(0, len(x), _MDE_CHUNK):
        w = (x[s:s + _MDE_CHUNK, i] + x[s:s + _MDE_CHUNK, j]) / 2.0
        part = np.partition(w, sorted({c - 1, big - c}), axis=1)
        lo[s:s + _MDE_CHUNK], hi[s:s + _MDE_CHUNK] = part[:, c - 1], part[:, big - c]
    return lo, hi


def mde_signed_rank(d, alpha: float = ALPHA, power: float = POWER, direction: int = 0,
                    n_draws: int = MDE_DRAWS, seed: int = SEED) -> float:
    """Minimal detectable shift of the signed-rank test over the per-task values ``d``: the smallest
    shift delta (in d's units, a magnitude) such that, for n tasks drawn with replacement from ``d``
    centred at its Hodges-Lehmann estimate and then shifted by delta, the test's two-sided (1 - alpha)
    interval (:func:`hodges_lehmann`, the interval that inverts it) excludes 0 on the shift's side in
    ``power`` of the draws. ``direction`` +1: a positive shift, -1: a negative one, 0: the larger of the
    two (an effect detectable whichever its sign). The shape of the between-task distribution (its skew,
    its few large tasks, its ties) is the observed one; only its centre is moved. Each draw's threshold
    is closed form (delta > -(c-th smallest Walsh average)), so no search is needed. ``inf`` when n is too
    small for any interval at this level; NaN for fewer than 2 values."""
    d = _finite(d)
    n = d.size
    if n < 2:
        return NAN
    c = _walsh_cut(n, alpha)
    if c == 0:
        return float("inf")
    est = hodges_lehmann(d)[0]
    rng = np.random.default_rng(seed)
    x = (d - est)[rng.integers(0, n, size=(n_draws, n))]
    lo, hi = _walsh_bounds(x, c)
    k = max(0, math.ceil(power * n_draws) - 1)
    up = float(np.sort(-lo)[k])          # shift up: detected when lo + delta > 0
    down = float(np.sort(hi)[k])         # shift down: detected when hi - delta < 0
    up, down = max(up, 0.0), max(down, 0.0)
    return up if direction > 0 else down if direction < 0 else max(up, down)


@lru_cache(maxsize=128)
def mde_correlation(n: int, alpha: float = ALPHA, power: float = POWER, n_draws: int = MDE_DRAWS,
                    seed: int = SEED) -> float:
    """Smallest population Spearman rho detected with ``power`` by the two-sided permutation test of
    :func:`rank_correlation` at ``alpha`` over n tasks, simulated: the test's critical |rho| from
    ``N_PERMUTATIONS`` random pairings (its null), and ``n_draws`` samples of n points from a bivariate
    normal copula (the same draws at every correlation, so the power is monotone and the search a
    bisection); returned as the population Spearman rho, 6 / pi * asin(r / 2), of the Pearson r found.
    At or above the Fisher-z formula tanh((z_{1-a/2} + z_power) / sqrt(n - 3)) (n = 8: 0.88 vs 0.85;
    32: 0.48 vs 0.48). NaN for n <= 3; ``inf`` when no correlation reaches that power."""
    if n <= 3:
        return NAN
    rng = np.random.default_rng(seed)
    base = np.broadcast_to(np.arange(n, dtype=float), (N_PERMUTATIONS, n))
    null = np.abs(_spearman_flat(base, rng.random((N_PERMUTATIONS, n))))
    # decided when the Monte Carlo p (1 + #{null >= |rho|}) / (B + 1) <= alpha
    k = int(math.floor(alpha * (N_PERMUTATIONS + 1))) - 1     # null values allowed at or above
    if k < 0:
        return float("inf")
    crit = np.sort(null)[::-1][k] + 1e-12                     # |rho| must exceed the (k+1)-th largest
    x, z = rng.standard_normal((n_draws, n)), rng.standard_normal((n_draws, n))

    def pw(r: float) -> float:
        return float((_spearman_flat(x, r * x + math.sqrt(1 - r * r) * z) > crit).mean())

    if pw(0.9999) < power:
        return float("inf")
    a, b = 0.0, 0.9999
    for _ in range(40):
        mid = (a + b) / 2
        a, b = (a, mid) if pw(mid) >= power else (mid, b)
    return float(6 / math.pi * math.asin(b / 2))


def paired_test(d, tasks=None, confidence: float = CONFIDENCE, alternative: str = "two-sided",
                mde: bool = False) -> dict:
    """Paired differences over tasks (``tasks`` given: per-task means first, a task's seeds averaged).

    Returns estimate (Hodges-Lehmann), lo, hi (inverted exact signed-rank test), p (exact, two-sided
    unless ``alternative``), mean, sd (between tasks), wins / losses / ties (tasks above / below /
    at 0), n_tasks, ci_method, p_method, and with ``mde`` the minimal detectable shift at 80% power and
    1 - ``confidence`` in either direction (:func:`mde_signed_rank`; NaN without)."""
    if tasks is not None:
        _, d = task_means(d, tasks)
    d = _finite(d)
    est, lo, hi = hodges_lehmann(d, confidence)
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    return dict(estimate=est, lo=lo, hi=hi, p=signed_rank_p(d, alternative) if d.size else NAN,
                mde=mde_signed_rank(d, 1.0 - confidence) if mde else NAN,
                mean=float(d.mean()) if d.size else NAN, sd=float(d.std(ddof=1)) if d.size > 1 else NAN,
                wins=wins, losses=losses, ties=int(d.size - wins - losses), n_tasks=int(d.size),
                ci_method=WILCOXON, p_method="exact signed-rank (sign-flip)")


def equivalence_test(d, margin: float, tasks=None, alpha: float = ALPHA) -> dict:
    """Two one-sided signed-rank tests (TOST) that the per-task values lie within (-margin, +margin):
    p_tost = max(p(d + margin > 0), p(d - margin < 0)); equivalently the (1 - 2 alpha) Hodges-Lehmann
    interval lies inside the margins. statsmodels' TOST (``ttost_paired``) is t-based, which the
    skewed-data coverage above rules out at 8 tasks, so the signed-rank form is used."""
    if tasks is not None:
        _, d = task_means(d, tasks)
    d = _finite(d)
    p_lo = signed_rank_p(d + margin, "greater")
    p_hi = signed_rank_p(d - margin, "less")
    _, lo, hi = hodges_lehmann(d, 1.0 - 2 * alpha)
    return dict(p_tost=float(max(p_lo, p_hi)), lo90=lo, hi90=hi, margin=float(margin))


# ----------------------------------------------------------------------------- correlations (v3)
def _fisher_ci(r: float, n: int, confidence: float, controls: int = 0) -> tuple[float, float]:
    if not np.isfinite(r) or n - 3 - controls <= 0:
        return NAN, NAN
    r = float(np.clip(r, -0.999999, 0.999999))
    se = math.sqrt((1 + r * r / 2) / (n - 3 - controls))
    q = stats.norm.ppf(0.5 + confidence / 2)
    z = math.atanh(r)
    return float(np.tanh(z - q * se)), float(np.tanh(z + q * se))


def rank_correlation(x, y, z=None, n_permutations: int = N_PERMUTATIONS, seed: int = SEED,
                     confidence: float = CONFIDENCE) -> dict:
    """Spearman rho (partial given ``z``) over one point per task, the exact permutation p (every
    pairing up to ``EXACT_MAX_TASKS`` tasks, else Monte Carlo) and the Fisher-z interval with the
    Bonett-Wright variance (one degree of freedom less per control). Points with a NaN are dropped."""
    r = correlation(np.asarray(x, float).reshape(-1), np.asarray(y, float).reshape(-1),
                    None if z is None else np.asarray(z, float).reshape(-1), n_permutations=n_permutations,
                    seed=seed)
    n = r["n_tasks"]
    lo, hi = _fisher_ci(r["rho"], n, confidence, controls=0 if z is None else 1)
    return dict(rho=r["rho"], lo=lo, hi=hi, p=r["p"], n_tasks=n, p_method=f"{r['p_method']} permutation",
                ci_method=FISHER_BW, mde=mde_correlation(n))


def _zou_bounds(a1, a2, r12, n, confidence):
    l1, u1 = _fisher_ci(a1, n, confidence)
    l2, u2 = _fisher_ci(a2, n, confidence)
    den = (1 - a1 ** 2) * (1 - a2 ** 2)
    c = ((r12 - 0.5 * a1 * a2) * (1 - a1 ** 2 - a2 ** 2 - r12 ** 2) + r12 ** 3) / den if den > 0 else 0.0
    d = a1 - a2
    lo = d - math.sqrt(max(0.0, (a1 - l1) ** 2 + (u2 - a2) ** 2 - 2 * c * (a1 - l1) * (u2 - a2)))
    hi = d + math.sqrt(max(0.0, (u1 - a1) ** 2 + (a2 - l2) ** 2 - 2 * c * (u1 - a1) * (a2 - l2)))
    return lo, hi


def abs_correlation_difference(x1, x2, y, confidence: float = CONFIDENCE) -> dict:
    """|rho(x1, y)| - |rho(x2, y)| over one point per task (Spearman), Zou's (2007) interval for two
    dependent correlations sharing y (each correlation taken on its own observed sign, so the two are
    compared by strength whatever their direction), and the two-sided p at which that interval
    touches 0 (bisection over the confidence level)."""
    x1, x2, y = (np.asarray(v, float).reshape(-1) for v in (x1, x2, y))
    ok = np.isfinite(x1) & np.isfinite(x2) & np.isfinite(y)
    x1, x2, y = x1[ok], x2[ok], y[ok]
    n = int(ok.sum())
    out = dict(diff=NAN, lo=NAN, hi=NAN, p=NAN, n_tasks=n, ci_method=ZOU, p_method="inverted Zou interval",
               mde=NAN)
    if n <= 3:
        return out
    r1, r2, r12 = spearman(x1, y), spearman(x2, y), spearman(x1, x2)
    if not all(np.isfinite([r1, r2, r12])):
        return out
    s1, s2 = (1.0 if r1 >= 0 else -1.0), (1.0 if r2 >= 0 else -1.0)
    a1, a2, r12a = abs(r1), abs(r2), s1 * s2 * r12
    a1c, a2c = min(a1, 0.999999), min(a2, 0.999999)
    lo, hi = _zou_bounds(a1c, a2c, r12a, n, confidence)
    d = a1 - a2
    # p: the level at which the interval's bound on the side of 0 reaches 0
    if d == 0:
        p = 1.0
    else:
        a, b = 1e-9, 1.0 - 1e-12          # confidence levels: the interval widens with the level
        side = 0 if d > 0 else 1
        for _ in range(80):
            mid = (a + b) / 2
            bound = _zou_bounds(a1c, a2c, r12a, n, mid)[side]
            if (bound > 0) if d > 0 else (bound < 0):
                a = mid
            else:
                b = mid
        p = float(1.0 - (a + b) / 2)
    half = (hi - lo) / 2
    se = half / stats.norm.ppf(0.5 + confidence / 2)
    out.update(diff=float(d), lo=float(max(lo, -1.0)), hi=float(min(hi, 1.0)), p=p, rho_1=float(r1), rho_2=float(r2), rho_12=float(r12),
               mde=float(power_z(ALPHA) * se))
    return out


def t_interval(values, confidence: float = CONFIDENCE, bounds=None) -> tuple[float, float]:
    """The t interval of the mean of ``values`` (NaN with fewer than 2), clipped to ``bounds``."""
    v = _finite(values)
    if v.size < 2:
        return NAN, NAN
    m, se = v.mean(), v.std(ddof=1) / math.sqrt(v.size)
    q = stats.t.ppf(0.5 + confidence / 2, v.size - 1)
    return _clip(float(m - q * se), float(m + q * se), bounds)


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p-values, NaN stays NaN: sorted ascending, the i-th of m (from 0) is multiplied by
    m - i, made non-decreasing, capped at 1 (``multipletests(method="holm")``'s values, tested equal;
    see the module docstring for why it is not called)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size:
        order = ok[np.argsort(p[ok], kind="stable")]
        out[order] = np.minimum(np.maximum.accumulate(p[order] * np.arange(ok.size, 0, -1)), 1.0)
    return out


def mcnemar_p(n_lost: int, n_won: int) -> float:
    """Exact McNemar p (``statsmodels``) from the discordant counts of a fine-tuned model vs the
    zero-shot model on the same images."""
    if n_lost + n_won == 0:
        return 1.0
    return float(mcnemar([[0, int(n_lost)], [int(n_won), 0]], exact=True).pvalue)
