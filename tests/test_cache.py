"""The encode-once cache of ``lib.evaluate.image_embeddings``.

Keyed by (model state fingerprint, split fingerprint, preprocessing): a second call with the same
key loads from disk without touching the encoder; any change of key encodes again; the cached
array equals a bare ``encode_image(..., normalize=True)`` loop.
"""
import copy
import hashlib

import numpy as np
import pytest
import torch

from lib import evaluate, models, paths
from lib.data import Split, torch_dataset

PROFILE = "cachetest"
N, BATCH = 70, 32  # 3 batches, the last one partial


class Counting(torch.nn.Module):
    """Delegates ``encode_image`` to a CLIP model and counts the calls."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.calls = 0

    def encode_image(self, x, normalize=False):
        self.calls += 1
        return self.model.encode_image(x, normalize=normalize)


class Exploding(torch.nn.Module):
    def encode_image(self, x, normalize=False):
        raise AssertionError("the encoder was called on a cache hit")


def make_split(seed=0, n=N, images=None) -> Split:
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) if images is None else images
    labels = (np.arange(len(imgs)) % 4).astype(np.int64)
    fp = hashlib.sha256(imgs.tobytes() + labels.tobytes()).hexdigest()[:16]  # as lib.world's loader
    return Split("t", "d", "test", labels, list("abcd"), ["{}"], images=imgs, fingerprint=fp)


@pytest.fixture(scope="module")
def bundle():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model gains nothing from threads; restored for other tests
    yield models.create("ClipMis-Tiny", device="cpu", seed=0)
    torch.set_num_threads(threads)


@pytest.fixture
def build(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path))
    return tmp_path


def cache_files():
    return sorted(paths.cache_dir(PROFILE).glob("*.npy"))


def test_second_call_loads_from_disk_without_encoding(bundle, build):
    split = make_split()
    fp = models.state_fingerprint(bundle.model)
    enc = Counting(bundle.model)
    first = evaluate.image_embeddings(enc, bundle, split, fp, PROFILE, BATCH)
    assert enc.calls == 3
    assert first.shape == (N, 128) and first.dtype == np.float32
    files = cache_files()
    assert len(files) == 1 and str(files[0]).startswith(str(build))
    np.testing.assert_array_equal(np.load(files[0]), first)

    again = evaluate.image_embeddings(enc, bundle, split, fp, PROFILE, BATCH)
    assert enc.calls == 3, "the second call encoded again instead of loading the cache"
    np.testing.assert_array_equal(again, first)
    # the same data in a new Split object, and an encoder that must not be called at all
    hit = evaluate.image_embeddings(Exploding(), bundle, make_split(), fp, PROFILE, BATCH)
    np.testing.assert_array_equal(hit, first)
    assert cache_files() == files


def test_other_state_or_data_gives_other_key(bundle, build):
    split = make_split()
    fp = models.state_fingerprint(bundle.model)
    key = evaluate._cache_key(fp, split, bundle, "img")

    # model state: one changed weight changes the fingerprint and the key
    other = copy.deepcopy(bundle.model)
    with torch.no_grad():
        next(other.visual.parameters()).view(-1)[0] += 1e-3
    fp2 = models.state_fingerprint(other)
    assert fp2 != fp
    assert evaluate._cache_key(fp2, split, bundle, "img") != key

    # split data: one changed pixel, a subset, a relabelling
    imgs = split.images.copy()
    imgs[5, 3, 3, 0] ^= 1
    moved = make_split(images=imgs)
    assert moved.fingerprint != split.fingerprint
    assert evaluate._cache_key(fp, moved, bundle, "img") != key
    assert evaluate._cache_key(fp, split.subset(np.arange(N - 1)), bundle, "img") != key
    # preprocessing: another normalisation
    b2 = copy.copy(bundle)
    b2.mean = tuple(m + 0.01 for m in bundle.mean)
    assert evaluate._cache_key(fp, split, b2, "img") != key

    # ... and each new key really encodes again and gets its own file
    enc = Counting(bundle.model)
    a = evaluate.image_embeddings(enc, bundle, split, fp, PROFILE, BATCH)
    assert enc.calls == 3
    b = evaluate.image_embeddings(Counting(other), bundle, split, fp2, PROFILE, BATCH)
    c = evaluate.image_embeddings(enc, bundle, moved, fp, PROFILE, BATCH)
    assert enc.calls == 6
    assert len(cache_files()) == 3
    assert not np.array_equal(a, b) and not np.array_equal(a, c)


def test_cached_equals_bare_encode_loop(bundle, build):
    split = make_split(seed=3)
    fp = models.state_fingerprint(bundle.model)
    evaluate.image_embeddings(bundle.model, bundle, split, fp, PROFILE, BATCH)
    cached = evaluate.image_embeddings(Exploding(), bundle, split, fp, PROFILE, BATCH)  # from disk
    ds = torch_dataset(split, bundle)
    with torch.no_grad():
        bare = torch.cat([bundle.model.encode_image(ds.batch(np.arange(s, min(s + BATCH, N)))[0],
                                                    normalize=True) for s in range(0, N, BATCH)])
    assert np.abs(cached - bare.numpy()).max() <= 1e-6
    # a different batch size does not change the embeddings beyond float noise
    with torch.no_grad():
        one = bundle.model.encode_image(ds.batch(np.arange(N))[0], normalize=True).numpy()
    assert np.abs(cached - one).max() <= 1e-5


def test_file_hash_is_remembered_only_while_the_file_is_unchanged(tmp_path):
    """lib.io.file_sha256 reads a file once per process while it is unchanged; a replaced file
    (atomic write: another inode) is read again."""
    from lib import io
    f = tmp_path / "state.bin"
    io.write_bytes(f, b"a" * 64)
    first = io.file_sha256(f)
    assert first == hashlib.sha256(b"a" * 64).hexdigest() and io.file_sha256(f) == first
    io.write_bytes(f, b"b" * 64)                       # same size, same second
    assert io.file_sha256(f) == hashlib.sha256(b"b" * 64).hexdigest()
