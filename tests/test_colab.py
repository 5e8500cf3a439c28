"""The colab profile, offline (issue #24): every dataset loader on a fixture in the exact layout its
torchvision download produces (read back by torchvision's own dataset classes too, where they can read
it), the split rules, the downloads (a local HTTP server: resume, checksums, mirrors, the manual
fallback, atomic unpacking, one download for two processes), CLIP_benchmark's names and prompts, the
launcher notebook, the time estimate of docs/colab.md, the whole DAG as a dry run (slow) and the
OpenAI model path on a fake hub cache (slow).
"""
from __future__ import annotations

import ast
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fixtures_colab as fx
from test_openai_path import fake_hub  # noqa: F401  (a fixture: the paper profile's fake hub cache)
from lib import config
from lib.data import SOURCES
from lib.real_data import clip_benchmark as cb
from lib.real_data import fetch as F
from lib.real_data.cifar import CIFAR10_CLASSES, STL10_CLASSES
from lib.real_data.dtd import DTD_CLASSES
from lib.real_data.source import TASKS

ROOT = Path(__file__).resolve().parents[1]
COLAB_TASKS = ["mnist", "cifar10", "eurosat_fs", "gtsrb", "dtd", "flowers102", "pets", "rendered_sst2"]
LAUNCHER = ROOT / "notebooks" / "colab" / "run_colab.ipynb"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return fx.make_all(tmp_path_factory.mktemp("colab-data"))


@pytest.fixture(scope="module")
def src(root):
    return SOURCES["real"](fx.profile(root))


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


# ============================================================================= the profile
def test_profile_is_the_issue_s_design():
    cfg = config.load_profile("colab")
    assert cfg["model"] == {"name": "ViT-B-32-quickgelu", "pretrained": "openai"}
    d = cfg["data"]
    assert d["source"] == "real" and d["download"] is True and d["tasks"] == COLAB_TASKS
    assert d["shots"] == 16 and d["max_test_per_domain"] <= 2000 and cfg["grid"]["seeds"] == [0]
    assert cfg["grid"]["methods"] == ["full", "clip_adapter", "lora", "bitfit", "aclip"]
    hp = config.stage_params("02_finetune", "colab")
    assert hp["epochs"] <= 5 and hp["precision"] == "fp16" and hp["lr_extend"] == 0
    from lib.pipeline import finetune
    for m in cfg["grid"]["methods"]:
        assert 2 <= len(finetune.lr_grid("colab", m)) <= 3, m
    shifted = [t for t in COLAB_TASKS if TASKS[t].ood_domains]
    assert {t: TASKS[t].ood_domains for t in shifted} == {"mnist": ("usps", "svhn"),
                                                          "cifar10": ("stl10", "cifar10_1")}


def test_every_colab_task_names_its_sizes_and_resources():
    for name in COLAB_TASKS:
        t = TASKS[name]
        assert t.resources and t.host_note and (t.id_domain, "test") in t.SIZES, name
        for r in t.resources:
            assert r.urls[0].startswith(("https://", "http://")) and r.checksum and r.produces and r.checksum_from


# ============================================================================= CLIP_benchmark
def test_names_and_templates_come_from_clip_benchmark(src):
    tasks = src.tasks()
    expect_keys = {"mnist": "mnist", "cifar10": "cifar10", "eurosat_fs": "eurosat", "gtsrb": "gtsrb", "dtd": "dtd",
                   "flowers102": "flowers", "pets": "pets", "rendered_sst2": "renderedsst2"}
    raw = json.loads((cb.data_dir()[0] / cb.TEMPLATES).read_text())
    names = json.loads((cb.data_dir()[0] / cb.CLASSNAMES).read_text())
    for task, key in expect_keys.items():
        assert tasks[task].templates == [t.replace("{c}", "{}") for t in raw[key]], task
        if key in names:
            assert tasks[task].classnames == names[key], task
    assert tasks["cifar10"].classnames == list(CIFAR10_CLASSES)
    assert tasks["dtd"].classnames == list(DTD_CLASSES) and len(DTD_CLASSES) == 47
    assert tasks["rendered_sst2"].classnames == ["negative", "positive"]
    assert {n: len(tasks[n].classnames) for n in tasks} == {
        "mnist": 10, "cifar10": 10, "eurosat_fs": 10, "gtsrb": 43, "dtd": 47, "flowers102": 102, "pets": 37,
        "rendered_sst2": 2}
    # EuroSAT: CLIP_benchmark's names are the ones the paper profile's eurosat task holds
    assert tasks["eurosat_fs"].classnames == TASKS["eurosat"].classnames()


