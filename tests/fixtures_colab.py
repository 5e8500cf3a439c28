"""Tiny synthetic copies of the colab profile's datasets, in the EXACT on-disk layouts their torchvision
downloads produce (file names, folders, binary formats): MNIST idx files (and the .gz beside them),
USPS LIBSVM bz2, SVHN .mat, CIFAR-10 python pickles, STL-10 binaries, CIFAR-10.1 .npy, the EuroSAT,
GTSRB, DTD, Flowers-102, Oxford-IIIT Pet and Rendered SST2 folder trees with their label files.

Images are random (seeded) and small; every class has ``per_class`` training images. Every
``make_*`` function takes the data root and returns it; :func:`make_all` writes them all and marks
nothing as downloaded (a cache torchvision filled has no stamps either).
"""
from __future__ import annotations

import bz2
import csv
import gzip
import io
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from lib.real_data.cifar import CIFAR10_CLASSES, STL10_CLASSES
from lib.real_data.dtd import DTD_CLASSES
from lib.real_data.eurosat import EuroSATTask

RNG = np.random.default_rng(0)
PET_BREEDS = ["Abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound", "beagle",
              "Bengal", "Birman", "Bombay", "boxer", "British_Shorthair", "chihuahua", "Egyptian_Mau",
              "english_cocker_spaniel", "english_setter", "german_shorthaired", "great_pyrenees", "havanese",
              "japanese_chin", "keeshond", "leonberger", "Maine_Coon", "miniature_pinscher", "newfoundland",
              "Persian", "pomeranian", "pug", "Ragdoll", "Russian_Blue", "saint_bernard", "samoyed",
              "scottish_terrier", "shiba_inu", "Siamese", "Sphynx", "staffordshire_bull_terrier",
              "wheaten_terrier", "yorkshire_terrier"]


def _img(shape) -> np.ndarray:
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


def _save(path: Path, arr: np.ndarray, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)


def _labels(n_classes: int, per_class: int) -> np.ndarray:
    return np.tile(np.arange(n_classes), per_class)   # interleaved, as real files mostly are


# ----------------------------------------------------------------------------- MNIST
def _idx(data: np.ndarray) -> bytes:
    """The idx ("Pascal Vincent") format of MNIST: magic 0x0000080<ndim>, big-endian dims, uint8 data."""
    return struct.pack(">I", 0x0800 + data.ndim) + b"".join(struct.pack(">I", d) for d in data.shape) + \
        data.astype(np.uint8).tobytes()


def make_mnist(root: Path, per_class: int = 6, test_per_class: int = 3) -> Path:
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for stem, k in (("train", per_class), ("t10k", test_per_class)):
        y = _labels(10, k)
        for kind, data in (("images-idx3", _img((len(y), 28, 28))), ("labels-idx1", y)):
            name = f"{stem}-{kind}-ubyte"
            blob = _idx(data)
            (raw / name).write_bytes(blob)
            (raw / f"{name}.gz").write_bytes(gzip.compress(blob))
    return Path(root)


def make_usps(root: Path, per_class: int = 3) -> Path:
    y = _labels(10, per_class)
    lines = []
    for label in y:
        vals = RNG.uniform(-1, 1, size=256)
        lines.append(f"{label + 1} " + " ".join(f"{i + 1}:{v:.6f}" for i, v in enumerate(vals)))
    Path(root).mkdir(parents=True, exist_ok=True)
    (Path(root) / "usps.t.bz2").write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))
    return Path(root)


def make_svhn(root: Path, per_class: int = 3) -> Path:
    from scipy.io import savemat
    y = _labels(10, per_class)
    y_mat = np.where(y == 0, 10, y).astype(np.uint8).reshape(-1, 1)    # SVHN: 10 is the digit 0
    x = np.transpose(_img((len(y), 32, 32, 3)), (1, 2, 3, 0))          # (32, 32, 3, N)
    Path(root).mkdir(parents=True, exist_ok=True)
    savemat(str(Path(root) / "test_32x32.mat"), {"X": x, "y": y_mat})
    return Path(root)


