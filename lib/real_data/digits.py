"""MNIST (ID) with two natural shifts of the same ten digits: USPS and SVHN (the ``colab`` profile).

Layouts are torchvision's downloads under the data root:

* MNIST: ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (the ``.gz`` files beside them),
  read with torchvision's own idx readers; labels 0-9.
* USPS: ``usps.bz2`` (train) and ``usps.t.bz2`` (test, 2,007 images) in the root, LIBSVM text lines
  ``label 1:v 2:v ... 256:v`` with v in [-1, 1] and labels 1-10; read as torchvision's ``USPS``
  does: 16x16 pixels ``uint8((v + 1) / 2 * 255)``, label - 1 (so digit d has label d).
* SVHN: ``test_32x32.mat`` in the root (``X``: 32x32x3xN, ``y``: 1-10 where 10 is the digit 0);
  torchvision's ``SVHN`` maps 10 to 0 and so does this loader.

Class names and the template are CLIP_benchmark's ``mnist`` entries (``0``..``9``,
``a photo of the number: "{}".``); the shifted domains use the MNIST task's prompts (one head per
task). Only the test splits of USPS and SVHN are used (shifted domains are test-only).
"""
from __future__ import annotations

import bz2

import numpy as np
from scipy.io import loadmat

from .common import _malformed
from .fetch import Resource
from .fewshot import PNG_DIR, FewShotTask, Pool

TV = "torchvision.datasets.{}"
MNIST_RAW = "MNIST/raw"
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
MNIST_FILES = {  # torchvision.datasets.MNIST.resources
    "train-images-idx3-ubyte": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", 9.9),
    "train-labels-idx1-ubyte": ("d53e105ee54ea40749a09fcbcd1e9432", 0.03),
    "t10k-images-idx3-ubyte": ("9fb629c4189551a2d022fa330f9573f3", 1.6),
    "t10k-labels-idx1-ubyte": ("ec29112dd5afa0611ce80d1b7f02629c", 0.01),
}
USPS_URL = "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/"


def _mnist(name: str, md5: str, mb: float) -> Resource:
    return Resource(key=f"mnist-{name}", dataset="MNIST", urls=tuple(m + name + ".gz" for m in MNIST_MIRRORS),
                    path=f"{MNIST_RAW}/{name}.gz", md5=md5, checksum_from=TV.format("MNIST.resources"),
                    extract_to=MNIST_RAW, produces=(f"{MNIST_RAW}/{name}",), size_mb=mb)


RESOURCES = tuple(_mnist(n, md5, mb) for n, (md5, mb) in MNIST_FILES.items()) + (
    Resource(key="usps-test", dataset="USPS", urls=(USPS_URL + "usps.t.bz2",), path="usps.t.bz2",
             md5="8ea070ee2aca1ac39742fdd1ef5ed118", checksum_from=TV.format("USPS.split_list"),
             produces=("usps.t.bz2",), size_mb=1.8),
    Resource(key="svhn-test", dataset="SVHN", urls=("http://ufldl.stanford.edu/housenumbers/test_32x32.mat",),
             path="test_32x32.mat", md5="eb5a983be6a315427106f1b164d9cef3",
             checksum_from=TV.format("SVHN.split_list"), produces=("test_32x32.mat",), size_mb=64.3),
)


def read_usps(path) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 16, 16) uint8, labels 0-9) of a USPS LIBSVM ``.bz2`` file, as torchvision reads it."""
    with bz2.open(path) as fp:
        raw = [line.decode().split() for line in fp.readlines()]
    values = [[x.split(":")[-1] for x in row[1:]] for row in raw]
    imgs = np.asarray(values, dtype=np.float32).reshape((-1, 16, 16))
    imgs = ((imgs + 1) / 2 * 255).astype(dtype=np.uint8)
    return imgs, np.asarray([int(row[0]) - 1 for row in raw], dtype=np.int64)


def read_svhn(path) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 32, 32, 3) uint8, labels 0-9) of an SVHN ``*_32x32.mat`` (label 10 is the digit 0)."""
    mat = loadmat(str(path))
    labels = mat["y"].astype(np.int64).squeeze()
    np.place(labels, labels == 10, 0)
    return np.ascontiguousarray(np.transpose(mat["X"], (3, 0, 1, 2))), labels


class MNISTTask(FewShotTask):
    name = "mnist"
    kind = "handwritten digits (MNIST); shifts: USPS digits, SVHN house numbers"
    id_domain = "mnist"
    ood_domains = ("usps", "svhn")
    cb_key = "mnist"
    resources = RESOURCES
    SIZES = {("mnist", "train"): 60000, ("mnist", "test"): 10000, ("usps", "test"): 2007, ("svhn", "test"): 26032}
    host_note = ("MNIST: PyTorch's S3 mirror (ossci-datasets), then yann.lecun.com; USPS: csie.ntu.edu.tw "
                 "(LIBSVM); SVHN: ufldl.stanford.edu")

    def _labels(self, src, domain: str, split: str) -> np.ndarray:
        """The labels only (an index does not read the images; :meth:`_images` reads them when a PNG
        has to be written)."""
        key = ("labels", self.name, domain, split)
        if key not in src._cache:
            root = src.root
            if domain == "mnist":
                from torchvision.datasets.mnist import read_label_file  # start-up: torchvision 1.6-1.8 s; grid --make loads lib.real_data without it
                stem = "train" if split == "train" else "t10k"
                try:
                    y = read_label_file(str(root / MNIST_RAW / f"{stem}-labels-idx1-ubyte")).numpy()
                except (TypeError, ValueError, KeyError) as exc:
                    raise _malformed(self, root / MNIST_RAW, f"not an MNIST idx label file ({exc})") from exc
            elif domain == "usps":
                y = self._images(src, domain, split, with_labels=True)[1]
            else:
                y = loadmat(str(root / "test_32x32.mat"), variable_names=["y"])["y"].astype(np.int64).squeeze()
                np.place(y, y == 10, 0)
            y = np.asarray(y, dtype=np.int64)
            if len(y) and (y.min() < 0 or y.max() > 9):
                raise _malformed(self, root, f"{domain}/{split}: labels outside 0-9")
            src._cache[key] = y
        return src._cache[key]

    def _images(self, src, domain: str, split: str, with_labels: bool = False):
        root = src.root
        if domain == "mnist":
            from torchvision.datasets.mnist import read_image_file  # start-up: torchvision 1.6-1.8 s; grid --make loads lib.real_data without it
            stem = "train" if split == "train" else "t10k"
            try:
                x = read_image_file(str(root / MNIST_RAW / f"{stem}-images-idx3-ubyte")).numpy()
            except (TypeError, ValueError, KeyError) as exc:
                raise _malformed(self, root / MNIST_RAW, f"not an MNIST idx image file ({exc})") from exc
            y = None
        elif domain == "usps":
            x, y = read_usps(root / "usps.t.bz2")
        else:
            x, y = read_svhn(root / "test_32x32.mat")
        if with_labels:
            return x, y
        n = len(self._labels(src, domain, split))
        if len(x) != n:
            raise _malformed(self, root, f"{domain}/{split}: {len(x)} images but {n} labels")
        return x

    def pool(self, src, domain, split):
        y = self._labels(src, domain, split)
        return Pool(items=list(range(len(y))), labels=y, png=f"{PNG_DIR}/{domain}/{split}",
                    images=lambda: self._images(src, domain, split))
