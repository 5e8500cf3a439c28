"""The embedded world (v2): eight tasks in a 2x2x2 design, three domains each (ID, mild, strong);
deterministic, balanced, disjoint test pools, the design validated, caption noise honoured and
every class named in pretraining."""
import copy

import numpy as np
import pytest

from lib import config, world
from lib.data import source_for

TINY_TASKS = ["objects", "digits", "landcover", "pathology"]   # 2 high, 2 low coverage: every class named
ALL_DOMAINS = [(t, d) for t, r in world.RENDERERS.items() for d in r.domains]


def tiny_cfg(tmp_path, monkeypatch, tasks=TINY_TASKS, n_pairs=600):
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path))
    cfg = config.load_profile("smoke")
    cfg["world"]["tasks"] = list(tasks)
    cfg["world"]["sizes"] = {"train": 20, "val": 10, "test": 18}
    cfg["world"]["corpus"]["n_pairs"] = n_pairs
    # not the calibrated levels: a tiny corpus needs enough pairs of the low-coverage tasks
    cfg["world"]["levels"]["coverage"] = {"low": 0.5, "high": 1.0}
    return cfg


def test_eight_tasks_three_domains_each():
    assert len(world.RENDERERS) == 8
    for name, r in world.RENDERERS.items():
        spec = r.spec()
        assert spec.domains == [r.id_domain, f"{r.shift}_mild", f"{r.shift}_strong"]
        assert spec.ood_domains == [f"{r.shift}_mild", f"{r.shift}_strong"], "mild first, then strong"
        assert [r.domain_kind(d) for d in spec.domains] == ["id", "mild", "strong"]
        assert 4 <= len(r.classnames) <= 10 and len(set(r.classnames)) == len(r.classnames)
        assert r.captions["id"] and r.captions["shift"] and all("{c}" in t for v in r.captions.values() for t in v)
    with pytest.raises(config.ConfigError, match="valid: photo, sketch_mild, sketch_strong"):
        world.RENDERERS["objects"].severity("sketch")


def test_new_tasks_share_no_class_word_with_any_other_task():
    words = {t: {w for c in r.classnames for w in c.lower().split()} for t, r in world.RENDERERS.items()}
    for new in ("traffic_signs", "flowers", "textures"):
        others = set().union(*(w for t, w in words.items() if t != new))
        assert not words[new] & others, (new, words[new] & others)


@pytest.mark.parametrize("task,domain", ALL_DOMAINS)
def test_render_split_is_deterministic_and_balanced(task, domain):
    a, la = world.render_split(task, domain, "test", 40, seed=3)
    b, lb = world.render_split(task, domain, "test", 40, seed=3)
    c, _ = world.render_split(task, domain, "test", 40, seed=4)
    assert a.dtype == np.uint8 and a.shape == (40, 32, 32, 3)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(a, c)
    counts = np.bincount(la, minlength=len(world.RENDERERS[task].classnames))
    assert counts.max() - counts.min() <= 1
    t, _ = world.render_split(task, domain, "test", 40, seed=3, diversity=0.3)
    assert not np.array_equal(a, t), "the diversity level changes the images"


@pytest.mark.parametrize("task", list(world.RENDERERS))
def test_mild_lies_between_id_and_strong(task):
    """One sample in three domains: mild is the halfway blend, nearer to both ends than they are to each other."""
    r = world.RENDERERS[task]
    ims = {d: [] for d in r.domains}
    for i in range(24):
        for d in r.domains:
            ims[d].append(r.render(i % len(r.classnames), d, world._stream(0, "pair", i), "train", 1.0)[0])
    x = {d: np.stack(v).astype(np.float32) for d, v in ims.items()}
    idd, mild, strong = (x[d] for d in r.domains)
    dist = lambda a, b: np.abs(a - b).mean()  # noqa: E731
    assert dist(idd, mild) < dist(idd, strong) and dist(mild, strong) < dist(idd, strong)
    assert dist(mild, (idd + strong) / 2) < 0.25 * dist(idd, strong), "the same sample in both looks"


def test_diversity_narrows_the_nuisance():
    """Tight images of one class vary less than varied ones (pixel spread around the class mean)."""
    for task in ("objects", "flowers", "traffic_signs"):
        spread = {}
        for d in (0.3, 1.0):
            imgs = np.stack([world.RENDERERS[task].render(0, world.RENDERERS[task].id_domain,
                                                          world._stream(1, task, i), "train", d)[0]
                             for i in range(40)]).astype(np.float32)
            spread[d] = imgs.std(axis=0).mean()
        assert spread[0.3] < spread[1.0], (task, spread)


def test_real_image_test_pools_are_disjoint():
    for n in (100, 1797):
        tr, te = set(world._pool(n, "train")), set(world._pool(n, "test"))
        assert not tr & te and len(tr | te) == n


