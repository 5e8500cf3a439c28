"""Tests for lib/metrics.py: silhouette equals sklearn, hand-computed alignment/statistics."""

import math

import numpy as np
import pytest
from sklearn.metrics import silhouette_samples, silhouette_score

from lib import metrics as M

TOL = 1e-6


def _sk(X, y):
    return silhouette_score(X, y, metric="cosine")


# ----------------------------------------------------------------------------- silhouette
@pytest.mark.parametrize(
    "n,d,k,seed",
    [(40, 3, 2, 0), (200, 16, 3, 1), (500, 64, 5, 2), (1500, 512, 2, 3), (300, 8, 12, 4),
     (400, 20, 40, 5)],  # k=40 exercises the sort/reduceat path for many clusters
)
def test_silhouette_matches_sklearn_random(n, d, k, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) + rng.normal(size=d)  # off-centre so cosine is informative
    y = rng.integers(0, k, size=n)
    y[:k] = np.arange(k)
    assert M.silhouette_cosine(X, y) == pytest.approx(_sk(X, y), abs=TOL)
    np.testing.assert_allclose(
        M.silhouette_samples_cosine(X, y), silhouette_samples(X, y, metric="cosine"), atol=TOL
    )


def test_silhouette_clustered_data_matches_sklearn():
    rng = np.random.default_rng(10)
    centers = rng.normal(size=(4, 32)) * 3
    y = rng.integers(0, 4, size=600)
    X = centers[y] + rng.normal(size=(600, 32))
    s = M.silhouette_cosine(X, y)
    assert s > 0.3
    assert s == pytest.approx(_sk(X, y), abs=TOL)


def test_silhouette_singleton_cluster():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 6))
    y = np.array([0] * 30 + [1] * 19 + [2])  # cluster 2 is a singleton
    samples = M.silhouette_samples_cosine(X, y)
    assert samples[-1] == 0.0
    np.testing.assert_allclose(samples, silhouette_samples(X, y, metric="cosine"), atol=TOL)
    assert M.silhouette_cosine(X, y) == pytest.approx(_sk(X, y), abs=TOL)


def test_silhouette_duplicate_and_zero_points():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(80, 5))
    X[10:20] = X[10]  # ten identical points
    X[30:33] = 2.5 * X[30]  # same direction, different norm -> cosine distance 0
    X[50] = 0.0  # all-zero row: distance 1 to everything (sklearn's normalize convention)
    y = rng.integers(0, 3, size=80)
    y[10:15] = 1
    np.testing.assert_allclose(
        M.silhouette_samples_cosine(X, y), silhouette_samples(X, y, metric="cosine"), atol=TOL
    )
    assert M.silhouette_cosine(X, y) == pytest.approx(_sk(X, y), abs=TOL)


def test_silhouette_all_duplicate_cluster_is_exactly_one():
    X = np.array([[1, 2.0], [1, 2], [1, 2], [3, -1], [3, -1.1], [-2, 1]])
    y = [0, 0, 0, 1, 1, 1]
    ours = M.silhouette_samples_cosine(X, y)
    np.testing.assert_array_equal(ours[:3], 1.0)  # sklearn clips distances; so do we, in effect
    np.testing.assert_allclose(ours, silhouette_samples(X, y, metric="cosine"), atol=TOL)


def test_silhouette_rejects_nan_inf():
    X = np.random.default_rng(0).normal(size=(10, 3))
    y = [0] * 5 + [1] * 5
    for bad in (np.nan, np.inf):
        Xb = X.copy()
        Xb[4, 1] = bad
        with pytest.raises(ValueError, match="NaN or infinity"):
            M.silhouette_cosine(Xb, y)


def test_silhouette_string_labels():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(120, 10)) + 1.0
    y = rng.choice(["cat", "dog", "bird"], size=120)
    assert M.silhouette_cosine(X, y) == pytest.approx(_sk(X, y), abs=TOL)
    assert M.silhouette_cosine(X, list(y)) == pytest.approx(_sk(X, y), abs=TOL)


def test_silhouette_float32_input():
    rng = np.random.default_rng(4)
    X = (rng.normal(size=(1000, 512)) + 0.2).astype(np.float32)
    y = rng.integers(0, 3, size=1000)
    ours = M.silhouette_cosine(X, y)
    assert ours == pytest.approx(_sk(X, y), abs=TOL)  # sklearn in float32
    assert ours == pytest.approx(_sk(X.astype(np.float64), y), abs=1e-9)  # sklearn in float64


def test_silhouette_torch_input():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    X = rng.normal(size=(100, 8))
    y = rng.integers(0, 2, size=100)
    t = torch.tensor(X, dtype=torch.float32, requires_grad=True)
    assert M.silhouette_cosine(t, torch.tensor(y)) == pytest.approx(
        _sk(X.astype(np.float32), y), abs=TOL
    )


def _clouds(n_img, n_txt, d, seed):
    """Image-like and text-like embeddings: two shifted gaussian clouds, L2-normalised."""
    rng = np.random.default_rng(seed)
    shift = rng.normal(size=d)
    img = rng.normal(size=(n_img, d)) + 0.6 * shift
    txt = rng.normal(size=(n_txt, d)) - 0.6 * shift
    return M.l2_normalize(img).astype(np.float32), M.l2_normalize(txt).astype(np.float32)


def test_modality_silhouette_realistic():
    img, txt = _clouds(2000, 100, 512, seed=6)
    X = np.concatenate([img, txt])
    y = np.array(["image"] * len(img) + ["text"] * len(txt))
    ss = M.modality_silhouette(img, txt)
    assert ss > 0.1  # clouds are separated
    assert ss == pytest.approx(_sk(X, y), abs=TOL)
    assert ss == pytest.approx(M.silhouette_cosine(X, y), abs=1e-12)


