"""GTSRB, the German Traffic Sign Recognition Benchmark (43 classes, ID only; the ``colab`` profile).

torchvision's layout under the data root (``torchvision.datasets.GTSRB``):
``gtsrb/GTSRB/Training/<00000..00042>/*.ppm`` (train; the folder is the class index) and
``gtsrb/GTSRB/Final_Test/Images/*.ppm`` with the labels in ``gtsrb/GT-final_test.csv`` (``;``-separated,
columns ``Filename`` and ``ClassId``). Class names and the 3 templates: CLIP_benchmark's ``gtsrb``.
"""
from __future__ import annotations

import csv

import numpy as np

from .common import _malformed, _subdirs
from .fetch import Resource
from .fewshot import FewShotTask, Pool

BASE = "gtsrb"
URL = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"
FROM = "torchvision.datasets.GTSRB.download"
RESOURCES = (
    Resource(key="gtsrb-train", dataset="GTSRB", urls=(URL + "GTSRB-Training_fixed.zip",),
             path=f"{BASE}/GTSRB-Training_fixed.zip", md5="513f3c79a4c5141765e10e952eaa2478", checksum_from=FROM,
             extract_to=BASE, produces=(f"{BASE}/GTSRB/Training/00000", f"{BASE}/GTSRB/Training/00042"),
             size_mb=187.0),
    Resource(key="gtsrb-test", dataset="GTSRB", urls=(URL + "GTSRB_Final_Test_Images.zip",),
             path=f"{BASE}/GTSRB_Final_Test_Images.zip", md5="c7e4e6327067d32654124b0fe9e82185", checksum_from=FROM,
             extract_to=BASE, produces=(f"{BASE}/GTSRB/Final_Test/Images",), size_mb=84.9),
    Resource(key="gtsrb-test-gt", dataset="GTSRB", urls=(URL + "GTSRB_Final_Test_GT.zip",),
             path=f"{BASE}/GTSRB_Final_Test_GT.zip", md5="fe31e9c9270bbcd7b84b7f21a9d9d9e5", checksum_from=FROM,
             extract_to=BASE, produces=(f"{BASE}/GT-final_test.csv",), size_mb=0.1),
)


class GTSRBTask(FewShotTask):
    name = "gtsrb"
    kind = "traffic signs (GTSRB)"
    id_domain = "gtsrb"
    cb_key = "gtsrb"
    resources = RESOURCES
    SIZES = {("gtsrb", "train"): 26640, ("gtsrb", "test"): 12630}
    host_note = "sid.erda.dk (the GTSRB archive torchvision uses)"

    def pool(self, src, domain, split):
        root = src.root
        if split == "train":
            base = root / BASE / "GTSRB" / "Training"
            folders = _subdirs(base)
            if folders != [f"{c:05d}" for c in range(43)]:
                raise _malformed(self, base, f"{len(folders)} class folders, expected 00000..00042")
            items, labels = [], []
            for c, folder in enumerate(folders):
                names = sorted(n for n in (base / folder).iterdir() if n.suffix.lower() == ".ppm")
                items += [f"{BASE}/GTSRB/Training/{folder}/{n.name}" for n in names]
                labels += [c] * len(names)
            return Pool(items, np.asarray(labels, dtype=np.int64))
        gt = root / BASE / "GT-final_test.csv"
        with open(gt, newline="") as f:
            rows = list(csv.DictReader(f, delimiter=";", skipinitialspace=True))
        if not rows or "Filename" not in rows[0] or "ClassId" not in rows[0]:
            raise _malformed(self, gt, "no Filename / ClassId columns")
        items = [f"{BASE}/GTSRB/Final_Test/Images/{r['Filename']}" for r in rows]
        labels = np.asarray([int(r["ClassId"]) for r in rows], dtype=np.int64)
        if labels.min() < 0 or labels.max() > 42:
            raise _malformed(self, gt, "ClassId outside 0..42")
        return Pool(items, labels)
