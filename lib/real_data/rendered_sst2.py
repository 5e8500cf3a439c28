"""Rendered SST2 (movie-review sentences rendered as images; 2 classes, ID only; the ``colab`` profile).

OpenAI's dataset from the CLIP paper, torchvision's layout (``torchvision.datasets.RenderedSST2``):
``rendered-sst2/{train,valid,test}/{negative,positive}/*.png``. Class names are torchvision's
(``negative``, ``positive``: CLIP_benchmark takes them from the dataset), the template
CLIP_benchmark's ``renderedsst2``.
"""
from __future__ import annotations

import numpy as np

from .common import _list_images, _malformed
from .fetch import Resource
from .fewshot import FewShotTask, Pool

BASE = "rendered-sst2"
FOLDERS = {"train": "train", "val": "valid", "test": "test"}
RESOURCES = (
    Resource(key="rendered-sst2", dataset="Rendered SST2",
             urls=("https://openaipublic.azureedge.net/clip/data/rendered-sst2.tgz",),
             path="rendered-sst2.tgz", md5="2384d08e9dcfa4bd55b324e610496ee5",
             checksum_from="torchvision.datasets.RenderedSST2._MD5", extract_to=".",
             produces=tuple(f"{BASE}/{s}/{c}" for s in ("train", "valid", "test") for c in ("negative", "positive")),
             size_mb=125.0),
)


class RenderedSST2Task(FewShotTask):
    name = "rendered_sst2"
    kind = "sentiment of rendered text (Rendered SST2)"
    id_domain = "rendered_sst2"
    cb_key = "renderedsst2"
    CLASSES = ("negative", "positive")
    official_val = True
    resources = RESOURCES
    SIZES = {("rendered_sst2", "train"): 6920, ("rendered_sst2", "val"): 872, ("rendered_sst2", "test"): 1821}
    host_note = "openaipublic.azureedge.net (OpenAI's CLIP data)"

    def pool(self, src, domain, split):
        items, labels = [], []
        for c, cls in enumerate(self.CLASSES):
            folder = src.root / BASE / FOLDERS[split] / cls
            if not folder.is_dir():
                raise _malformed(self, src.root / BASE, f"folder {FOLDERS[split]}/{cls} is missing")
            names = [n for n in _list_images(folder) if n.lower().endswith(".png")]
            items += [f"{BASE}/{FOLDERS[split]}/{cls}/{n}" for n in names]
            labels += [c] * len(names)
        return Pool(items, np.asarray(labels, dtype=np.int64))
