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


# ----------------------------------------------------------------------------- verified when read
@pytest.fixture
def made_world(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path, monkeypatch)
    out = world.generate(cfg, progress=False, workers=1)
    ref = {f.name: np.load(f)["images"].copy() for f in sorted(out.glob("*.npz"))}
    return cfg, out, ref


def _same_as_before(out, ref):
    for name, imgs in ref.items():
        assert np.array_equal(np.load(out / name)["images"], imgs), name


@pytest.mark.parametrize("damage", ["zero_bytes", "truncated", "wrong_shape", "missing", "flipped_byte"])
def test_damaged_world_file_is_refused_and_regenerated(made_world, damage):
    cfg, out, ref = made_world
    f = out / "digits__ink__test.npz"
    data = f.read_bytes()
    if damage == "zero_bytes":
        f.write_bytes(b"")
    elif damage == "truncated":
        f.write_bytes(data[: len(data) // 2])
    elif damage == "wrong_shape":
        z = np.load(f)
        np.savez(f, images=z["images"][:-1], labels=z["labels"][:-1])
    elif damage == "missing":
        f.unlink()
    else:
        f.write_bytes(data[:-200] + bytes([data[-200] ^ 1]) + data[-199:])
    src = source_for(cfg)
    with pytest.raises(world.WorldNotReady, match=rf"{f}.*python -m lib.world smoke"):
        src.check() if damage != "flipped_byte" else src.load("digits", "ink", "test")
    with pytest.raises(FileNotFoundError):            # a WorldNotReady is "not generated"
        world.verify_world(cfg)
    world.generate(cfg, progress=False, workers=1)    # counts as not generated: regenerated
    world.verify_world(cfg)
    _same_as_before(out, ref)
    assert len(source_for(cfg).load("digits", "ink", "test")) == 18


def test_damaged_corpus_is_refused(made_world):
    cfg, out, _ = made_world
    f = out / "corpus.npz"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(world.WorldNotReady, match=rf"{f} is damaged: 1000 bytes"):
        world.load_corpus(cfg)


@pytest.mark.parametrize("manifest", ["not json {", "[1, 2]", "old_format", "other_fingerprint"])
def test_manifest_that_does_not_match_counts_as_not_generated(made_world, manifest):
    import json
    cfg, out, ref = made_world
    m = out / "manifest.json"
    doc = json.loads(m.read_text())
    if manifest == "old_format":
        m.write_text(json.dumps({"fingerprint": doc["fingerprint"], "world": doc["world"]}))
    elif manifest == "other_fingerprint":
        m.write_text(json.dumps({**doc, "fingerprint": "0" * 16}))
    else:
        m.write_text(manifest)
    with pytest.raises(world.WorldNotReady, match=r"manifest|fingerprint"):
        source_for(cfg).check()
    before = (out / "objects__photo__test.npz").stat().st_mtime_ns
    world.generate(cfg, progress=False, workers=1)
    assert (out / "objects__photo__test.npz").stat().st_mtime_ns != before, "regenerated"
    world.verify_world(cfg)
    _same_as_before(out, ref)


def test_interrupted_regeneration_is_never_accepted(made_world, monkeypatch):
    """The manifest goes first: a regeneration that dies half-way leaves a world nobody accepts."""
    cfg, out, ref = made_world
    (out / "landcover__summer__test.npz").write_bytes(b"")     # forces a regeneration
    real, calls = world.render_split, []

    def dying(*a, **k):
        calls.append(a)
        if len(calls) == 3:
            assert not (out / "manifest.json").exists(), "manifest must be removed before any file is rewritten"
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(world, "render_split", dying)
    with pytest.raises(KeyboardInterrupt):
        world.generate(cfg, progress=False, workers=1)
    assert not (out / "manifest.json").exists()
    assert not list(out.glob("*.tmp")), "no temporary file left behind"
    with pytest.raises(world.WorldNotReady, match="not generated"):
        source_for(cfg).check()
    monkeypatch.setattr(world, "render_split", real)
    world.generate(cfg, progress=False, workers=1)
    world.verify_world(cfg)
    _same_as_before(out, ref)


def test_manifest_records_every_file(made_world):
    import json
    cfg, out, _ = made_world
    doc = json.loads((out / "manifest.json").read_text())
    assert sorted(doc["files"]) == sorted(world.expected_files(cfg["world"])) == sorted(p.name for p in out.glob("*.npz"))
    for name, rec in doc["files"].items():
        assert rec["bytes"] == (out / name).stat().st_size and len(rec["sha256"]) == 64
        assert rec["arrays"]["images"]["shape"][1:] == [32, 32, 3]


@pytest.mark.slow
def test_cli_regenerates_a_damaged_world(tmp_path):
    """`python -m lib.world <profile>` (the fix the messages name) repairs a damaged world."""
    import os
    import subprocess
    import sys
    env = {**os.environ, "CLIPMIS_BUILD": str(tmp_path), "OMP_NUM_THREADS": "1"}

    def cli():
        return subprocess.run([sys.executable, "-m", "lib.world", "smoke"], cwd=str(world.paths.ROOT), env=env,
                              capture_output=True, text=True, timeout=300)
    r = cli()
    assert r.returncode == 0 and "not generated" in r.stderr and "regenerated" in r.stdout, r.stderr
    f = tmp_path / "smoke" / "world" / "objects__sketch__test.npz"
    ref = np.load(f)["images"].copy()
    f.write_bytes(b"")
    r = cli()
    assert r.returncode == 0 and f"{f} is damaged: 0 bytes" in r.stderr and "regenerated" in r.stdout, r.stderr
    assert np.array_equal(np.load(f)["images"], ref)
    r = cli()
    assert r.returncode == 0 and "ok" in r.stdout and not r.stderr
