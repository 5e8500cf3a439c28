"""Tiny fixture trees with the real datasets' on-disk layouts (see lib/real_data/).

Images are 8x8 JPEG/PNG files; one encoded image per colour is written many times.  To keep
the ImageNet tree (1000 wnid folders per dataset) fast to create on a busy disk, its
1000-class folders are by default symlinks to one shared pool folder per dataset (the loader
follows folder symlinks like real folders); ImageNet-R/-A, WILDS and EuroSAT hold real files.  Every
``make_*`` function takes the data root and returns it.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from lib.real_data import EuroSATTask, FMOW_CATEGORIES, _read_list

_BYTES: dict = {}


def image_bytes(fmt: str = "JPEG", colour: int = 0) -> bytes:
    key = (fmt, colour % 16)
    if key not in _BYTES:
        rng = np.random.default_rng(key[1])
        arr = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format=fmt)
        _BYTES[key] = buf.getvalue()
    return _BYTES[key]


def _write(path: Path, fmt: str = "JPEG", colour: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(fmt, colour))


# ----------------------------------------------------------------------------- ImageNet
def _class_dir(folder: Path, pool: Path, names: list[str], shared: bool, colour: int) -> None:
    """One class folder holding ``names``: a symlink to a shared pool folder, or real files."""
    if shared:
        if not pool.is_dir():
            for k, n in enumerate(names):
                _write(pool / n, colour=k)
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.symlink_to(pool.resolve(), target_is_directory=True)
    else:
        for k, n in enumerate(names):
            _write(folder / n, colour=colour + k)


def make_imagenet(root: Path, train_per_class: int = 18, shared: bool = True) -> Path:
    """All 1000 wnid folders in train/val/sketch, 0..999 in V2, the 200-class R and A.

    ``train_per_class`` images per train class, one image per class elsewhere.  With ``shared``
    the 1000-class folders are symlinks to one pool folder per dataset (fast to create);
    ImageNet-R/-A folders always hold real files.
    """
    root = Path(root)
    pools = root / "_fixture_pool"
    wnids = _read_list("imagenet_wnids.txt")
    train_names = [f"img_{k:04d}.JPEG" for k in range(train_per_class)]
    for i, w in enumerate(wnids):
        _class_dir(root / "imagenet" / "train" / w, pools / "train", train_names, shared, i)
        _class_dir(root / "imagenet" / "val" / w, pools / "val",
                   [f"ILSVRC2012_val_{i + 1:08d}.JPEG"], shared, i)
        _class_dir(root / "imagenetv2-matched-frequency-format-val" / str(i), pools / "v2",
                   [f"{i:040x}.jpeg"], shared, i)
        _class_dir(root / "imagenet-sketch" / "sketch" / w, pools / "sketch",
                   [f"sketch_{i}.JPEG"], shared, i)
    for folder, listing in (("imagenet-r", "imagenet_r_wnids.txt"),
                            ("imagenet-a", "imagenet_a_wnids.txt")):
        for k, w in enumerate(_read_list(listing)):
            _write(root / folder / w / f"{folder}_{k}.jpg", colour=k)
        (root / folder / "README.txt").write_text("200 classes\n")
    return root


# ----------------------------------------------------------------------------- WILDS
IWILDCAM_SPLITS = {"train": 6, "id_val": 3, "id_test": 3, "val": 4, "test": 5}


def make_iwildcam(root: Path) -> Path:
    """metadata.csv with the v2.0 columns, categories.csv, images in train/."""
    import pandas as pd
    base = Path(root) / "iwildcam_v2.0"
    rows, r = [], 0
    for split, n in IWILDCAM_SPLITS.items():
        for k in range(n):
            y = (r * 37) % 182
            fn = f"{r:08x}-{split}.jpg"
            rows.append(dict(split=split, location_remapped=r % 7, location=100 + r % 7,
                             sequence_remapped=r, seq_id=f"seq{r}", y=y, category_id=y * 2,
                             datetime=f"2013-0{1 + k % 9}-1{k % 9} 08:3{k % 9}:00.000",
                             filename=fn, image_id=f"img{r}"))
            _write(base / "train" / fn, colour=r)
            r += 1
    pd.DataFrame(rows).to_csv(base / "metadata.csv")
    cats = pd.DataFrame({"y": list(range(182)), "category_id": [2 * i for i in range(182)],
                         "name": [f"species {i}" for i in range(182)]})
    cats.to_csv(base / "categories.csv", index=False)
    return Path(root)


# (split, year, count): years >= 2016 are OOD test, 2013..2015 OOD val, < 2013 ID.
FMOW_ROWS = [("train", 2010, 5), ("val", 2011, 3), ("test", 2012, 3), ("seq", 2012, 2),
             ("train", 2014, 2), ("val", 2014, 3), ("test", 2014, 1),
             ("val", 2017, 1), ("test", 2016, 4), ("test", 2017, 2), ("seq", 2017, 1)]


def make_fmow(root: Path) -> Path:
    import pandas as pd
    base = Path(root) / "fmow_v1.1"
    rows = []
    for split, year, n in FMOW_ROWS:
        for k in range(n):
            i = len(rows)
            cat = FMOW_CATEGORIES[(i * 11) % len(FMOW_CATEGORIES)]
            rows.append(dict(split=split, img_filename=f"{cat}_{i}_0_rgb.jpg",
                             img_path=f"{split}/{cat}/{cat}_{i}/{cat}_{i}_0_rgb.jpg",
                             spatial_reference="WGS84", epsg=4326, category=cat, visible=True,
                             img_width=224, img_height=224, country_code="USA",
                             cloud_cover=0, timestamp=f"{year}-0{1 + k % 9}-15T10:30:00Z",
                             lat=40.0 + i, lon=-70.0 - i))
            if split != "seq":
                _write(base / "images" / f"rgb_img_{i}.png", fmt="PNG", colour=i)
    pd.DataFrame(rows).to_csv(base / "rgb_metadata.csv", index=False)
    pd.DataFrame({"alpha-3": ["USA"], "region": ["Americas"]}).to_csv(
        base / "country_code_mapping.csv", index=False)
    return Path(root)


# (center, split) -> count; WILDS: center 1 = OOD val, 2 = OOD test, split 1 = id_val.
CAMELYON_ROWS = {(0, 0): 10, (0, 1): 2, (3, 0): 10, (3, 1): 2, (4, 0): 10, (4, 1): 2,
                 (1, 0): 3, (2, 0): 4}


def make_camelyon17(root: Path) -> Path:
    import pandas as pd
    base = Path(root) / "camelyon17_v1.0"
    rows = []
    for (center, split), n in CAMELYON_ROWS.items():
        for k in range(n):
            i = len(rows)
            patient, node = f"{center * 20 + k % 2 + 4:03d}", k % 3
            x, y = 96 * k, 96 * i
            rows.append(dict(patient=patient, node=node, x_coord=x, y_coord=y, tumor=(i % 2),
                             slide=center * 10 + k % 2, center=center, split=split))
            _write(base / "patches" / f"patient_{patient}_node_{node}" /
                   f"patch_patient_{patient}_node_{node}_x_{x}_y_{y}.png", fmt="PNG", colour=i)
    pd.DataFrame(rows).to_csv(base / "metadata.csv")   # unnamed index column first, like WILDS
    return Path(root)


# ----------------------------------------------------------------------------- EuroSAT
def make_eurosat(root: Path, per_class: int = 20) -> Path:
    for c, folder in enumerate(EuroSATTask.CLASSES):
        for k in range(per_class):
            _write(Path(root) / "eurosat" / "2750" / folder / f"{folder}_{k + 1}.jpg",
                   colour=c + k)
    return Path(root)


def make_all(root: Path) -> Path:
    for fn in (make_imagenet, make_iwildcam, make_fmow, make_camelyon17, make_eurosat):
        fn(root)
    return Path(root)


def profile(root: Path, **data) -> dict:
    """A profile dict selecting the real source on ``root``."""
    cfg = {"source": "real", "root": str(root), "download": False, "shots": 16, "seed": 0,
           "val_fraction": 0.1, "max_test_per_domain": None,
           "tasks": ["imagenet", "iwildcam", "fmow", "camelyon17", "eurosat"]}
    cfg.update(data)
    return {"name": "test-real", "data": cfg}