# ----------------------------------------------------------------------------- CIFAR-10, STL-10, CIFAR-10.1
def make_cifar10(root: Path, per_class: int = 6, test_per_class: int = 3) -> Path:
    base = Path(root) / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    y_all = _labels(10, per_class)
    for b in range(1, 6):
        y = y_all[b - 1::5]
        batch = {"batch_label": f"training batch {b} of 5", "labels": [int(v) for v in y],
                 "data": _img((len(y), 3072)), "filenames": [f"img_{b}_{i}.png" for i in range(len(y))]}
        (base / f"data_batch_{b}").write_bytes(pickle.dumps(batch, protocol=2))
    y = _labels(10, test_per_class)
    test = {"batch_label": "testing batch 1 of 1", "labels": [int(v) for v in y], "data": _img((len(y), 3072)),
            "filenames": [f"test_{i}.png" for i in range(len(y))]}
    (base / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    meta = {"num_cases_per_batch": 10000, "label_names": list(CIFAR10_CLASSES), "num_vis": 3072}
    (base / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return Path(root)


def make_stl10(root: Path, per_class: int = 2) -> Path:
    base = Path(root) / "stl10_binary"
    base.mkdir(parents=True, exist_ok=True)
    y = _labels(10, per_class)
    (base / "test_y.bin").write_bytes((y + 1).astype(np.uint8).tobytes())
    (base / "test_X.bin").write_bytes(_img((len(y), 3, 96, 96)).tobytes())
    (base / "class_names.txt").write_text("\n".join(STL10_CLASSES) + "\n")
    return Path(root)


def make_cifar10_1(root: Path, per_class: int = 2) -> Path:
    base = Path(root) / "cifar10.1"
    base.mkdir(parents=True, exist_ok=True)
    y = _labels(10, per_class)
    np.save(base / "cifar10.1_v6_data.npy", _img((len(y), 32, 32, 3)))
    np.save(base / "cifar10.1_v6_labels.npy", y.astype(np.int64))
    return Path(root)


# ----------------------------------------------------------------------------- folder datasets
def make_eurosat(root: Path, per_class: int = 12) -> Path:
    for folder in EuroSATTask.CLASSES:
        for k in range(per_class):
            _save(Path(root) / "eurosat" / "2750" / folder / f"{folder}_{k + 1}.jpg", _img((64, 64, 3)), "JPEG")
    return Path(root)


def make_gtsrb(root: Path, per_class: int = 3, test: int = 86) -> Path:
    base = Path(root) / "gtsrb" / "GTSRB"
    header = ["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId"]
    for c in range(43):
        folder = base / "Training" / f"{c:05d}"
        rows = []
        for k in range(per_class):
            name = f"{k // 30:05d}_{k % 30:05d}.ppm"
            _save(folder / name, _img((30 + k, 31, 3)), "PPM")
            rows.append([name, 31, 30 + k, 5, 5, 25, 25, c])
        with open(folder / f"GT-{c:05d}.csv", "w", newline="") as f:
            w = csv.writer(f, delimiter=";")
            w.writerow(header)
            w.writerows(rows)
    rows = []
    for i in range(test):
        name = f"{i:05d}.ppm"
        _save(base / "Final_Test" / "Images" / name, _img((32, 32, 3)), "PPM")
        rows.append([name, 32, 32, 5, 5, 27, 27, i % 43])
    with open(Path(root) / "gtsrb" / "GT-final_test.csv", "w", newline="") as f:
        w = csv.writer(f, delimiter=";")
        w.writerow(header)
        w.writerows(rows)
    return Path(root)


def make_dtd(root: Path, per_split: int = 2) -> Path:
    data = Path(root) / "dtd" / "dtd"
    k = 0
    for split in ("train", "val", "test"):
        lines = []
        for cls in DTD_CLASSES:
            for _ in range(per_split):
                k += 1
                name = f"{cls}_{k:04d}.jpg"
                _save(data / "images" / cls / name, _img((40, 48, 3)), "JPEG")
                lines.append(f"{cls}/{name}")
        (data / "labels").mkdir(parents=True, exist_ok=True)
        (data / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")
    return Path(root)


def make_flowers102(root: Path, per_split: int = 2) -> Path:
    from scipy.io import savemat
    base = Path(root) / "flowers-102"
    n = 102 * per_split * 3
    labels = np.tile(np.arange(1, 103), per_split * 3)          # image id i (1-based) has labels[i - 1]
    for i in range(1, n + 1):
        _save(base / "jpg" / f"image_{i:05d}.jpg", _img((36, 40, 3)), "JPEG")
    ids = np.arange(1, n + 1)
    third = len(ids) // 3
    savemat(str(base / "imagelabels.mat"), {"labels": labels.reshape(1, -1).astype(np.uint8)})
    savemat(str(base / "setid.mat"), {"trnid": ids[:third].reshape(1, -1).astype(np.uint16),
                                      "valid": ids[third:2 * third].reshape(1, -1).astype(np.uint16),
                                      "tstid": ids[2 * third:].reshape(1, -1).astype(np.uint16)})
    return Path(root)


def make_pets(root: Path, per_class: int = 3, test_per_class: int = 2) -> Path:
    base = Path(root) / "oxford-iiit-pet"
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    for split, k in (("trainval", per_class), ("test", test_per_class)):
        lines = []
        for c, breed in enumerate(PET_BREEDS):
            species = 1 if breed[0].isupper() else 2
            for j in range(k):
                image_id = f"{breed}_{j + (100 if split == 'test' else 1)}"
                _save(base / "images" / f"{image_id}.jpg", _img((30, 34, 3)), "JPEG")
                lines.append(f"{image_id} {c + 1} {species} {j + 1}")
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return Path(root)


def make_rendered_sst2(root: Path, per_class: int = 3) -> Path:
    for split in ("train", "valid", "test"):
        for cls in ("negative", "positive"):
            for k in range(per_class):
                _save(Path(root) / "rendered-sst2" / split / cls / f"{k}.png", _img((20, 20, 3)), "PNG")
    return Path(root)


MAKERS = {"mnist": (make_mnist, make_usps, make_svhn), "cifar10": (make_cifar10, make_stl10, make_cifar10_1),
          "eurosat_fs": (make_eurosat,), "gtsrb": (make_gtsrb,), "dtd": (make_dtd,),
          "flowers102": (make_flowers102,), "pets": (make_pets,), "rendered_sst2": (make_rendered_sst2,)}
TASKS = list(MAKERS)


def make_all(root: Path) -> Path:
    for fns in MAKERS.values():
        for fn in fns:
            fn(root)
    return Path(root)


def profile(root: Path, **data) -> dict:
    """A profile dict like params/profiles/colab.yaml's on ``root`` (small shots for the fixtures)."""
    cfg = {"source": "real", "root": str(root), "download": False, "shots": 2, "seed": 0,
           "val_fraction": 0.2, "max_test_per_domain": None, "tasks": list(TASKS)}
    cfg.update(data)
    return {"name": "test-colab", "data": cfg}


def tar_gz(files: dict[str, bytes]) -> bytes:
    """A .tar.gz holding ``files`` ({member name: bytes})."""
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, blob in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return buf.getvalue()
