"""lib/real_data/ on fixture trees that have the real datasets' on-disk layouts."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fixtures_real as fx
from lib import real_data as R
from lib.config import ConfigError
from lib.data import SOURCES, FileImages, Split


@pytest.fixture(scope="session")
def root(tmp_path_factory) -> Path:
    return fx.make_all(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def src(root) -> R.RealSource:
    return SOURCES["real"](fx.profile(root))


def linked_root(root: Path, dest: Path, skip=()) -> Path:
    """A new data root whose top-level folders are symlinks into ``root`` (cheap copies)."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in root.iterdir():
        if entry.name not in skip:
            (dest / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return dest


def files_of(split: Split) -> list[str]:
    return [os.path.basename(f) for f in split.files]


# ----------------------------------------------------------------------------- registry
def test_registered_and_lazy(tmp_path):
    """tasks() reads no data folder: it works on an empty root."""
    s = SOURCES["real"](fx.profile(tmp_path / "nothing-here"))
    assert isinstance(s, R.RealSource)
    tasks = s.tasks()
    assert {n: len(t.classnames) for n, t in tasks.items()} == {
        "imagenet": 1000, "iwildcam": 182, "fmow": 62, "camelyon17": 2, "eurosat": 10}
    assert tasks["imagenet"].domains == ["imagenet", "imagenet_v2", "imagenet_sketch",
                                         "imagenet_r", "imagenet_a"]
    assert tasks["iwildcam"].domains == ["id", "ood"]
    assert tasks["eurosat"].ood_domains == []
    assert len(tasks["imagenet"].templates) == 80
    for t in tasks.values():
        assert t.templates and all("{}" in x for x in t.templates)
    assert not (tmp_path / "nothing-here").exists()


def test_source_for_selects_real(root):
    try:
        from lib.data import source_for
        s = source_for(fx.profile(root))
    except ModuleNotFoundError as exc:           # lib.world (embedded source) not written yet
        pytest.skip(f"source_for needs {exc.name}")
    assert isinstance(s, R.RealSource)


def test_config_validation(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="unknown task"):
        R.RealSource(fx.profile(tmp_path, tasks=["imagenet", "not_a_task"]))
    with pytest.raises(ConfigError, match="data.shots"):
        R.RealSource(fx.profile(tmp_path, shots=0))
    with pytest.raises(ConfigError, match="val_fraction"):
        R.RealSource(fx.profile(tmp_path, val_fraction=0.7))
    with pytest.raises(ConfigError, match="templates"):
        R.RealSource(fx.profile(tmp_path, templates={"eurosat": ["no placeholder"]}))
    s = R.RealSource(fx.profile(tmp_path, templates={"eurosat": ["a photo of {}."]}))
    assert s.tasks()["eurosat"].templates == ["a photo of {}."]
    monkeypatch.setenv("CLIPMIS_DATA_ROOT", str(tmp_path / "env-root"))
    assert R.RealSource(fx.profile(tmp_path)).root == (tmp_path / "env-root").resolve()


def test_bad_domain_or_split(src):
    with pytest.raises(ConfigError, match="no domain"):
        src.load("imagenet", "imagenet_c", "test")
    with pytest.raises(ConfigError, match="test-only"):
        src.load("imagenet", "imagenet_r", "train")
    with pytest.raises(ConfigError, match="unknown task"):
        src.load("cifar10", "id", "test")


# ----------------------------------------------------------------------------- ImageNet
def test_imagenet_16_shots(src):
    tr, va = src.load("imagenet", "imagenet", "train"), src.load("imagenet", "imagenet", "val")
    assert src.val_shots == 2
    assert len(tr) == 16000 and len(va) == 2000
    assert np.bincount(tr.labels, minlength=1000).tolist() == [16] * 1000
    assert np.bincount(va.labels, minlength=1000).tolist() == [2] * 1000
    assert not set(tr.files) & set(va.files)
    wnids = R._read_list("imagenet_wnids.txt")
    for f, y in zip(tr.files[::997], tr.labels[::997]):           # folder <-> label
        assert Path(f).parent.name == wnids[y]
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    assert tr.classnames == list(IMAGENET_CLASSNAMES) and tr.n_classes == 1000
    assert tr.labels.dtype == np.int64


def test_imagenet_shots_deterministic_by_seed(root, src):
    a = src.load("imagenet", "imagenet", "train")
    same = R.RealSource(fx.profile(root, seed=0)).load("imagenet", "imagenet", "train")
    other = R.RealSource(fx.profile(root, seed=1)).load("imagenet", "imagenet", "train")
    assert same.files == a.files and same.fingerprint == a.fingerprint
    assert other.files != a.files and other.fingerprint != a.fingerprint
    assert np.array_equal(other.labels, a.labels)
    few = R.RealSource(fx.profile(root, shots=4)).load("imagenet", "imagenet", "train")
    assert len(few) == 4000 and R.RealSource(fx.profile(root, shots=4)).val_shots == 1


def test_imagenet_too_few_images_for_shots(root):
    s = R.RealSource(fx.profile(root, shots=18))       # fixture has 18 per class, needs 18+2
    with pytest.raises(ValueError, match="fewer than shots"):
        s.load("imagenet", "imagenet", "train")


def test_imagenet_test_and_shifts(src):
    wnids = R._read_list("imagenet_wnids.txt")
    test = src.load("imagenet", "imagenet", "test")
    assert len(test) == 1000 and sorted(set(test.labels)) == list(range(1000))
    assert all("/imagenet/val/" in f for f in test.files)
    v2 = src.load("imagenet", "imagenet_v2", "test")
    assert all(int(Path(f).parent.name) == y for f, y in zip(v2.files, v2.labels))
    sk = src.load("imagenet", "imagenet_sketch", "test")
    assert all(Path(f).parent.name == wnids[y] for f, y in zip(sk.files, sk.labels))
    assert all("/imagenet-sketch/sketch/" in f for f in sk.files)


@pytest.mark.parametrize("domain,first", [("imagenet_r", "goldfish"),
                                          ("imagenet_a", "stingray")])
def test_imagenet_200_class_subsets(src, domain, first):
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    wnids = R._read_list("imagenet_wnids.txt")
    s = src.load("imagenet", domain, "test")
    sub = s.meta["class_subset"]
    assert len(sub) == 200 == s.n_classes and sub == sorted(sub)
    assert s.classnames == [IMAGENET_CLASSNAMES[i] for i in sub]
    assert s.classnames[0] == first
    assert s.labels.min() == 0 and s.labels.max() == 199
    for f, y in zip(s.files, s.labels):
        assert Path(f).parent.name == wnids[sub[y]]


def test_subset_lists_match_public_indices():
    """First entries of the published 1000-way indices of ImageNet-R / ImageNet-A."""
    task = R.TASKS["imagenet"]
    assert task.subset("imagenet_r")[:8] == [1, 2, 4, 6, 8, 9, 11, 13]
    assert task.subset("imagenet_a")[:8] == [6, 11, 13, 15, 17, 22, 23, 27]
    assert task.subset("imagenet_a")[-3:] == [986, 987, 988]


# ----------------------------------------------------------------------------- WILDS
def test_iwildcam_official_splits(root, src):
    meta = pd.read_csv(root / "iwildcam_v2.0" / "metadata.csv")
    want = {("id", "train"): "train", ("id", "val"): "id_val", ("id", "test"): "id_test",
            ("ood", "val"): "val", ("ood", "test"): "test"}
    for (dom, split), official in want.items():
        s = src.load("iwildcam", dom, split)
        rows = meta[meta["split"] == official]
        assert files_of(s) == list(rows["filename"])
        assert s.labels.tolist() == list(rows["y"])
        assert all("/iwildcam_v2.0/train/" in f for f in s.files)
        assert s.n_classes == 182


def test_fmow_time_split(root, src):
    meta = pd.read_csv(root / "fmow_v1.1" / "rgb_metadata.csv")
    year = meta["timestamp"].str[:4].astype(int)
    seen = set()
    for dom, split in [("id", "train"), ("id", "val"), ("id", "test"), ("ood", "val"),
                       ("ood", "test")]:
        s = src.load("fmow", dom, split)
        rows = [int(Path(f).stem.split("_")[-1]) for f in s.files]
        assert rows == s.meta["metadata_rows"].tolist()
        assert not seen & set(rows)
        seen |= set(rows)
        assert set(meta.loc[rows, "split"]) == {split}
        yrs = year[rows]
        if dom == "id":
            assert (yrs < 2013).all()
        elif split == "test":
            assert (yrs >= 2016).all()
        else:
            assert ((yrs >= 2013) & (yrs < 2016)).all()
        cats = [R.FMOW_CATEGORIES[y] for y in s.labels]
        assert cats == list(meta.loc[rows, "category"])
    assert len(src.load("fmow", "ood", "test")) == 6     # 2016 + 2017 test rows
    assert not seen & set(np.flatnonzero(meta["split"] == "seq"))
    assert src.load("fmow", "id", "train").classnames[30] == "multi-unit residential"


def test_camelyon17_hospitals(root, src):
    meta = pd.read_csv(root / "camelyon17_v1.0" / "metadata.csv", index_col=0,
                       dtype={"patient": "str"})

    def centers(s):
        return set(meta["center"].to_numpy()[s.meta["metadata_rows"]])

    ood = src.load("camelyon17", "ood", "test")
    assert centers(ood) == {2} and len(ood) == (meta["center"] == 2).sum()
    assert centers(src.load("camelyon17", "ood", "val")) == {1}
    tr, va, te = (src.load("camelyon17", "id", s) for s in ("train", "val", "test"))
    for s in (tr, va, te):
        assert centers(s) <= {0, 3, 4}
    assert len(tr) + len(va) == ((meta["split"] == 0) & meta["center"].isin([0, 3, 4])).sum()
    assert len(va) == 3 and not set(tr.files) & set(va.files)
    assert set(meta["split"].to_numpy()[te.meta["metadata_rows"]]) == {1}
    assert all(os.path.isfile(f) for f in tr.files + ood.files)   # zero-padded patient ids
    assert tr.classnames == ["lymph node", "lymph node containing tumor tissue"]
    other = R.RealSource(fx.profile(root, seed=3))
    assert other.load("camelyon17", "id", "val").files != va.files


# ----------------------------------------------------------------------------- EuroSAT
def test_eurosat_split(root, src):
    parts = {s: src.load("eurosat", "eurosat", s) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [120, 20, 60]  # 60/10/30
    for p in parts.values():
        assert np.bincount(p.labels, minlength=10).min() > 0
        assert p.classnames[0] == "annual crop land" and p.n_classes == 10
        for f, y in zip(p.files, p.labels):
            assert Path(f).parent.name == list(R.EuroSATTask.CLASSES)[y]
    all_files = sum((p.files for p in parts.values()), [])
    assert len(set(all_files)) == 200
    again = R.RealSource(fx.profile(root)).load("eurosat", "eurosat", "test")
    assert again.files == parts["test"].files
    assert R.RealSource(fx.profile(root, seed=5)).load("eurosat", "eurosat", "test").files \
        != parts["test"].files


# ----------------------------------------------------------------------------- caps, hashes
def test_max_test_per_domain(root, src):
    full = src.load("imagenet", "imagenet_v2", "test")
    capped = R.RealSource(fx.profile(root, max_test_per_domain=50))
    a = capped.load("imagenet", "imagenet_v2", "test")
    b = R.RealSource(fx.profile(root, max_test_per_domain=50)).load("imagenet", "imagenet_v2", "test")
    assert len(a) == 50 and a.files == b.files and a.meta["subsampled_from"] == 1000
    assert set(a.files) <= set(full.files)
    assert a.files == [f for f in full.files if f in set(a.files)]      # order kept
    assert len(capped.load("imagenet", "imagenet", "train")) == 16000    # train not capped
    small = capped.load("camelyon17", "ood", "test")                     # below the cap
    assert len(small) == 4 and "subsampled_from" not in small.meta


def test_fingerprint_independent_of_root_location(root, src, tmp_path):
    other = R.RealSource(fx.profile(linked_root(root, tmp_path / "elsewhere")))
    for args in [("imagenet", "imagenet_r", "test"), ("fmow", "id", "train"),
                 ("camelyon17", "ood", "test")]:
        a, b = src.load(*args), other.load(*args)
        assert a.fingerprint == b.fingerprint and a.files != b.files
    assert R.fingerprint_files(["a.jpg", "b.jpg"], [0, 1]) != \
        R.fingerprint_files(["a.jpg", "b.jpg"], [1, 0])
    assert R.fingerprint_files(["b.jpg", "a.jpg"], [1, 0]) == \
        R.fingerprint_files(["a.jpg", "b.jpg"], [0, 1])


# ----------------------------------------------------------------------------- check()
def test_check_passes_on_complete_tree(src):
    src.check()


@pytest.mark.parametrize("skip,task,domain,expect", [
    ("imagenet-r", "imagenet", "imagenet_r", "imagenet-r"),
    ("iwildcam_v2.0", "iwildcam", "ood", "iwildcam_v2.0"),
    ("fmow_v1.1", "fmow", "ood", "fmow_v1.1"),
    ("camelyon17_v1.0", "camelyon17", "ood", "camelyon17_v1.0"),
    ("eurosat", "eurosat", "eurosat", "eurosat/2750"),
])
def test_check_missing_folder(root, tmp_path, skip, task, domain, expect):
    r = linked_root(root, tmp_path / "data", skip=(skip,))
    s = R.RealSource(fx.profile(r, tasks=[task]))
    with pytest.raises(FileNotFoundError) as err:
        s.check()
    msg = str(err.value)
    assert str(r / expect) in msg and "download" in msg.lower() and "Expected layout" in msg
    with pytest.raises(FileNotFoundError):          # load() fails the same clear way
        s.load(task, domain, "test")


def test_check_malformed_imagenet(tmp_path):
    wnids = R._read_list("imagenet_wnids.txt")
    for w in wnids[:3]:
        fx._write(tmp_path / "imagenet" / "train" / w / "x.JPEG")
    s = R.RealSource(fx.profile(tmp_path, tasks=["imagenet"]))
    with pytest.raises(ValueError, match=r"found 3 class folders, expected the 1000"):
        s.check()


def test_check_empty_class_folder(root, tmp_path):
    r = linked_root(root, tmp_path / "data", skip=("eurosat",))
    fx.make_eurosat(r, per_class=2)
    shutil.rmtree(r / "eurosat" / "2750" / "River")
    (r / "eurosat" / "2750" / "River").mkdir()
    with pytest.raises(ValueError, match="River"):
        R.RealSource(fx.profile(r, tasks=["eurosat"])).check()


def test_check_metadata_missing_column(root, tmp_path):
    r = linked_root(root, tmp_path / "data", skip=("iwildcam_v2.0",))
    fx.make_iwildcam(r)
    meta = pd.read_csv(r / "iwildcam_v2.0" / "metadata.csv", index_col=0)
    meta.drop(columns=["y"]).to_csv(r / "iwildcam_v2.0" / "metadata.csv")
    s = R.RealSource(fx.profile(r, tasks=["iwildcam"]))
    with pytest.raises(ValueError, match=r"missing column\(s\) y"):
        s.check()
    with pytest.raises(ValueError, match="missing column"):
        s.load("iwildcam", "id", "train")


def test_wilds_labels_out_of_range(root, tmp_path):
    r = linked_root(root, tmp_path / "data", skip=("iwildcam_v2.0",))
    fx.make_iwildcam(r)
    meta = pd.read_csv(r / "iwildcam_v2.0" / "metadata.csv", index_col=0)
    meta.loc[0, "y"] = 500
    meta.to_csv(r / "iwildcam_v2.0" / "metadata.csv")
    with pytest.raises(ValueError, match="labels outside 0..181"):
        R.RealSource(fx.profile(r, tasks=["iwildcam"])).load("iwildcam", "id", "train")


def test_download_without_wilds_package(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "wilds", None)     # import wilds -> ImportError
    s = R.RealSource(fx.profile(tmp_path, tasks=["camelyon17"], download=True))
    with pytest.raises(FileNotFoundError, match="pip install wilds") as err:
        s.check()
    assert str(tmp_path) in str(err.value)


# ----------------------------------------------------------------------------- images
def test_corrupt_image_names_the_file(root, tmp_path):
    r = linked_root(root, tmp_path / "data", skip=("eurosat",))
    fx.make_eurosat(r, per_class=10)
    s = R.RealSource(fx.profile(r, tasks=["eurosat"]))
    split = s.load("eurosat", "eurosat", "test")
    bad = split.files[3]
    Path(bad).write_bytes(b"this is not a jpeg")
    ds = FileImages(split, preprocess=lambda im: np.asarray(im))
    assert ds[0][0].shape == (8, 8, 3) and ds[0][1] == int(split.labels[0])
    with pytest.raises(ValueError, match="corrupt or unreadable image file") as err:
        ds[3]
    assert bad in str(err.value)


def test_check_reports_every_missing_folder(tmp_path):
    s = R.RealSource(fx.profile(tmp_path / "empty", tasks=["imagenet", "fmow", "eurosat"]))
    with pytest.raises(FileNotFoundError) as err:
        s.check()
    msg = str(err.value)
    assert msg.startswith("3 tasks lack data")
    for rel in ["imagenet/train", "imagenet/val", "imagenetv2-matched-frequency-format-val",
                "imagenet-sketch/sketch", "imagenet-r", "imagenet-a", "fmow_v1.1", "eurosat/2750"]:
        assert str(tmp_path / "empty" / rel) in msg, rel
