"""Statistics with tasks as the sampling unit (pure numpy / scipy; deterministic given ``seed``).

The study has few tasks (5 on the mini profile) and a few seeds per task. Seeds of one task are
not independent replications of the *study*: they share the task. So every interval here treats
the **task** as the unit that is resampled, with a task's seeds (and its ID and shifted-domain
points) kept together ("seeds nested inside tasks"):

* :func:`task_mean_ci` - mean over tasks of the per-task seed mean, BCa interval from
  ``scipy.stats.bootstrap`` over tasks. A mean of values in [lo, hi] has every bootstrap replicate
  inside [lo, hi]; ``bounds`` clips the rounding that BCa's interpolation can add, so bounded
  quantities (accuracies, gains) always get intervals inside their bounds.
* :func:`correlation` - Spearman rho (or the partial Spearman rho controlling for a third
  variable) over points grouped in tasks (array ``[task, slot]``), with a BCa interval from the
  bootstrap over tasks and a permutation p-value that permutes whole tasks: enumerated exactly for
  ``n_tasks <= EXACT_MAX_TASKS`` (8! = 40,320 permutations), ``scipy.stats.permutation_test``
  (Monte Carlo, ``N_PERMUTATIONS``) above. With one point per task this is the ordinary exact
  Spearman test (n = 5: smallest p = 2/5! = 0.017).
* :func:`paired_comparison` - method A vs method B paired per (task, seed): the per-task mean
  difference, its BCa interval over tasks, per-task wins / losses / ties and the two-sided sign
  test across tasks (``scipy.stats.binomtest``).
* :func:`wilson_ci` - binomial (Wilson) interval of an accuracy measured on n images.

What scipy does and what is written here
----------------------------------------
scipy: the BCa bootstrap (``stats.bootstrap``), Monte Carlo permutation tests above 8 tasks
(``stats.permutation_test``), the sign test and the Wilson interval (``stats.binomtest``), ranks
(``stats.rankdata``). Written here, and tested against scipy or brute force: (1) Spearman and partial
Spearman as the Pearson correlation of ranks, vectorised over a batch of resamples or permutations
with NaN-masked points (``spearmanr`` does not batch that way; scipy has no partial Spearman);
(2) the exact enumeration of task permutations for n <= 8, so that when every task has points in
the same slots the ranks are computed once and only permuted (8! = 40,320 permutations per
statistic; equal to scipy's exact ``permutation_test``, see the tests); (3) a percentile interval
of the finite bootstrap replicates when BCa is undefined (degenerate replicates).
"""
from __future__ import annotations

import itertools
import math
import warnings
from functools import lru_cache

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 1.0 - CONFIDENCE
N_RESAMPLES = 2000          # bootstrap resamples (BCa)
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