def test_two_workers_write_the_same_world_as_one(tmp_path, monkeypatch):
    """Splits and corpus chunks rendered by a pool of two processes: every file, and the manifest,
    byte for byte those of one process (each from its own seeded stream, gathered in order)."""
    one = world.generate(tiny_cfg(tmp_path / "one", monkeypatch, n_pairs=4200), progress=False, workers=1)
    two = world.generate(tiny_cfg(tmp_path / "two", monkeypatch, n_pairs=4200), progress=False, workers=2)
    names = sorted(p.name for p in one.iterdir())
    assert names == sorted(p.name for p in two.iterdir()) and "corpus.npz" in names and len(names) > 10
    assert all((one / n).read_bytes() == (two / n).read_bytes() for n in names)


def test_generate_and_load(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path, monkeypatch)
    out = world.generate(cfg, progress=False, workers=1)
    mtime = (out / "manifest.json").stat().st_mtime_ns
    world.generate(cfg, progress=False, workers=1)  # cached: nothing rewritten
    assert (out / "manifest.json").stat().st_mtime_ns == mtime
    src = source_for(cfg)
    src.check()
    assert list(src.tasks()) == TINY_TASKS
    for name, spec in src.tasks().items():
        tr, va = src.load(name, spec.id_domain, "train"), src.load(name, spec.id_domain, "val")
        assert len(tr) == 20 and len(va) == 10
        assert len(spec.domains) == 3
        for d in spec.domains:
            assert len(src.load(name, d, "test")) == 18
        with pytest.raises(config.ConfigError, match="only the ID domain"):
            src.load(name, spec.ood_domains[0], "train")
    with pytest.raises(config.ConfigError, match="valid: "):
        src.load("objects", "nope", "test")
    with pytest.raises(config.ConfigError, match="valid tasks"):
        src.task("nope")


def test_world_fingerprint_follows_the_design():
    w = config.load_profile("mini")["world"]
    fp = world.world_fingerprint(w)
    for edit in (lambda v: v["levels"]["caption_noise"].update(noisy=0.3),
                 lambda v: v["levels"]["diversity"].update(tight=0.2),
                 lambda v: v["corpus"]["domain_share"].update(strong=0.1),
                 lambda v: v["design"]["objects"].update(diversity="tight")):
        v = copy.deepcopy(w)
        edit(v)
        assert world.world_fingerprint(v) != fp


# ----------------------------------------------------------------------------- the corpus
def test_corpus_weights_follow_coverage_and_domain_share():
    w = config.load_profile("mini")["world"]
    entries, p = world.corpus_entries(w)
    prob = dict(zip(entries, p))
    lv = world.check_design(w)
    share = w["corpus"]["domain_share"]
    assert len(entries) == 24 and abs(p.sum() - 1) < 1e-9
    for (task, dom), q in prob.items():
        r = world.RENDERERS[task]
        task_p = sum(prob[(task, d)] for d in r.domains)
        assert q / task_p == pytest.approx(share[r.domain_kind(dom)] / sum(share.values()))
    hi = sum(q for (t, _), q in prob.items() if lv[t]["coverage"] == w["levels"]["coverage"]["high"])
    lo = sum(q for (t, _), q in prob.items() if lv[t]["coverage"] == w["levels"]["coverage"]["low"])
    assert hi / lo == pytest.approx(w["levels"]["coverage"]["high"] / w["levels"]["coverage"]["low"])


def _chunk(task, noise, n=400, diversity=0.3):
    r = world.RENDERERS[task]
    return world._corpus_chunk((0, 0, n, [(task, r.id_domain)], np.array([1.0]),
                                {task: {"caption_noise": noise, "diversity": diversity, "coverage": 1.0}}))


@pytest.mark.parametrize("task", ["pathology", "textures"])
def test_caption_noise_names_a_wrong_class_at_its_rate(task):
    r = world.RENDERERS[task]
    imgs, caps, srcs, named = _chunk(task, 0.4)
    true = np.array([r.classnames.index(s.split("/")[2]) for s in srcs])
    wrong = named != true
    assert 0.3 < wrong.mean() < 0.5, wrong.mean()                       # 0.4 +- ~4 standard errors
    assert np.bincount(named[wrong], minlength=len(r.classnames)).min() > 0, "wrong names spread over the classes"
    longest_first = sorted(r.classnames, key=len, reverse=True)
    for cap, k in zip(caps, named):
        said = next(c for c in longest_first if c in cap)
        assert said == r.classnames[k], (cap, r.classnames[k])
    clean_imgs, _, clean_srcs, clean_named = _chunk(task, 0.0)
    assert np.array_equal(clean_imgs, imgs) and clean_srcs == srcs, "caption noise leaves the images alone"
    assert np.array_equal(clean_named, true)


def test_every_class_is_named_in_the_corpus(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path, monkeypatch)
    world.generate(cfg, progress=False, workers=1)
    c = world.load_corpus(cfg)
    assert len(c["captions"]) == 600 and len(c["caption_labels"]) == 600
    assert {s.split("/")[0] for s in c["sources"]} == set(TINY_TASKS)
    assert all(s.split("/")[1] in world.RENDERERS[s.split("/")[0]].domains for s in c["sources"])
    world.check_class_words(c["captions"], TINY_TASKS)
    text = " ".join(c["captions"])
    for t in TINY_TASKS:
        for name in world.RENDERERS[t].classnames:
            assert name in text