@pytest.mark.parametrize("k_equals", ["one", "n"])
def test_silhouette_invalid_number_of_labels(k_equals):
    X = np.random.default_rng(0).normal(size=(10, 4))
    y = np.zeros(10) if k_equals == "one" else np.arange(10)
    with pytest.raises(ValueError, match="Number of labels"):
        M.silhouette_cosine(X, y)
    with pytest.raises(ValueError):  # same rule as sklearn
        _sk(X, y)


def test_class_silhouette():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(90, 6)) + 0.5
    y = rng.integers(0, 3, size=90)
    assert M.class_silhouette(X, y) == pytest.approx(_sk(X, y), abs=TOL)
    assert math.isnan(M.class_silhouette(X, np.zeros(90, int)))


# ----------------------------------------------------------------------------- alignment
def test_l2_normalize():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]])
    np.testing.assert_allclose(M.l2_normalize(x), [[0.6, 0.8], [0.0, 0.0], [0.0, -1.0]])
    assert M.l2_normalize(x.astype(np.float32)).dtype == np.float32


def test_average_cosine_similarity_hand():
    img = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [-3.0, 0.0]])
    txt = np.array([[5.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 1, 0, 1])
    # cosines: 1, 1, 1/sqrt(2), 0  -> mean (2 + 0.7071067811865476) / 4
    assert M.average_cosine_similarity(img, txt, labels) == pytest.approx(
        0.6767766952966369, abs=1e-12
    )


def test_modality_gap_hand():
    img = np.array([[1.0, 0.0], [0.0, 3.0]])  # normalised centroid (0.5, 0.5)
    txt = np.array([[-2.0, 0.0]])  # normalised centroid (-1, 0)
    # |(1.5, 0.5)| = sqrt(2.5)
    assert M.modality_gap(img, txt) == pytest.approx(1.5811388300841898, abs=1e-12)
    assert M.modality_gap(img, img) == pytest.approx(0.0, abs=1e-15)


def test_zero_shot_accuracy_hand():
    txt = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    img = np.array([[2.0, 0.1], [0.1, 5.0], [-1.0, 0.5], [0.3, 0.2]])
    # predictions: 0, 1, 2, 0
    assert M.zero_shot_accuracy(img, txt, [0, 1, 2, 1]) == pytest.approx(0.75)


# ----------------------------------------------------------------------------- statistics
def test_mean_ci_hand():
    m, lo, hi = M.mean_ci([1, 2, 3, 4])
    # s = sqrt(5/3) = 1.2909944487358056; t_{0.975,3} = 3.1824463052837078
    # half width = 3.1824463052837078 * 1.2909944487358056 / 2 = 2.0542602567605206
    assert m == pytest.approx(2.5)
    assert lo == pytest.approx(2.5 - 2.0542602567605206, abs=1e-10)
    assert hi == pytest.approx(2.5 + 2.0542602567605206, abs=1e-10)
    m2, lo2, hi2 = M.mean_ci([1, 2, float("nan"), 3, 4])  # NaN ignored
    assert (m2, lo2, hi2) == pytest.approx((m, lo, hi))


def test_mean_ci_single_and_empty():
    m, lo, hi = M.mean_ci([7.0])
    assert m == 7.0 and math.isnan(lo) and math.isnan(hi)
    assert all(math.isnan(v) for v in M.mean_ci([float("nan")]))


def test_spearman_perfect_monotone():
    x = np.arange(1.0, 9.0)
    r = M.spearman_bootstrap(x, x**3, n_boot=500)
    assert r["rho"] == pytest.approx(1.0)
    assert r["lo"] == pytest.approx(1.0) and r["hi"] == pytest.approx(1.0)
    assert r["n"] == 8
    assert M.spearman_bootstrap(x, -x, n_boot=200)["rho"] == pytest.approx(-1.0)


def test_spearman_hand_example():
    # ranks differ by d = (-1, 1, -1, 1, 0): rho = 1 - 6*4 / (5*(25-1)) = 0.8
    # t = 0.8*sqrt(3/0.36) = 2.3094, two-sided p with 3 df = 0.10409
    r = M.spearman_bootstrap([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], n_boot=1000, seed=1)
    assert r["rho"] == pytest.approx(0.8)
    assert r["p"] == pytest.approx(0.1040880, abs=1e-6)
    assert -1.0 <= r["lo"] <= r["rho"] <= r["hi"] <= 1.0
    r2 = M.spearman_bootstrap([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], n_boot=1000, seed=1)
    assert r2 == r  # deterministic given the seed


def test_spearman_bootstrap_matches_scipy_per_resample():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    x = rng.normal(size=12)
    y = x + rng.normal(size=12)
    y[3] = y[4]  # a tie
    r = M.spearman_bootstrap(x, y, n_boot=300, seed=3)
    # recompute the bootstrap with scipy, same resamples
    idx = np.random.default_rng(3).integers(0, 12, size=(300, 12))
    boots = [spearmanr(x[i], y[i])[0] for i in idx]
    boots = np.array([b for b in boots if np.isfinite(b)])
    lo, hi = np.quantile(boots, [0.025, 0.975])
    assert (r["lo"], r["hi"]) == pytest.approx((lo, hi), abs=1e-12)
    assert r["rho"] == pytest.approx(spearmanr(x, y)[0])


def test_forgetting():
    assert M.forgetting(0.6, 0.45) == pytest.approx(0.15)
    assert M.forgetting(0.5, 0.7) == pytest.approx(-0.2)  # negative = improved
    np.testing.assert_allclose(M.forgetting([0.5, 0.8], np.array([0.4, 0.9])), [0.1, -0.1])
    assert isinstance(M.forgetting(1, 0), float)
