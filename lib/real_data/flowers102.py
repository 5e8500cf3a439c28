"""Oxford Flowers-102 (102 classes, ID only; the ``colab`` profile).

torchvision's layout (``torchvision.datasets.Flowers102``): ``flowers-102/jpg/image_<id:05d>.jpg``,
``flowers-102/imagelabels.mat`` (``labels``: 1-102 per image id) and ``flowers-102/setid.mat``
(``trnid``, ``valid``, ``tstid``: the official splits, 10 + 10 images per class and 6,149 test).
Class names and the template: CLIP_benchmark's ``flowers``.
"""
from __future__ import annotations

import numpy as np
from scipy.io import loadmat

from .common import _malformed
from .fetch import Resource
from .fewshot import FewShotTask, Pool

BASE = "flowers-102"
URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"
FROM = "torchvision.datasets.Flowers102._file_dict"
RESOURCES = (
    Resource(key="flowers102-images", dataset="Flowers-102", urls=(URL + "102flowers.tgz",),
             path=f"{BASE}/102flowers.tgz", md5="52808999861908f626f3c1f4e79d11fa", checksum_from=FROM,
             extract_to=BASE, produces=(f"{BASE}/jpg",),
             size_mb=328.9),
    Resource(key="flowers102-labels", dataset="Flowers-102", urls=(URL + "imagelabels.mat",),
             path=f"{BASE}/imagelabels.mat", md5="e0620be6f572b9609742df49c70aed4d", checksum_from=FROM,
             produces=(f"{BASE}/imagelabels.mat",), size_mb=0.01),
    Resource(key="flowers102-setid", dataset="Flowers-102", urls=(URL + "setid.mat",),
             path=f"{BASE}/setid.mat", md5="a5357ecc9cb78c4bef273ce3793fc85c", checksum_from=FROM,
             produces=(f"{BASE}/setid.mat",), size_mb=0.02),
)
SETS = {"train": "trnid", "val": "valid", "test": "tstid"}


class Flowers102Task(FewShotTask):
    name = "flowers102"
    kind = "flower species (Oxford Flowers-102)"
    id_domain = "flowers102"
    cb_key = "flowers"
    official_val = True
    resources = RESOURCES
    SIZES = {("flowers102", "train"): 1020, ("flowers102", "val"): 1020, ("flowers102", "test"): 6149}
    host_note = "robots.ox.ac.uk (VGG)"

    def pool(self, src, domain, split):
        base = src.root / BASE
        try:
            ids = np.asarray(loadmat(str(base / "setid.mat"), squeeze_me=True)[SETS[split]]).reshape(-1)
            labels = np.asarray(loadmat(str(base / "imagelabels.mat"), squeeze_me=True)["labels"]).reshape(-1)
        except (KeyError, ValueError, OSError) as exc:
            raise _malformed(self, base, f"setid.mat / imagelabels.mat unreadable ({exc})") from exc
        y = labels[ids - 1].astype(np.int64) - 1
        if y.min() < 0 or y.max() > 101:
            raise _malformed(self, base / "imagelabels.mat", "labels outside 1..102")
        return Pool([f"{BASE}/jpg/image_{int(i):05d}.jpg" for i in ids], y)
