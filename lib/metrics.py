"""Alignment and accuracy metrics (pure numpy, float64 accumulation; statistics live in ``lib.stats``).

Every function accepts numpy arrays, array-likes or (CPU or GPU) torch tensors.

Silhouette with cosine distance
-------------------------------
``silhouette_cosine`` returns the same number as
``sklearn.metrics.silhouette_score(X, labels, metric='cosine')`` in O(n*d*k) time and
O(n + k*d) extra memory (plus small per-chunk buffers), instead of sklearn's O(n^2 * d).

With x_hat = x / ||x|| (zero rows stay zero, as in ``sklearn.preprocessing.normalize``) the
cosine distance is d(x, y) = 1 - x_hat . y_hat, so for a cluster C with
S_C = sum_{j in C} y_hat_j:

    sum_{j in C} d(x_i, x_j) = |C| - x_hat_i . S_C

sklearn (``pairwise_distances_chunked`` + ``_silhouette_reduce``) sums the distances of
point i to *every* member of its own cluster, the self-distance included, and divides by
|C| - 1. We subtract the self term 1 - ||x_hat_i||^2 (~0 for a nonzero row, exactly 1 for an
all-zero row), i.e. use d(x, x) = 0, which is what sklearn does when the whole distance matrix
fits in one chunk (``cosine_distances(X, X)`` zeroes its diagonal; n <~ 11,500 with the
default working_memory of 1 GiB). Singleton clusters give s(i) = 0 (sklearn: 0/0 -> nan ->
``np.nan_to_num`` -> 0).

Residual differences from sklearn (all at rounding level, or for all-zero rows only):
  * sklearn clips every pairwise distance to [0, 2]. In exact arithmetic cosine distances lie
    in [0, 2] already, so clipping only removes rounding noise (e.g. -1e-16 between duplicate
    points); summing per cluster we cannot clip per pair and keep that noise (~1e-16 per pair
    in float64).
  * sklearn computes in the input dtype (float32 input -> float32 distances, ~1e-7 relative
    error per distance); we always accumulate in float64, so on float32 input our value is the
    more accurate one and the two agree to ~1e-6 or better.
  * All-zero rows: when sklearn needs several chunks (large n) its cosine path does not zero
    the diagonal, so an all-zero row gets self-distance 1 added to its a(i). We always use
    d(x, x) = 0. Nonzero rows are unaffected (their self-distance is ~1e-16 either way).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "l2_normalize",
    "silhouette_cosine",
    "silhouette_samples_cosine",
    "modality_silhouette",
    "average_cosine_similarity",
    "modality_gap",
    "class_silhouette",
    "zero_shot_accuracy",
    "iimm",
    "forgetting",
]

# Rows per chunk: a float64 chunk of ~2 MiB stays in L2 cache; measured on 2 cores, 1M x 512
# float32: 32 MiB chunks 2.4 s, 8 MiB 1.1 s, 2 MiB 0.9 s (the work is memory-bound).
_CHUNK_BYTES = 2 * 1024 * 1024


# ----------------------------------------------------------------------------- helpers
def _np(x) -> np.ndarray:
    """np.asarray that also accepts torch tensors (with grad, on any device)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu()
        if str(getattr(x, "dtype", "")) == "torch.bfloat16":
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def _as_2d(x, name: str) -> np.ndarray:
    a = _np(x)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_samples, dim); got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real-valued; got dtype {a.dtype}")
    return a


