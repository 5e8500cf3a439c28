"""The embedded world: deterministic, balanced, disjoint test pools, corpus coverage honoured."""
import numpy as np
import pytest

from lib import config, world
from lib.data import source_for


def tiny_cfg(tmp_path, monkeypatch, **cov):
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path))
    cfg = config.load_profile("smoke")
    cfg["world"]["sizes"] = {"train": 20, "val": 10, "test": 18}
    cfg["world"]["corpus"]["n_pairs"] = 300
    if cov:
        cfg["world"]["corpus"]["coverage"] = cov
    return cfg


@pytest.mark.parametrize("task", list(world.RENDERERS))
def test_render_split_is_deterministic_and_balanced(task):
    a, la = world.render_split(task, world.RENDERERS[task].id_domain, "test", 40, seed=3)
    b, lb = world.render_split(task, world.RENDERERS[task].id_domain, "test", 40, seed=3)
    c, _ = world.render_split(task, world.RENDERERS[task].id_domain, "test", 40, seed=4)
    assert a.dtype == np.uint8 and a.shape == (40, 32, 32, 3)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(a, c)
    counts = np.bincount(la, minlength=len(world.RENDERERS[task].classnames))
    assert counts.max() - counts.min() <= 1


def test_real_image_test_pools_are_disjoint():
    for n in (100, 1797):
        tr, te = set(world._pool(n, "train")), set(world._pool(n, "test"))
        assert not tr & te and len(tr | te) == n


def test_generate_and_load(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path, monkeypatch)
    out = world.generate(cfg, progress=False, workers=1)
    mtime = (out / "manifest.json").stat().st_mtime_ns
    world.generate(cfg, progress=False, workers=1)  # cached: nothing rewritten
    assert (out / "manifest.json").stat().st_mtime_ns == mtime
    src = source_for(cfg)
    src.check()
    for name, spec in src.tasks().items():
        tr, va = src.load(name, spec.id_domain, "train"), src.load(name, spec.id_domain, "val")
        assert len(tr) == 20 and len(va) == 10
        for d in spec.domains:
            assert len(src.load(name, d, "test")) == 18
    with pytest.raises(config.ConfigError, match="valid: "):
        src.load("objects", "nope", "test")
    with pytest.raises(config.ConfigError, match="valid tasks"):
        src.task("nope")


def test_corpus_respects_coverage(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path, monkeypatch, digits={"ink": 1.0}, objects={"photo": 0.0})
    world.generate(cfg, progress=False, workers=1)
    c = world.load_corpus(cfg)
    assert len(c["captions"]) == 300
    assert all(s.startswith("digits/ink/") for s in c["sources"])
    assert all(isinstance(t, str) and t for t in c["captions"])


def test_bad_coverage_is_a_clear_error():
    with pytest.raises(config.ConfigError, match="unknown task 'nope'"):
        world.corpus_entries({"nope": {"x": 1}})
    with pytest.raises(config.ConfigError, match="has no domain 'x'"):
        world.corpus_entries({"digits": {"x": 1}})
    with pytest.raises(config.ConfigError, match="empty"):
        world.corpus_entries({"digits": {"ink": 0}})


def test_missing_world_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="make world PROFILE=smoke"):
        source_for(config.load_profile("smoke")).check()