def _bca(n: int, statistic, n_resamples: int, seed: int, confidence: float) -> tuple[float, float]:
    """BCa interval of ``statistic(idx, axis=-1)`` over resamples of the task indices 0..n-1.

    ``scipy.stats.bootstrap`` returns NaN when the bootstrap distribution is degenerate or holds
    undefined replicates (a resample whose correlation is undefined); then the percentile interval
    of the finite replicates is used (the only hand-written interval here)."""
    idx = np.arange(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            res = stats.bootstrap((idx,), statistic, n_resamples=n_resamples, vectorized=True,
                                  confidence_level=confidence, method="BCa", rng=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if np.isfinite(lo) and np.isfinite(hi):
        return lo, hi
    dist = _finite(res.bootstrap_distribution)
    if dist.size < max(10, n_resamples // 2):
        return NAN, NAN
    a = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(dist, [a, 1.0 - a])
    return float(lo), float(hi)


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


def task_mean_ci(values, tasks, bounds=None, n_resamples: int = N_RESAMPLES, seed: int = SEED,
                 confidence: float = CONFIDENCE) -> dict:
    """Mean over tasks of the per-task mean (a task's seeds averaged first), with a BCa interval
    from the bootstrap over tasks. Returns dict(value, lo, hi, n_tasks); no interval (NaN) with
    fewer than ``MIN_TASKS_CI`` tasks; [v, v] when every task has the same value."""
    _, m = task_means(values, tasks)
    n = int(m.size)
    if n == 0:
        return dict(value=NAN, lo=NAN, hi=NAN, n_tasks=0)
    value = float(np.mean(m))
    if n < MIN_TASKS_CI:
        return dict(value=value, lo=NAN, hi=NAN, n_tasks=n)
    if np.ptp(m) == 0:
        return dict(value=value, lo=value, hi=value, n_tasks=n)
    lo, hi = _bca(n, lambda i, axis=-1: m[i].mean(axis=axis), n_resamples, seed, confidence)
    lo, hi = _clip(lo, hi, bounds)
    return dict(value=value, lo=lo, hi=hi, n_tasks=n)


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
    ry = RY[perms].reshape(len(perms), -1)
    rx = RX.reshape(-1)[None, :]
    rxy = _pearson(rx, ry)
    if Z is None:
        return rxy
    rz = rk(Z).reshape(-1)[None, :]
    rxz, ryz = _pearson(rx, rz), _pearson(ry, rz)
    with np.errstate(all="ignore"):
        den = np.sqrt((1 - rxz ** 2) * (1 - ryz ** 2))
        return np.clip(np.where(den > 0, (rxy - rxz * ryz) / den, np.nan), -1.0, 1.0)


def correlation(x, y, z=None, n_resamples: int = N_RESAMPLES, n_permutations: int = N_PERMUTATIONS,
                seed: int = SEED, confidence: float = CONFIDENCE) -> dict:
    """Spearman rho of ``x`` and ``y`` (partial, controlling for ``z``, when given) over points
    grouped by task: arrays of shape [task] (one point per task) or [task, slot] (e.g. slot 0 = ID,
    1.. = shifted domains; NaN = no point).

    * ``rho``: over every point where x, y (and z) are finite;
    * ``lo``, ``hi``: BCa interval from resampling whole tasks (a task's points stay together);
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
    out = dict(rho=NAN, lo=NAN, hi=NAN, p=NAN, p_method="", n_points=int(ok.sum()), n_tasks=int(n))
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
    if n >= MIN_TASKS_CI:
        out["lo"], out["hi"] = _bca(n, lambda i, axis=-1: stat_idx(i, i, i), n_resamples, seed, confidence)
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
        def abs_stat(perm, axis=-1):
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


def correlation_difference(xa, xb, y, z=None, sign_a: int = 1, sign_b: int = 1, n_resamples: int = N_RESAMPLES,
                           seed: int = SEED, confidence: float = CONFIDENCE) -> dict:
    """diff = sign_a * rho(xa, y) - sign_b * rho(xb, y) (partial given ``z`` when given), arrays as in
    :func:`correlation`, with a BCa interval from resampling whole tasks, the same tasks for both
    correlations (paired). Returns dict(diff, lo, hi, n_tasks)."""
    A, B, Y = _as_blocks(xa, "xa"), _as_blocks(xb, "xb"), _as_blocks(y, "y")
    Z = None if z is None else _as_blocks(z, "z")
    if not A.shape == B.shape == Y.shape or (Z is not None and Z.shape != Y.shape):
        raise ValueError("xa, xb, y (and z) must have the same [task, slot] shape")
    ok = np.isfinite(A) & np.isfinite(B) & np.isfinite(Y) & (np.isfinite(Z) if Z is not None else True)
    keep = ok.any(axis=1)
    A, B, Y = A[keep], B[keep], Y[keep]
    Z = Z[keep] if Z is not None else None
    n = int(A.shape[0])
    out = dict(diff=NAN, lo=NAN, hi=NAN, n_tasks=n)
    if int(ok.sum()) < 3:
        return out

    def stat(i, axis=-1):
        flat = lambda M: M[i].reshape(*i.shape[:-1], -1)  # noqa: E731
        zs = None if Z is None else flat(Z)
        return sign_a * _spearman_flat(flat(A), flat(Y), zs) - sign_b * _spearman_flat(flat(B), flat(Y), zs)

    out["diff"] = float(stat(np.arange(n)))
    if np.isfinite(out["diff"]) and n >= MIN_TASKS_CI:
        out["lo"], out["hi"] = _bca(n, stat, n_resamples, seed, confidence)
    return out


# ----------------------------------------------------------------------------- paired comparisons
def paired_comparison(diff, tasks, bounds=None, n_resamples: int = N_RESAMPLES, seed: int = SEED,
                      confidence: float = CONFIDENCE) -> dict:
    """A vs B from paired differences ``diff = A - B`` per (task, seed) row.

    Per task the mean difference over its seeds; ``value`` = mean over tasks with a BCa interval
    over tasks (``lo``, ``hi``); ``wins`` / ``losses`` / ``ties`` = tasks where A's mean is above /
    below / equal to B's; ``sign_p`` = two-sided sign test over the tasks that are not ties
    (``scipy.stats.binomtest``, p = 0.5)."""
    names, m = task_means(diff, tasks)
    r = task_mean_ci(diff, tasks, bounds=bounds, n_resamples=n_resamples, seed=seed, confidence=confidence)
    wins, losses = int((m > 0).sum()), int((m < 0).sum())
    ties = int(m.size - wins - losses)
    p = float(stats.binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else NAN
    return dict(value=r["value"], lo=r["lo"], hi=r["hi"], wins=wins, losses=losses, ties=ties, sign_p=p,
                n_tasks=int(m.size))


# ----------------------------------------------------------------------------- accuracies
def wilson_ci(acc, n, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson interval of an accuracy ``acc`` (a fraction) measured on ``n`` images
    (``scipy.stats.binomtest(...).proportion_ci``); always inside [0, 1]."""
    if not (np.isfinite(acc) and np.isfinite(n)) or n <= 0:
        return NAN, NAN
    k = int(round(float(acc) * int(n)))
    ci = stats.binomtest(k, int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)