def _chunk_rows(d: int, k: int = 1) -> int:
    return max(256, _CHUNK_BYTES // (8 * max(d, k, 1)))


def _inv_norms(c64: np.ndarray) -> np.ndarray:
    """1 / row L2 norms of a float64 2-D array (0 for all-zero rows)."""
    norms = np.sqrt(np.einsum("ij,ij->i", c64, c64))
    with np.errstate(divide="ignore"):
        return np.where(norms > 0, 1.0 / norms, 0.0)


def _normalize64(chunk: np.ndarray) -> np.ndarray:
    """float64 copy of ``chunk`` with rows scaled to unit L2 norm (zero rows stay zero)."""
    c = np.array(chunk, dtype=np.float64, copy=True)
    c *= _inv_norms(c)[:, None]
    return c


def _iter_raw_chunks(blocks, rows: int):
    """Yield (global_start, float64 copy of chunk) over a list of 2-D blocks (same dim)."""
    offset = 0
    for b in blocks:
        for s in range(0, b.shape[0], rows):
            yield offset + s, np.asarray(b[s : s + rows], dtype=np.float64)
        offset += b.shape[0]


def _iter_chunks(blocks, rows: int):
    """Yield (global_start, float64 normalised chunk) over a list of 2-D blocks (same dim)."""
    offset = 0
    for b in blocks:
        for s in range(0, b.shape[0], rows):
            yield offset + s, _normalize64(b[s : s + rows])
        offset += b.shape[0]


def _encode_labels(labels, n: int):
    lab = _np(labels)
    if lab.ndim != 1:
        lab = lab.reshape(-1)
    if lab.shape[0] != n:
        raise ValueError(f"labels has {lab.shape[0]} entries but X has {n} rows")
    classes, codes = np.unique(lab, return_inverse=True)
    return classes, codes.reshape(-1).astype(np.intp)


def _check_number_of_labels(k: int, n: int) -> None:
    # Same rule and wording as sklearn.metrics.cluster._unsupervised.check_number_of_labels.
    if not 1 < k < n:
        raise ValueError(
            f"Number of labels is {k}. Valid values are 2 to n_samples - 1 (inclusive) "
            f"(n_samples = {n}); the silhouette is undefined otherwise."
        )


def _silhouette_samples_blocks(blocks, labels) -> np.ndarray:
    """Core: exact cosine silhouette per sample for the row-stack of ``blocks``."""
    d = blocks[0].shape[1]
    for b in blocks:
        if b.shape[1] != d:
            raise ValueError(f"embedding dims differ: {d} vs {b.shape[1]}")
    n = sum(b.shape[0] for b in blocks)
    classes, codes = _encode_labels(labels, n)
    k = len(classes)
    _check_number_of_labels(k, n)
    freqs = np.bincount(codes, minlength=k).astype(np.float64)
    rows = _chunk_rows(d, k)

    # Pass 1: inverse norms (O(n)) and S[c] = sum of normalised rows of cluster c (float64).
    inv = np.empty(n, dtype=np.float64)
    S = np.zeros((k, d), dtype=np.float64)
    for start, c in _iter_raw_chunks(blocks, rows):
        m = c.shape[0]
        cc = codes[start : start + m]
        w = _inv_norms(c)
        if not np.all(np.isfinite(w)) or not np.all(np.isfinite(c[w == 0])):
            raise ValueError("X contains NaN or infinity")  # sklearn's check_X_y rejects these
        inv[start : start + m] = w
        if k <= 32:
            onehot = np.zeros((k, m), dtype=np.float64)
            onehot[cc, np.arange(m)] = w
            S += onehot @ c
        else:
            order = np.argsort(cc, kind="stable")
            sc = cc[order]
            bounds = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]])
            S[sc[bounds]] += np.add.reduceat(c[order] * w[order, None], bounds, axis=0)

    # Pass 2: per-sample a(i), b(i).
    out = np.empty(n, dtype=np.float64)
    for start, c in _iter_raw_chunks(blocks, rows):
        m = c.shape[0]
        cc = codes[start : start + m]
        w = inv[start : start + m]
        # dist_sum[i, c] = sum_{j in c} (1 - x_i . x_j) = |c| - x_i . S_c   (self term included)
        dist_sum = freqs[None, :] - (c @ S.T) * w[:, None]
        idx = np.arange(m)
        # remove the self term 1 - x_i . x_i (~0, or 1 for an all-zero row): d(x, x) = 0
        self_sim = np.einsum("ij,ij->i", c, c) * (w * w)
        intra = dist_sum[idx, cc] - (1.0 - self_sim)
        dist_sum[idx, cc] = np.inf
        dist_sum /= freqs[None, :]
        # true distances are >= 0; clamp rounding noise (sklearn clips each distance to [0, 2])
        inter = np.maximum(dist_sum.min(axis=1), 0.0)
        own = freqs[cc]
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.maximum(intra, 0.0) / (own - 1.0)
            s = (inter - a) / np.maximum(a, inter)
        s[own <= 1] = 0.0  # singleton cluster -> 0, as sklearn
        out[start : start + m] = np.nan_to_num(s)
    return out


