"""CIFAR-10 (ID) with two natural shifts: STL-10 (9 shared classes) and CIFAR-10.1 (the ``colab`` profile).

Layouts under the data root:

* CIFAR-10 (torchvision's download): ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``,
  Python pickles (``data``: N x 3072 uint8, channel-major 32x32; ``labels``; ``batches.meta``'s
  ``label_names`` are the class names CLIP_benchmark uses, checked against :data:`CIFAR10_CLASSES`).
* STL-10 (torchvision's archive, only its test files unpacked): ``stl10_binary/{test_X.bin,
  test_y.bin,class_names.txt}``; ``test_X.bin`` is N x 3 x 96 x 96 uint8 stored column-major (read
  as torchvision's ``STL10`` does), labels 1-10. STL-10 has ``monkey`` where CIFAR-10 has ``frog``,
  and ``car`` for CIFAR's ``automobile``: the STL-10 domain holds the 7,200 test images of the nine
  shared classes, labelled in CIFAR-10's label space (``car`` -> ``automobile``; no monkey images;
  the head keeps CIFAR-10's ten classes, so ``frog`` is a possible wrong answer with no images of
  its own). The archive (2.6 GB, most of it unlabeled images) is deleted once the test files are out.
* CIFAR-10.1 v6 (Recht et al. 2018; 2,000 new test images of the CIFAR-10 classes, labels in
  CIFAR-10's order): ``cifar10.1/cifar10.1_v6_{data,labels}.npy`` from the dataset's GitHub
  repository at a fixed commit; torchvision has no class for it, so the checksums are the git blob
  SHA-1s that repository's tree records for the two files (a content hash git itself verifies).

Templates: CLIP_benchmark's ``cifar10`` (18); the shifted domains use the CIFAR-10 head.
"""
from __future__ import annotations

import pickle

import numpy as np

from .common import _malformed
from .fetch import Resource
from .fewshot import PNG_DIR, FewShotTask, Pool

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
STL10_TO_CIFAR = {"car": "automobile"}     # the same class under another name; monkey has no CIFAR class
CIFAR_DIR = "cifar-10-batches-py"
STL_DIR = "stl10_binary"
C101_DIR = "cifar10.1"
C101_COMMIT = "d9982abb0bfc4846b8d13a11e66b887d946205d0"   # modestyachts/CIFAR-10.1, "Update to numpy format version 2.0"
C101_URL = f"https://raw.githubusercontent.com/modestyachts/CIFAR-10.1/{C101_COMMIT}/datasets/"
C101_FROM = f"git blob SHA-1 in github.com/modestyachts/CIFAR-10.1 at {C101_COMMIT[:7]}"

RESOURCES = (
    Resource(key="cifar10", dataset="CIFAR-10", urls=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
             path="cifar-10-python.tar.gz", md5="c58f30108f718f92721af3b95e74349a",
             checksum_from="torchvision.datasets.CIFAR10.tgz_md5", extract_to=".",
             produces=tuple(f"{CIFAR_DIR}/{f}" for f in ("data_batch_1", "data_batch_2", "data_batch_3",
                                                         "data_batch_4", "data_batch_5", "test_batch",
                                                         "batches.meta")), size_mb=162.6),
    Resource(key="stl10-test", dataset="STL-10", urls=("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",),
             path="stl10_binary.tar.gz", md5="91f7769df0f17e558f3565bffb0c7dfb",
             checksum_from="torchvision.datasets.STL10.tgz_md5", extract_to=".",
             members=tuple(f"{STL_DIR}/{f}" for f in ("test_X.bin", "test_y.bin", "class_names.txt")),
             produces=tuple(f"{STL_DIR}/{f}" for f in ("test_X.bin", "test_y.bin", "class_names.txt")),
             size_mb=2518.0, keep_archive=False,
             note="only the test files are unpacked; the archive is deleted afterwards"),
    Resource(key="cifar10.1-v6-data", dataset="CIFAR-10.1", urls=(C101_URL + "cifar10.1_v6_data.npy",),
             path=f"{C101_DIR}/cifar10.1_v6_data.npy", git_blob_sha1="24349cc5f3fb59648d75cd8015b5a184b1f5c250",
             checksum_from=C101_FROM, produces=(f"{C101_DIR}/cifar10.1_v6_data.npy",), size_mb=5.9),
    Resource(key="cifar10.1-v6-labels", dataset="CIFAR-10.1", urls=(C101_URL + "cifar10.1_v6_labels.npy",),
             path=f"{C101_DIR}/cifar10.1_v6_labels.npy", git_blob_sha1="e713b09cecf2ecd933970001909fcdec7c907ab0",
             checksum_from=C101_FROM, produces=(f"{C101_DIR}/cifar10.1_v6_labels.npy",), size_mb=0.01),
)