def test_a_class_never_named_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(world.WorldDesignError, match=r"class 'square' of task 'objects' occurs in no pretraining caption"):
        world.check_class_words(["a photo of a circle", "a red star"], ["objects"])
    cfg = tiny_cfg(tmp_path, monkeypatch)
    monkeypatch.setattr(world.Pathology, "caption_phrase",
                        lambda self, cls, info, rng: "connective fibres" if cls == 3 else self.classnames[cls])
    with pytest.raises(config.ConfigError, match=r"class 'stroma' of task 'pathology'"):
        world.generate(cfg, progress=False, workers=1)
    assert not (tmp_path / "smoke" / "world" / "manifest.json").exists(), "a world that breaks the rule is not accepted"


# ----------------------------------------------------------------------------- the design
def test_mini_design_fills_every_cell_once():
    w = config.load_profile("mini")["world"]
    assert sorted(w["tasks"]) == sorted(world.RENDERERS)
    lv = world.check_design(w)
    cells = {tuple(w["design"][t][f] for f in world.FACTORS) for t in w["tasks"]}
    assert len(cells) == 8 and set(lv) == set(w["tasks"])
    assert world.check_design(config.load_profile("smoke")["world"]) == lv


def _design_case(edit):
    w = copy.deepcopy(config.load_profile("mini")["world"])
    edit(w)
    return w


@pytest.mark.parametrize("edit,match", [
    (lambda w: w["design"].pop("flowers"), r"world.design has no cell for task\(s\) flowers"),
    (lambda w: w["design"]["flowers"].update(coverage="medium"),
     r"world.design.flowers.coverage: 'medium' is not a level of coverage; valid: low, high"),
    (lambda w: w["design"]["flowers"].pop("diversity"), r"world.design.flowers.diversity: None is not a level"),
    (lambda w: w["design"]["flowers"].update(caption_noise="clean"),
     r"cell high/clean/varied holds objects, flowers; cell high/noisy/varied holds no task"),
    (lambda w: w["design"].update(nope=dict(w["design"]["objects"])), r"world.design names unknown task 'nope'"),
    (lambda w: w["levels"]["coverage"].pop("low"), r"world.levels.coverage must give the levels low, high"),
    (lambda w: w["levels"]["coverage"].update(low=0.0), r"coverage values must be > 0"),
    (lambda w: w["corpus"]["domain_share"].pop("mild"), r"domain_share must give id, mild and strong"),
    (lambda w: w.pop("design"), r"needs 'levels' and 'design'"),
])
def test_design_errors_are_clear(edit, match):
    with pytest.raises(world.WorldDesignError, match=match):
        world.corpus_entries(_design_case(edit))


def test_a_subset_of_tasks_needs_only_its_cells():
    w = _design_case(lambda w: w.update(tasks=["objects", "pathology"], design={
        "objects": w["design"]["objects"], "pathology": w["design"]["objects"]}))
    assert set(world.check_design(w)) == {"objects", "pathology"}       # 2 tasks: no all-cells rule


@pytest.mark.parametrize("path,value,match", [
    (("design", "objects", "coverage"), "medium", r"world.design.objects.coverage: 'medium' is not one of low, high"),
    (("levels", "caption_noise", "noisy"), 1.0, r"world.levels.caption_noise.noisy: must be < 1"),
    (("levels", "diversity", "varied"), 1.5, r"world.levels.diversity.varied: must be <= 1"),
    (("levels", "coverage", "huge"), 2.0, r"unknown key 'world.levels.coverage.huge'"),
    (("corpus", "coverage"), {}, r"unknown key 'world.corpus.coverage'"),
])
def test_schema_refuses_bad_world_values(path, value, match):
    cfg = config.load_profile("mini")
    cfg.pop("name")
    node = cfg["world"]
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    with pytest.raises(config.ConfigError, match=match):
        config.validate(cfg, config.PROFILE_SCHEMA, "", "mini.yaml", merged=True)


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
    real, calls = world.generation.render_split, []

    def dying(*a, **k):
        calls.append(a)
        if len(calls) == 3:
            assert not (out / "manifest.json").exists(), "manifest must be removed before any file is rewritten"
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(world.generation, "render_split", dying)   # where generate() looks it up
    with pytest.raises(KeyboardInterrupt):
        world.generate(cfg, progress=False, workers=1)
    assert not (out / "manifest.json").exists()
    assert not list(out.glob("*.tmp")), "no temporary file left behind"
    with pytest.raises(world.WorldNotReady, match="not generated"):
        source_for(cfg).check()
    monkeypatch.setattr(world.generation, "render_split", real)
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
    f = tmp_path / "smoke" / "world" / "objects__sketch_strong__test.npz"
    ref = np.load(f)["images"].copy()
    f.write_bytes(b"")
    r = cli()
    assert r.returncode == 0 and f"{f} is damaged: 0 bytes" in r.stderr and "regenerated" in r.stdout, r.stderr
    assert np.array_equal(np.load(f)["images"], ref)
    r = cli()
    assert r.returncode == 0 and "ok" in r.stdout and not r.stderr