# ----------------------------------------------------------------------------- public API
def l2_normalize(x) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (float64 computation; zero rows stay zero).

    1-D input is treated as a single vector. Float inputs keep their dtype; others -> float64.
    """
    a = _np(x)
    one_d = a.ndim == 1
    a2 = a.reshape(1, -1) if one_d else a
    out = _normalize64(a2)
    if np.issubdtype(a.dtype, np.floating):
        out = out.astype(a.dtype, copy=False)
    return out.reshape(-1) if one_d else out


def silhouette_samples_cosine(X, labels) -> np.ndarray:
    """Per-sample silhouette with cosine distance; equals
    ``sklearn.metrics.silhouette_samples(X, labels, metric='cosine')`` up to rounding."""
    return _silhouette_samples_blocks([_as_2d(X, "X")], labels)


def silhouette_cosine(X, labels) -> float:
    """Mean silhouette with cosine distance; equals
    ``sklearn.metrics.silhouette_score(X, labels, metric='cosine')`` up to rounding,
    in O(n*d*k) time. Raises ValueError unless 2 <= n_labels <= n_samples - 1."""
    return float(np.mean(silhouette_samples_cosine(X, labels)))


def modality_silhouette(image_emb, text_emb) -> float:
    """The paper's ss: cosine silhouette of [image_emb; text_emb] labelled by modality.

    Does not materialise the stacked array."""
    im = _as_2d(image_emb, "image_emb")
    tx = _as_2d(text_emb, "text_emb")
    labels = np.concatenate([np.zeros(im.shape[0], np.int8), np.ones(tx.shape[0], np.int8)])
    return float(np.mean(_silhouette_samples_blocks([im, tx], labels)))


def average_cosine_similarity(image_emb, text_emb, labels) -> float:
    """ACS: mean over images i of cos(image_emb[i], text_emb[labels[i]]).

    ``text_emb`` holds one (class-prompt) embedding per class; ``labels`` are integer class
    indices into its rows."""
    im = _as_2d(image_emb, "image_emb")
    tn = _normalize64(_as_2d(text_emb, "text_emb"))
    lab = _np(labels).reshape(-1).astype(np.intp)
    if lab.shape[0] != im.shape[0]:
        raise ValueError(f"labels has {lab.shape[0]} entries but image_emb has {im.shape[0]} rows")
    if im.shape[1] != tn.shape[1]:
        raise ValueError(f"embedding dims differ: {im.shape[1]} vs {tn.shape[1]}")
    if lab.size and (lab.min() < 0 or lab.max() >= tn.shape[0]):
        raise ValueError(f"labels must be in [0, {tn.shape[0]}) to index text_emb rows")
    if im.shape[0] == 0:
        return float("nan")
    total = 0.0
    for start, c in _iter_chunks([im], _chunk_rows(im.shape[1])):
        ll = lab[start : start + c.shape[0]]
        total += float(np.einsum("ij,ij->", c, tn[ll]))
    return total / im.shape[0]


def modality_gap(image_emb, text_emb) -> float:
    """Euclidean distance between the centroids of the L2-normalised image embeddings and the
    L2-normalised text embeddings."""
    centroids = []
    for x, name in ((image_emb, "image_emb"), (text_emb, "text_emb")):
        a = _as_2d(x, name)
        if a.shape[0] == 0:
            return float("nan")
        s = np.zeros(a.shape[1], dtype=np.float64)
        for _, c in _iter_chunks([a], _chunk_rows(a.shape[1])):
            s += c.sum(axis=0)
        centroids.append(s / a.shape[0])
    if centroids[0].shape != centroids[1].shape:
        raise ValueError("embedding dims differ")
    return float(np.linalg.norm(centroids[0] - centroids[1]))


def class_silhouette(image_emb, labels) -> float:
    """Cosine silhouette of the image embeddings labelled by class.

    Returns nan when the silhouette is undefined: fewer than 2 classes present, or as many
    classes as samples (sklearn would raise in the latter case)."""
    im = _as_2d(image_emb, "image_emb")
    lab = _np(labels).reshape(-1)
    k = len(np.unique(lab))
    if k < 2 or k > im.shape[0] - 1:
        return float("nan")
    return silhouette_cosine(im, lab)


def zero_shot_accuracy(image_emb, text_emb, labels) -> float:
    """Top-1 accuracy of argmax_c cos(image_emb[i], text_emb[c]) against integer ``labels``."""
    im = _as_2d(image_emb, "image_emb")
    tn = _normalize64(_as_2d(text_emb, "text_emb"))
    lab = _np(labels).reshape(-1).astype(np.intp)
    if lab.shape[0] != im.shape[0]:
        raise ValueError(f"labels has {lab.shape[0]} entries but image_emb has {im.shape[0]} rows")
    if im.shape[0] == 0:
        return float("nan")
    correct = 0
    for start, c in _iter_chunks([im], _chunk_rows(im.shape[1], tn.shape[0])):
        pred = np.argmax(c @ tn.T, axis=1)
        correct += int(np.sum(pred == lab[start : start + c.shape[0]]))
    return correct / im.shape[0]


def iimm(image_emb, text_emb, labels) -> float:
    """IIMM, the Inter-Intra Modal Measure (the authors' follow-up measure): the mean of

    * the intra-modal term: the mean cosine similarity of the images to each other, over all
      pairs i < j, and
    * the inter-modal term: for each image, the mean cosine similarity to the class prompts of the
      *other* classes (c != y_i), averaged over the images.

    Exact in O(n*d + k*d): with unit rows x_i, S = sum_i x_i and T = sum_c t_c,
    sum_{i<j} x_i.x_j = (||S||^2 - sum_i ||x_i||^2) / 2 and sum_{c != y_i} x_i.t_c =
    x_i.T - x_i.t_{y_i}. Needs at least 2 images and 2 classes (nan otherwise)."""
    im = _as_2d(image_emb, "image_emb")
    tn = _normalize64(_as_2d(text_emb, "text_emb"))
    lab = _np(labels).reshape(-1).astype(np.intp)
    n, k = im.shape[0], tn.shape[0]
    if lab.shape[0] != n:
        raise ValueError(f"labels has {lab.shape[0]} entries but image_emb has {n} rows")
    if im.shape[1] != tn.shape[1]:
        raise ValueError(f"embedding dims differ: {im.shape[1]} vs {tn.shape[1]}")
    if lab.size and (lab.min() < 0 or lab.max() >= k):
        raise ValueError(f"labels must be in [0, {k}) to index text_emb rows")
    if n < 2 or k < 2:
        return float("nan")
    T = tn.sum(axis=0)
    S = np.zeros(im.shape[1], dtype=np.float64)
    sq = 0.0
    other = 0.0
    for start, c in _iter_chunks([im], _chunk_rows(im.shape[1])):
        if not np.all(np.isfinite(c)):
            raise ValueError("image_emb contains NaN or infinity")
        ll = lab[start : start + c.shape[0]]
        S += c.sum(axis=0)
        sq += float(np.einsum("ij,ij->", c, c))
        other += float((c @ T).sum() - np.einsum("ij,ij->", c, tn[ll]))
    image_pairs = (float(S @ S) - sq) / (n * (n - 1))   # mean x_i.x_j over i != j (= over i < j)
    other_prompts = other / (n * (k - 1))
    return 0.5 * (image_pairs + other_prompts)


def forgetting(acc_zero_shot, acc_finetuned):
    """acc_zero_shot - acc_finetuned (positive = the fine-tuned model forgot).

    Scalars -> float; arrays (or lists, tensors) -> float64 ndarray (broadcasting)."""
    a = _np(acc_zero_shot).astype(np.float64)
    b = _np(acc_finetuned).astype(np.float64)
    out = a - b
    return float(out) if out.ndim == 0 else out
