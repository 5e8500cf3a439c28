"""Oxford-IIIT Pet (37 breeds, ID only; the ``colab`` profile).

torchvision's layout (``torchvision.datasets.OxfordIIITPet``): ``oxford-iiit-pet/images/<id>.jpg`` and
``oxford-iiit-pet/annotations/{trainval,test}.txt`` (lines ``<id> <class 1-37> <species> <breed>``).
Class names and the template: CLIP_benchmark's ``pets`` (in class-id order).
"""
from __future__ import annotations

import numpy as np

from .common import _malformed
from .fetch import Resource
from .fewshot import FewShotTask, Pool

BASE = "oxford-iiit-pet"
FROM = "torchvision.datasets.OxfordIIITPet._RESOURCES"
RESOURCES = (
    Resource(key="pets-images", dataset="Oxford-IIIT Pet",
             urls=("https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",),
             path=f"{BASE}/images.tar.gz", md5="5c4f3ee8e5d25df40f4fd59a7f44e54c", checksum_from=FROM,
             extract_to=BASE, produces=(f"{BASE}/images",), size_mb=755.0),
    Resource(key="pets-annotations", dataset="Oxford-IIIT Pet",
             urls=("https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz",),
             path=f"{BASE}/annotations.tar.gz", md5="95a8c909bbe2e81eed6a22bccdf3f68f", checksum_from=FROM,
             extract_to=BASE, produces=(f"{BASE}/annotations/trainval.txt", f"{BASE}/annotations/test.txt"),
             size_mb=18.3),
)


class PetsTask(FewShotTask):
    name = "pets"
    kind = "pet breeds (Oxford-IIIT Pet)"
    id_domain = "pets"
    cb_key = "pets"
    resources = RESOURCES
    SIZES = {("pets", "train"): 3680, ("pets", "test"): 3669}
    host_note = "robots.ox.ac.uk (VGG)"

    def pool(self, src, domain, split):
        listing = src.root / BASE / "annotations" / ("trainval.txt" if split == "train" else "test.txt")
        items, labels = [], []
        for ln in listing.read_text().splitlines():
            if not ln.strip() or ln.startswith("#"):
                continue
            parts = ln.split()
            if len(parts) != 4 or not parts[1].isdigit():
                raise _malformed(self, listing, f"line {ln!r} is not '<id> <class> <species> <breed>'")
            items.append(f"{BASE}/images/{parts[0]}.jpg")
            labels.append(int(parts[1]) - 1)
        y = np.asarray(labels, dtype=np.int64)
        if len(y) == 0 or y.min() < 0 or y.max() > 36:
            raise _malformed(self, listing, "no rows, or classes outside 1..37")
        return Pool(items, y)
