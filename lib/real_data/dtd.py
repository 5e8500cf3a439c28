"""DTD, the Describable Textures Dataset (47 classes, ID only; the ``colab`` profile).

torchvision's layout (``torchvision.datasets.DTD``, partition 1): ``dtd/dtd/images/<class>/*.jpg``
and ``dtd/dtd/labels/{train1,val1,test1}.txt`` (lines ``<class>/<file>.jpg``; 40 images per class in
each). Class index = position in the sorted class names (as torchvision's ``DTD.classes``, which
CLIP_benchmark uses as the class names; held in :data:`DTD_CLASSES` and checked against the label
files). Templates: CLIP_benchmark's ``dtd`` (8).
"""
from __future__ import annotations

import numpy as np

from .common import _malformed
from .fetch import Resource
from .fewshot import FewShotTask, Pool

DTD_CLASSES = (
    "banded", "blotchy", "braided", "bubbly", "bumpy", "chequered", "cobwebbed", "cracked", "crosshatched",
    "crystalline", "dotted", "fibrous", "flecked", "freckled", "frilly", "gauzy", "grid", "grooved",
    "honeycombed", "interlaced", "knitted", "lacelike", "lined", "marbled", "matted", "meshed", "paisley",
    "perforated", "pitted", "pleated", "polka-dotted", "porous", "potholed", "scaly", "smeared", "spiralled",
    "sprinkled", "stained", "stratified", "striped", "studded", "swirly", "veined", "waffled", "woven",
    "wrinkled", "zigzagged")
DATA = "dtd/dtd"
RESOURCES = (
    Resource(key="dtd", dataset="DTD", urls=("https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",),
             path="dtd/dtd-r1.0.1.tar.gz", md5="fff73e5086ae6bdbea199a49dfb8a4c1",
             checksum_from="torchvision.datasets.DTD._MD5", extract_to="dtd",
             produces=(f"{DATA}/images", f"{DATA}/labels/train1.txt", f"{DATA}/labels/val1.txt",
                       f"{DATA}/labels/test1.txt"), size_mb=596.0),
)


class DTDTask(FewShotTask):
    name = "dtd"
    kind = "textures (DTD)"
    id_domain = "dtd"
    cb_key = "dtd"
    CLASSES = DTD_CLASSES
    official_val = True
    resources = RESOURCES
    SIZES = {("dtd", "train"): 1880, ("dtd", "val"): 1880, ("dtd", "test"): 1880}
    host_note = "robots.ox.ac.uk (VGG)"

    def pool(self, src, domain, split):
        listing = src.root / DATA / "labels" / f"{split}1.txt"
        lines = [ln.strip() for ln in listing.read_text().splitlines() if ln.strip()]
        pos = {c: i for i, c in enumerate(DTD_CLASSES)}
        items, labels = [], []
        for ln in lines:
            cls, _, name = ln.partition("/")
            if cls not in pos or not name:
                raise _malformed(self, listing, f"line {ln!r} is not <one of the 47 classes>/<file>")
            items.append(f"{DATA}/images/{cls}/{name}")
            labels.append(pos[cls])
        if sorted(set(labels)) != list(range(len(DTD_CLASSES))):
            raise _malformed(self, listing, f"{len(set(labels))} classes listed, expected {len(DTD_CLASSES)}")
        return Pool(items, np.asarray(labels, dtype=np.int64))
