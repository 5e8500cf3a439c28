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


# ----------------------------------------------------------------------------- IIMM
def _iimm_direct(img, txt, labels):
    """IIMM by its definition, O(n^2): every pair of images and every (image, other class) pair."""
    x = img / np.linalg.norm(img, axis=1, keepdims=True)
    t = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    n, k = len(x), len(t)
    pairs = [float(x[i] @ x[j]) for i in range(n) for j in range(i + 1, n)]
    per_image = [np.mean([float(x[i] @ t[c]) for c in range(k) if c != labels[i]]) for i in range(n)]
    return 0.5 * (np.mean(pairs) + np.mean(per_image))


@pytest.mark.parametrize("n,d,k,seed", [(2, 3, 2, 0), (7, 5, 3, 1), (60, 16, 6, 2), (301, 32, 10, 3)])
def test_iimm_equals_direct_quadratic_computation(n, d, k, seed):
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(n, d)) * rng.uniform(0.1, 5.0, size=(n, 1))   # unnormalised rows
    txt = rng.normal(size=(k, d)) + 0.5
    labels = rng.integers(0, k, size=n)
    assert M.iimm(img, txt, labels) == pytest.approx(_iimm_direct(img, txt, labels), abs=1e-12)


def test_iimm_chunked_float32_and_torch():
    import torch

    rng = np.random.default_rng(4)
    img = rng.normal(size=(3000, 8)).astype(np.float32)   # several chunks
    txt = rng.normal(size=(5, 8)).astype(np.float32)
    labels = rng.integers(0, 5, size=3000)
    direct = _iimm_direct(img[:400].astype(np.float64), txt.astype(np.float64), labels[:400])
    assert M.iimm(img[:400], txt, labels[:400]) == pytest.approx(direct, abs=1e-9)
    full = M.iimm(img, txt, labels)
    assert M.iimm(torch.from_numpy(img), torch.from_numpy(txt), torch.from_numpy(labels)) == pytest.approx(full)


def test_iimm_hand_and_edges():
    # two identical images of class 0, texts e1 (class 0) and e2 (class 1):
    # image pairs: cos = 1; other-class prompt: x . e2 = 0 -> IIMM = 0.5
    img = np.array([[1.0, 0.0], [2.0, 0.0]])
    txt = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert M.iimm(img, txt, [0, 0]) == pytest.approx(0.5)
    assert math.isnan(M.iimm(img[:1], txt, [0]))          # one image: no pairs
    assert math.isnan(M.iimm(img, txt[:1], [0, 0]))       # one class: no other prompts
    with pytest.raises(ValueError, match="labels must be in"):
        M.iimm(img, txt, [0, 2])
    with pytest.raises(ValueError, match="dims differ"):
        M.iimm(img, np.ones((2, 3)), [0, 1])


def test_forgetting():
    assert M.forgetting(0.6, 0.45) == pytest.approx(0.15)
    assert M.forgetting(0.5, 0.7) == pytest.approx(-0.2)  # negative = improved
    np.testing.assert_allclose(M.forgetting([0.5, 0.8], np.array([0.4, 0.9])), [0.1, -0.1])
    assert isinstance(M.forgetting(1, 0), float)