def read_cifar_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 32, 32, 3) uint8, labels) of one CIFAR-10 python batch, as torchvision reads it."""
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    labels = entry["labels"] if "labels" in entry else entry["fine_labels"]
    x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), np.asarray(labels, dtype=np.int64)


def read_cifar_names(path) -> list[str]:
    with open(path, "rb") as f:
        return list(pickle.load(f, encoding="latin1")["label_names"])


def read_stl10(folder) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 96, 96, 3) uint8, labels 0-9 in STL-10's order) of ``test_X.bin`` / ``test_y.bin``."""
    y = np.fromfile(folder / "test_y.bin", dtype=np.uint8).astype(np.int64) - 1
    x = np.fromfile(folder / "test_X.bin", dtype=np.uint8).reshape(-1, 3, 96, 96)
    x = np.transpose(x, (0, 3, 2, 1))   # torchvision: (0, 1, 3, 2) to CHW, then CHW -> HWC
    return np.ascontiguousarray(x), y


class CIFAR10Task(FewShotTask):
    name = "cifar10"
    kind = "objects (CIFAR-10); shifts: STL-10 (9 shared classes), CIFAR-10.1"
    id_domain = "cifar10"
    ood_domains = ("stl10", "cifar10_1")
    cb_key = "cifar10"
    CLASSES = CIFAR10_CLASSES
    resources = RESOURCES
    SIZES = {("cifar10", "train"): 50000, ("cifar10", "test"): 10000, ("stl10", "test"): 7200,
             ("cifar10_1", "test"): 2000}
    host_note = ("CIFAR-10: cs.toronto.edu; STL-10: ai.stanford.edu (2.5 GB archive, the slowest download); "
                 "CIFAR-10.1: raw.githubusercontent.com at a fixed commit")

    def _read(self, src, domain: str, split: str, images: bool):
        """(images or None, labels) of one official split; STL-10 and CIFAR-10.1 keep their labels in
        their own files, so an index reads no images there."""
        root = src.root
        x = None
        if domain == "cifar10":
            names = read_cifar_names(root / CIFAR_DIR / "batches.meta")
            if tuple(names) != CIFAR10_CLASSES:
                raise _malformed(self, root / CIFAR_DIR / "batches.meta", f"label_names {names}, expected "
                                                                          f"{list(CIFAR10_CLASSES)}")
            files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
            parts = [read_cifar_batch(root / CIFAR_DIR / f) for f in files]
            x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        elif domain == "stl10":
            folder = root / STL_DIR
            names = (folder / "class_names.txt").read_text().split()
            if tuple(names) != STL10_CLASSES:
                raise _malformed(self, folder / "class_names.txt", f"class names {names}, expected "
                                                                   f"{list(STL10_CLASSES)}")
            y_stl = np.fromfile(folder / "test_y.bin", dtype=np.uint8).astype(np.int64) - 1
            if len(y_stl) and (y_stl.min() < 0 or y_stl.max() > 9):
                raise _malformed(self, folder / "test_y.bin", "labels outside 1-10")
            to_cifar = np.asarray([CIFAR10_CLASSES.index(STL10_TO_CIFAR.get(n, n)) if
                                   STL10_TO_CIFAR.get(n, n) in CIFAR10_CLASSES else -1 for n in names])
            y = to_cifar[y_stl]
            shared = np.flatnonzero(y >= 0)      # drop the monkeys
            y = y[shared]
            if images:
                x_all, _ = read_stl10(folder)
                if len(x_all) != len(y_stl):
                    raise _malformed(self, folder, f"{len(x_all)} images, {len(y_stl)} labels")
                x = x_all[shared]
        else:
            y = np.load(root / C101_DIR / "cifar10.1_v6_labels.npy").astype(np.int64)
            if images:
                x = np.load(root / C101_DIR / "cifar10.1_v6_data.npy")
                if x.ndim != 4 or x.shape[1:] != (32, 32, 3) or len(x) != len(y):
                    raise _malformed(self, root / C101_DIR, f"data {x.shape}, labels {y.shape}; expected "
                                                            f"(N, 32, 32, 3) and (N,)")
        if len(y) and (y.min() < 0 or y.max() > 9):
            raise _malformed(self, root, f"{domain}: labels outside 0-9")
        return (None if x is None else np.asarray(x, dtype=np.uint8)), y

    def pool(self, src, domain, split):
        _, y = self._read(src, domain, split, images=False)
        return Pool(items=list(range(len(y))), labels=y, png=f"{PNG_DIR}/{domain}/{split}",
                    images=lambda: self._read(src, domain, split, images=True)[0])

    def domain_meta(self, domain):
        if domain == "stl10":
            return {"class_map": "STL-10 test images of the 9 classes CIFAR-10 shares (car -> automobile, "
                                 "monkey dropped), labelled in CIFAR-10's 10-class space"}
        return {}