def test_fixture_copy_equals_the_installed_package():
    """tests/data/clip_benchmark/ holds the installed 1.6.2 files' entries, unchanged."""
    import importlib.util
    if importlib.util.find_spec("clip_benchmark") is None:
        pytest.skip("clip-benchmark is not installed (pip install --no-deps clip-benchmark==1.6.2)")
    folder = Path(importlib.util.find_spec("clip_benchmark").submodule_search_locations[0]) / "datasets"
    for name in (cb.CLASSNAMES, cb.TEMPLATES):
        raw = (folder / name).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == cb.SHA256[name]
        full = json.loads(raw)
        copy = json.loads((ROOT / "tests" / "data" / "clip_benchmark" / name).read_text())
        assert copy == {k: full[k] for k in copy}


def test_another_clip_benchmark_version_is_refused(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "clip_benchmark"
    (pkg / "datasets").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "datasets" / cb.TEMPLATES).write_text('{"mnist": ["a {c}"]}')
    (pkg / "datasets" / cb.CLASSNAMES).write_text('{"mnist": ["0"]}')
    monkeypatch.delenv(cb.ENV, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    sys.modules.pop("clip_benchmark", None)
    with pytest.raises(config.ConfigError, match=r"another clip-benchmark version.*--no-deps clip-benchmark==1.6.2"):
        cb.templates("mnist")
    sys.modules.pop("clip_benchmark", None)


def test_missing_clip_benchmark_says_how_to_install(monkeypatch):
    import importlib.util
    monkeypatch.delenv(cb.ENV, raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(config.ConfigError, match=r"pip install --no-deps clip-benchmark==1.6.2"):
        cb.classnames("mnist")


# ============================================================================= loaders vs torchvision
def _split_ids(split) -> list[int]:
    return [int(Path(f).stem) for f in split.files]


def test_mnist_usps_svhn_against_torchvision(src, root):
    from torchvision import datasets as tv
    import torchvision.datasets.svhn as tv_svhn
    for train, split in ((True, "train"), (False, "test")):
        ref = tv.MNIST(str(root), train=train)
        s = src.load("mnist", "mnist", split)
        for f, y, i in zip(s.files, s.labels, _split_ids(s)):
            img, label = ref[i]
            assert label == y and np.array_equal(_pixels(f), np.asarray(img))
    ref = tv.USPS(str(root), train=False)
    s = src.load("mnist", "usps", "test")
    assert len(s) == len(ref)
    for f, y, i in zip(s.files, s.labels, _split_ids(s)):
        img, label = ref[i]
        assert label == y and np.array_equal(_pixels(f), np.asarray(img))
    orig = tv_svhn.check_integrity
    tv_svhn.check_integrity = lambda *a, **k: True       # the fixture is not the real file (md5)
    try:
        ref = tv.SVHN(str(root), split="test")
    finally:
        tv_svhn.check_integrity = orig
    s = src.load("mnist", "svhn", "test")
    assert sorted(set(s.labels)) == list(range(10))          # 10 -> 0 as torchvision maps it
    for f, y, i in zip(s.files, s.labels, _split_ids(s)):
        img, label = ref[i]
        assert label == y and np.array_equal(_pixels(f), np.asarray(img))


def test_cifar10_stl10_cifar10_1_against_torchvision(src, root, monkeypatch):
    from torchvision import datasets as tv
    import torchvision.datasets.cifar as tv_cifar
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    for train, split in ((True, "train"), (False, "test")):
        ref = tv.CIFAR10(str(root), train=train)
        assert tuple(ref.classes) == CIFAR10_CLASSES
        s = src.load("cifar10", "cifar10", split)
        for f, y, i in zip(s.files, s.labels, _split_ids(s)):
            img, label = ref[i]
            assert label == y and np.array_equal(_pixels(f), np.asarray(img))
    # STL-10: torchvision's own reader of the binaries (its constructor wants the train files too)
    stl = object.__new__(tv.STL10)
    stl.root, stl.base_folder = str(root), "stl10_binary"
    x_ref, y_ref = stl._STL10__loadfile("test_X.bin", "test_y.bin")
    s = src.load("cifar10", "stl10", "test")
    monkey = STL10_CLASSES.index("monkey")
    kept = np.flatnonzero(y_ref != monkey)
    assert len(s) == len(kept) and "monkey" not in s.classnames and s.classnames == list(CIFAR10_CLASSES)
    for f, y, i in zip(s.files, s.labels, _split_ids(s)):
        ref_img = np.transpose(x_ref[kept[i]], (1, 2, 0))         # as torchvision's __getitem__
        name = STL10_CLASSES[y_ref[kept[i]]]
        assert CIFAR10_CLASSES[y] == {"car": "automobile"}.get(name, name)
        assert np.array_equal(_pixels(f), ref_img)
    assert CIFAR10_CLASSES.index("frog") not in set(s.labels)     # STL-10 has no frogs
    s = src.load("cifar10", "cifar10_1", "test")
    data = np.load(root / "cifar10.1" / "cifar10.1_v6_data.npy")
    labels = np.load(root / "cifar10.1" / "cifar10.1_v6_labels.npy")
    for f, y, i in zip(s.files, s.labels, _split_ids(s)):
        assert y == labels[i] and np.array_equal(_pixels(f), data[i])


def _pairs(files, labels, root):
    return sorted((os.path.relpath(str(f), str(root)), int(y)) for f, y in zip(files, labels))


@pytest.mark.parametrize("task,cls,kwargs,attr", [
    ("gtsrb", "GTSRB", {}, "_samples"),
    ("dtd", "DTD", {}, "files"),
    ("flowers102", "Flowers102", {}, "files"),
    ("pets", "OxfordIIITPet", {}, "files"),
    ("rendered_sst2", "RenderedSST2", {}, "_samples"),
])
def test_folder_datasets_against_torchvision(src, root, monkeypatch, task, cls, kwargs, attr):
    """Every official split: the (file, label) pairs this loader finds are torchvision's."""
    from torchvision import datasets as tv
    import torchvision.datasets.flowers102 as tv_flowers
    monkeypatch.setattr(tv_flowers, "check_integrity", lambda *a, **k: True)
    t = TASKS[task]
    for split in ("train", "val", "test") if t.official_val else ("train", "test"):
        tv_split = {"OxfordIIITPet": {"train": "trainval", "test": "test"}}.get(cls, {}).get(split, split)
        ref = getattr(tv, cls)(str(root), split=tv_split, **kwargs)
        if attr == "_samples":
            want = _pairs([p for p, _ in ref._samples], [y for _, y in ref._samples], root)
        elif cls == "OxfordIIITPet":
            want = _pairs(ref._images, ref._labels, root)
        else:
            want = _pairs(ref._image_files, ref._labels, root)
        pool = t.pool(src, t.id_domain, split)
        assert _pairs([root / p for p in pool.items], pool.labels, root) == want, (task, split)
        if cls == "DTD":
            assert tuple(ref.classes) == DTD_CLASSES
        if cls == "OxfordIIITPet":      # torchvision's names (from the file names) are CLIP_benchmark's
            assert ref.classes == t.classnames()
        if cls == "RenderedSST2":
            assert ref.classes == t.classnames()


def test_eurosat_fewshot_against_torchvision_and_the_paper_task(src, root):
    from torchvision import datasets as tv
    ref = tv.EuroSAT(str(root))
    want = _pairs([p for p, _ in ref.samples], [y for _, y in ref.samples], root)
    t = TASKS["eurosat_fs"]
    got = []
    for split in ("train", "test"):
        pool = t.pool(src, t.id_domain, split)
        got += _pairs([root / p for p in pool.items], pool.labels, root)
    assert sorted(got) == want
    paper = SOURCES["real"](fx.profile(root, tasks=["eurosat"]))
    assert src.load("eurosat_fs", "eurosat_fs", "test").files == paper.load("eurosat", "eurosat", "test").files


# ============================================================================= split rules
@pytest.mark.parametrize("task", COLAB_TASKS)
def test_fewshot_splits(src, task):
    t = TASKS[task]
    k = len(t.classnames())
    train = src.load(task, t.id_domain, "train")
    val = src.load(task, t.id_domain, "val")
    counts = np.bincount(train.labels, minlength=k)
    pool = t.pool(src, t.id_domain, "train")
    available = np.bincount(pool.labels, minlength=k)
    assert np.array_equal(counts, np.minimum(src.shots, available))
    assert set(val.labels) == set(range(k)) and len(val) == src.val_shots * k
    assert not set(train.files) & set(val.files), "train and val overlap"
    test = src.load(task, t.id_domain, "test")
    assert not set(test.files) & (set(train.files) | set(val.files)), "test overlaps train or val"
    assert train.meta["rule"].startswith(f"{src.shots} train image")


def test_splits_are_a_function_of_the_seed(root):
    a = SOURCES["real"](fx.profile(root, seed=0)).load("gtsrb", "gtsrb", "train")
    b = SOURCES["real"](fx.profile(root, seed=0)).load("gtsrb", "gtsrb", "train")
    c = SOURCES["real"](fx.profile(root, seed=1)).load("gtsrb", "gtsrb", "train")
    assert a.files == b.files and a.fingerprint == b.fingerprint and a.files != c.files


def test_test_cap_is_real_source_s_rule(root):
    """Capped inside the index (so an array dataset writes only the kept images), with the same draw
    RealSource.load makes for every other task."""
    capped = SOURCES["real"](fx.profile(root, max_test_per_domain=7))
    full = SOURCES["real"](fx.profile(root))
    for task, domain in (("mnist", "svhn"), ("gtsrb", "gtsrb"), ("cifar10", "stl10")):
        s, all_ = capped.load(task, domain, "test"), full.load(task, domain, "test")
        rng = np.random.default_rng([0, *[__import__("zlib").crc32(p.encode()) for p in ("max-test", task, domain)]])
        keep = np.sort(rng.choice(len(all_), size=7, replace=False))
        assert len(s) == 7 and s.meta["subsampled_from"] == len(all_)
        assert [os.path.basename(f) for f in s.files] == [os.path.basename(all_.files[i]) for i in keep]
        assert np.array_equal(s.labels, all_.labels[keep])


def test_pngs_are_written_once_atomically(root, tmp_path):
    src = SOURCES["real"](fx.profile(root))
    s = src.load("mnist", "usps", "test")
    f = Path(s.files[0])
    stamp = f.stat().st_mtime_ns
    again = SOURCES["real"](fx.profile(root)).load("mnist", "usps", "test")
    assert again.files == s.files and Path(again.files[0]).stat().st_mtime_ns == stamp
    assert not list(f.parent.glob(".*.tmp")), "a temporary PNG was left behind"
    assert s.fingerprint == again.fingerprint


def test_file_images_through_open_clip_preprocessing(src):
    """The splits are files like every real task's: lib.data.FileImages reads them (PIL, RGB)."""
    from lib.data import FileImages
    import torchvision.transforms as T
    pre = T.Compose([T.Resize(32), T.CenterCrop(32), T.ToTensor()])
    for task, domain in (("mnist", "mnist"), ("cifar10", "stl10"), ("gtsrb", "gtsrb"), ("pets", "pets")):
        x, y = FileImages(src.load(task, domain, "test"), pre)[0]
        assert tuple(x.shape) == (3, 32, 32) and isinstance(y, int)


def test_check_names_missing_files_and_how_to_get_them(root, tmp_path):
    empty = SOURCES["real"](fx.profile(tmp_path / "empty", tasks=["cifar10", "dtd"]))
    with pytest.raises(FileNotFoundError) as exc:
        empty.check()
    msg = str(exc.value)
    assert "2 tasks lack data" in msg and "cifar-10-batches-py/test_batch" in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg and "c58f30108f718f92721af3b95e74349a" in msg
    assert "dtd/dtd/labels/test1.txt" in msg and "python -m lib.real_data.download colab" in msg
    SOURCES["real"](fx.profile(root)).check()       # the complete fixture passes


def test_malformed_label_file_is_named(root, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(root / "oxford-iiit-pet", bad / "oxford-iiit-pet")
    (bad / "oxford-iiit-pet" / "annotations" / "test.txt").write_text("Abyssinian_1 one 1 1\n")
    s = SOURCES["real"](fx.profile(bad, tasks=["pets"]))
    with pytest.raises(ValueError, match=r"task 'pets'.*test.txt is malformed"):
        s.load("pets", "pets", "test")


# ============================================================================= downloads
class _Server:
    """A local HTTP server: files by path, Range requests, a first response cut short, ignored Range."""

    def __init__(self, files: dict):
        self.files, self.requests, self.cut, self.ignore_range = dict(files), [], {}, set()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                path = self.path.lstrip("/")
                rng = self.headers.get("Range")
                server.requests.append((path, rng))
                if path not in server.files:
                    self.send_error(404)
                    return
                data = server.files[path]
                start = int(rng.split("=")[1].split("-")[0]) if rng and path not in server.ignore_range else 0
                if start >= len(data) and start:
                    self.send_error(416)
                    return
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if path in server.cut:
                    body = body[:server.cut.pop(path)]
                    self.close_connection = True
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # polled every 20 ms, not serve_forever's 0.5 s: shutdown() waits for one poll (0.5 s per test)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server({})
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _no_wait(monkeypatch):
    monkeypatch.setattr(F, "RETRY_WAIT_S", 0.0)


ARCHIVE = fx.tar_gz({"stuff/a.txt": b"alpha\n" * 4000, "stuff/sub/b.bin": np.random.default_rng(0).bytes(60000),
                     "stuff/big.bin": b"x" * 50000})


def _resource(server, name="archive.tar.gz", data=ARCHIVE, **kw):
    server.files[name] = data
    base = dict(key="test-" + name.replace(".", "-"), dataset="TestSet", urls=(server.url(name),), path=f"dl/{name}",
                md5=hashlib.md5(data).hexdigest(), checksum_from="the test", extract_to="dl",
                produces=("dl/stuff/a.txt", "dl/stuff/sub/b.bin"), size_mb=0.1)
    base.update(kw)
    return F.Resource(**base)


def test_download_verify_unpack_stamp(server, tmp_path):
    r = _resource(server)
    assert not F.is_ready(tmp_path, r)
    F.ensure(tmp_path, r, show=False)
    assert F.is_ready(tmp_path, r)
    assert (tmp_path / "dl/stuff/a.txt").read_bytes() == b"alpha\n" * 4000
    assert (tmp_path / "dl/archive.tar.gz").read_bytes() == ARCHIVE          # kept, like torchvision
    stamp = json.loads((tmp_path / ".clipmis" / f"{r.key}.done").read_text())
    assert stamp["md5"] == r.md5 and stamp["url"] == r.urls[0]
    assert not list((tmp_path / "dl").glob(".clipmis-extract-*")) and not list((tmp_path / "dl").glob("*.part"))
    n = len(server.requests)
    F.ensure(tmp_path, r, show=False)                                        # ready: no request
    assert len(server.requests) == n


def test_cut_connection_resumes_with_range(server, tmp_path):
    r = _resource(server)
    server.cut["archive.tar.gz"] = 10000
    F.ensure(tmp_path, r, show=False)
    assert server.requests[0] == ("archive.tar.gz", None)
    assert server.requests[1] == ("archive.tar.gz", "bytes=10000-")
    assert F.is_ready(tmp_path, r) and (tmp_path / "dl/archive.tar.gz").read_bytes() == ARCHIVE


def test_part_file_of_an_earlier_session_is_continued(server, tmp_path):
    r = _resource(server)
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl/archive.tar.gz.part").write_bytes(ARCHIVE[:5000])
    F.ensure(tmp_path, r, show=False)
    assert server.requests == [("archive.tar.gz", "bytes=5000-")]
    assert (tmp_path / "dl/archive.tar.gz").read_bytes() == ARCHIVE


def test_server_that_ignores_range_is_downloaded_again(server, tmp_path):
    r = _resource(server)
    server.ignore_range.add("archive.tar.gz")
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl/archive.tar.gz.part").write_bytes(b"garbage" * 100)
    F.ensure(tmp_path, r, show=False)
    assert (tmp_path / "dl/archive.tar.gz").read_bytes() == ARCHIVE


def test_wrong_bytes_are_never_used_and_the_message_names_everything(server, tmp_path):
    r = _resource(server, md5="0" * 32)
    with pytest.raises(F.DownloadError) as exc:
        F.ensure(tmp_path, r, show=False)
    msg = str(exc.value)
    for part in ("TestSet", r.urls[0], "expected " + "0" * 32, "Manual fallback", str(tmp_path / "dl/archive.tar.gz"),
                 "md5sum", "CLIPMIS_DATA_ROOT"):
        assert part in msg, part
    assert not (tmp_path / "dl/archive.tar.gz").exists() and not (tmp_path / "dl/archive.tar.gz.part").exists()
    assert not (tmp_path / "dl/stuff").exists() and not F.is_ready(tmp_path, r)


def test_failing_host_then_mirror(server, tmp_path):
    r = _resource(server)
    r = F.Resource(**{**r.__dict__, "urls": (server.url("gone/archive.tar.gz"), r.urls[0])})
    F.ensure(tmp_path, r, show=False)
    assert [p for p, _ in server.requests] == ["gone/archive.tar.gz", "archive.tar.gz"]
    assert F.is_ready(tmp_path, r)


def test_every_host_failing_names_each_url(tmp_path):
    r = F.Resource(key="x", dataset="Nowhere", urls=("http://127.0.0.1:9/a.zip", "http://127.0.0.1:9/b.zip"),
                   path="a.zip", md5="0" * 32, checksum_from="t", produces=("a.zip",))
    with pytest.raises(F.DownloadError, match=r"(?s)could not download Nowhere.*127.0.0.1:9/a.zip.*127.0.0.1:9/b.zip"
                                              r".*Manual fallback"):
        F.ensure(tmp_path, r, show=False)
    assert isinstance(F.DownloadError("x"), FileNotFoundError)   # RealSource.check reports it with the rest


def test_a_file_put_in_place_by_hand_is_verified_and_used_offline(server, tmp_path):
    r = _resource(server)
    r = F.Resource(**{**r.__dict__, "urls": ("http://127.0.0.1:9/unreachable.tar.gz",)})
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl/archive.tar.gz").write_bytes(ARCHIVE)
    F.ensure(tmp_path, r, show=False)
    assert F.is_ready(tmp_path, r) and (tmp_path / "dl/stuff/sub/b.bin").exists()


def test_an_unpacking_cut_off_is_redone(server, tmp_path):
    r = _resource(server)
    F.ensure(tmp_path, r, show=False)
    (tmp_path / ".clipmis" / f"{r.key}.done").unlink()
    (tmp_path / ".clipmis" / f"{r.key}.extracting").write_text("123")    # a move that did not finish
    (tmp_path / "dl/stuff/sub/b.bin").unlink()
    assert not F.is_ready(tmp_path, r)
    n = len(server.requests)
    F.ensure(tmp_path, r, show=False)
    assert len(server.requests) == n, "the verified archive is unpacked again, not downloaded"
    assert F.is_ready(tmp_path, r) and (tmp_path / "dl/stuff/sub/b.bin").exists()
    assert not (tmp_path / ".clipmis" / f"{r.key}.extracting").exists()


def test_a_subset_of_members_and_the_archive_deleted(server, tmp_path):
    """STL-10's case: only the test files come out of the archive, which is deleted afterwards."""
    r = _resource(server, members=("stuff/a.txt",), produces=("dl/stuff/a.txt",), keep_archive=False)
    F.ensure(tmp_path, r, show=False)
    assert (tmp_path / "dl/stuff/a.txt").exists() and not (tmp_path / "dl/stuff/big.bin").exists()
    assert not (tmp_path / "dl/archive.tar.gz").exists() and F.is_ready(tmp_path, r)


def test_gz_file_is_decompressed_beside_itself_as_torchvision_does(server, tmp_path):
    import gzip
    blob = b"idx-bytes" * 1000
    r = _resource(server, name="train-images.gz", data=gzip.compress(blob), path="MNIST/raw/train-images.gz",
                  extract_to="MNIST/raw", produces=("MNIST/raw/train-images",))
    F.ensure(tmp_path, r, show=False)
    assert (tmp_path / "MNIST/raw/train-images").read_bytes() == blob
    assert (tmp_path / "MNIST/raw/train-images.gz").exists()


def test_two_processes_download_once(server, tmp_path):
    r = _resource(server)
    errors = []

    def go():
        try:
            F.ensure(tmp_path, r, show=False)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
    threads = [threading.Thread(target=go) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and [p for p, _ in server.requests] == ["archive.tar.gz"]


def test_git_blob_sha1_is_git_s_hash(tmp_path):
    f = tmp_path / "x.npy"
    f.write_bytes(b"\x93NUMPY" + bytes(1000))
    if shutil.which("git"):
        out = subprocess.run(["git", "hash-object", str(f)], capture_output=True, text=True, check=True).stdout.strip()
        assert F.file_digest(f, "git_blob_sha1") == out
    assert F.file_digest(f, "sha256") == hashlib.sha256(f.read_bytes()).hexdigest()
    assert F.file_digest(f, "md5") == hashlib.md5(f.read_bytes()).hexdigest()


def test_every_md5_is_torchvision_s():
    """The URL and md5 of every download are the ones torchvision's dataset classes declare."""
    tv = F.torchvision_checksums()
    seen = 0
    for name in COLAB_TASKS:
        for r in TASKS[name].resources:
            if r.md5:
                url, md5 = tv[Path(r.path).name]
                assert r.md5 == md5 and r.urls[0] == url, r.key
                assert r.checksum_from.startswith("torchvision.datasets.")
                seen += 1
            else:
                assert r.dataset == "CIFAR-10.1" and r.git_blob_sha1   # no torchvision class: git's hash
    assert seen == 19


def test_download_command_lists_the_table(capsys):
    from lib.real_data import download
    assert download.main(["colab", "--list"]) == 0
    out = capsys.readouterr().out
    assert "stl10_binary.tar.gz" in out and "torchvision.datasets.STL10.tgz_md5" in out and "GB" in out
    assert download.main(["nope"]) == 1


# ============================================================================= the launcher notebook
def _launcher():
    return json.loads(LAUNCHER.read_text())


@pytest.mark.slow  # subprocess: a pytest collection of the notebooks, ~2 s (fast tier: issue #21 item 9)
def test_launcher_is_never_run_by_the_notebook_tests():
    nb = _launcher()
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all("nbval-skip" in c["metadata"].get("tags", []) for c in code)
    assert all(c.get("outputs") == [] and c.get("execution_count") is None for c in code)
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "--nbval-lax", "-p", "no:cacheprovider",
                          "notebooks"], capture_output=True, text=True, cwd=ROOT)
    assert "colab" not in out.stdout and "run_colab" not in out.stdout
    assert sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")) == [
        "00_pretrain.ipynb", "01_zero_shot.ipynb", "02_finetune.ipynb", "03_evaluate.ipynb", "04_figures.ipynb"]


def test_launcher_clones_the_release_the_badges_name():
    tree = ast.parse((ROOT / "tools" / "nbcells.py").read_text())
    consts = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
              for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
    src = "".join("".join(c["source"]) for c in _launcher()["cells"])
    assert f'REPO, REF = "{consts["REPO"]}", "{consts["REF"]}"' in src
    assert f"colab.research.google.com/github/{consts['REPO']}/blob/{consts['REF']}/notebooks/colab/run_colab.ipynb" in src
    assert _launcher()["metadata"]["accelerator"] == "GPU"


def test_launcher_runs_the_profile_and_shows_results():
    cells = ["".join(c["source"]) for c in _launcher()["cells"] if c["cell_type"] == "code"]
    src = "\n".join(cells)
    assert cells[1].index("gpu_or_stop()") < len(cells[1]) and "git" not in cells[1]   # the GPU before anything
    assert '"make", "reproduce", "PROFILE=colab"' in src and '"-m", "lib.real_data.download", "colab"' in src
    assert 'os.environ["CLIPMIS_BUILD"]' in src and 'os.environ["CLIPMIS_DATA_ROOT"]' in src
    assert "drive.mount" in src and '"LOCK=none"' in src and "--no-deps" in src
    assert "headline.md" in src and "claims.md" in src and 'glob("*.png")' in src
    for c in cells:
        compile(c, "cell", "exec")


def test_launcher_gives_papermill_a_plain_kernel(tmp_path, monkeypatch):
    """The kernel.json the launcher writes is the one papermill's `-k python3` finds when JUPYTER_PATH
    names its folder (searched before the user's and the system's kernels)."""
    from jupyter_client.kernelspec import KernelSpecManager
    src = "".join(_launcher()["cells"][4]["source"])
    assert 'env=dict(os.environ, JUPYTER_PATH=str(kernels))' in src
    spec = re.search(r'\{"argv": \[sys.executable, "-m", "ipykernel_launcher", "-f", "\{connection_file\}"\]', src)
    assert spec, "the launcher's kernel.json"
    folder = tmp_path / "kernels" / "python3"
    folder.mkdir(parents=True)
    (folder / "kernel.json").write_text(json.dumps({"argv": ["/x/python", "-m", "ipykernel_launcher", "-f",
                                                             "{connection_file}"], "display_name": "p", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == "/x/python"


def _exec_gpu_cell(monkeypatch, path: str):
    cell = "".join(_launcher()["cells"][2]["source"])
    monkeypatch.setenv("PATH", path)
    ns: dict = {}
    exec(compile(cell.replace("\ngpu_or_stop()", "\n"), "gpu", "exec"), ns)
    return ns["gpu_or_stop"]


def test_launcher_stops_clearly_on_a_cpu_runtime(monkeypatch, tmp_path):
    check = _exec_gpu_cell(monkeypatch, str(tmp_path))          # no nvidia-smi on PATH
    with pytest.raises(RuntimeError, match=r"NO GPU.*Change runtime type > T4 GPU"):
        check()
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'Tesla T4, 15360 MiB'\n")
    fake.chmod(0o755)
    assert _exec_gpu_cell(monkeypatch, f"{tmp_path}:/usr/bin:/bin")() == "Tesla T4, 15360 MiB"


# ============================================================================= the time estimate
def _budget():
    import importlib.util
    spec = importlib.util.spec_from_file_location("colab_budget", ROOT / "notebooks" / "colab" / "budget.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_estimate_is_under_an_hour_and_docs_show_its_arithmetic():
    b = _budget()
    est = b.estimate("colab")
    assert est["total_min"] <= 60
    u = est["per_unit"]
    assert 8.0 < u["image_fwd"] < 9.5 and 5.0 < u["text_fwd"] < 6.5          # ViT-B/32: ~8.7 / ~5.8 GFLOPs
    assert u["image_train"]["full"] > u["image_train"]["lora"] > u["image_fwd"]
    assert est["eval_runs"] == 8 * 4 + 1
    doc = (ROOT / "docs" / "colab.md").read_text()
    assert b.markdown(est) in doc, "docs/colab.md's tables differ from `python notebooks/colab/budget.py`"


# ============================================================================= slow: DAG and model path
@pytest.mark.slow
def test_dry_run_lists_the_whole_dag(tmp_path):
    env = {**os.environ, "MAKEFLAGS": ""}
    out = subprocess.run(["make", "dry-run", "PROFILE=colab", f"PY={sys.executable}", f"BUILD={tmp_path}"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    for nb in ("00_pretrain", "01_zero_shot", "03_evaluate", "04_figures"):
        assert f"papermill notebooks/{nb}.ipynb" in text, nb
    for task in COLAB_TASKS:   # one fine-tuning job and one evaluation job (all five methods) per task
        assert re.search(rf"lib\.pipeline\.notebook_job colab {task}$", text, re.M), task
        assert re.search(rf"lib\.pipeline\.evaluate colab {task} --methods full clip_adapter lora bitfit aclip\b", text), task
    assert "lib.pipeline.aggregate finetune colab" in text
    assert len(re.findall(r"lib\.pipeline\.evaluate colab \w+ --methods", text)) == len(COLAB_TASKS)
    assert len(re.findall(r"lib\.pipeline\.notebook_job colab \w+$", text, re.M)) == len(COLAB_TASKS)


@pytest.mark.slow
@pytest.mark.usefixtures("fake_hub")
def test_openai_model_through_a_fake_hub_on_the_fixture_data(root, tmp_path, monkeypatch):
    """The colab profile's model (open_clip's `openai` tag, resolved in a fake hub cache) encodes the
    fixture's MNIST / USPS / SVHN test images; the zero-shot table has finite measures."""
    from lib.evaluate import zero_shot_table
    from lib.pipeline.common import base_model
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path / "build"))
    cfg = config.load_profile("colab")
    cfg["device"] = "cpu"
    cfg["data"] = {**cfg["data"], "root": str(root), "download": False, "tasks": ["mnist"], "max_test_per_domain": 6}
    monkeypatch.delenv("CLIPMIS_DATA_ROOT", raising=False)
    bundle = base_model(cfg)
    assert bundle.name == "ViT-B-32-quickgelu" and bundle.pretrained == "openai"
    src = SOURCES["real"](cfg)
    src.check()
    df = zero_shot_table(bundle, src, "colab", batch_size=6, progress=False)
    assert list(df["domain"]) == ["mnist", "usps", "svhn"] and (df["n_images"] == 6).all()
    assert np.isfinite(df[["acc", "acs", "ss"]].to_numpy(dtype=float)).all()
