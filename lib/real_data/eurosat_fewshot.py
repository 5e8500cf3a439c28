"""EuroSAT RGB with few-shot training (``eurosat_fs``, ID only; the ``colab`` profile).

The same images, layout (``eurosat/2750/<ClassName>/*.jpg``, torchvision's download) and test split
as the paper profile's ``eurosat`` task (:class:`lib.real_data.eurosat.EuroSATTask`: per class, a
seeded 30% test), so its zero-shot numbers are comparable; train and val are ``data.shots`` and
``val_shots`` images per class drawn from the other 70% (EuroSAT has no official split). Class names
and the 3 templates: CLIP_benchmark's ``eurosat`` (the names EuroSATTask already uses).
"""
from __future__ import annotations

import numpy as np

from .eurosat import EuroSATTask
from .fetch import Resource
from .fewshot import FewShotTask, Pool

RESOURCES = (
    Resource(key="eurosat", dataset="EuroSAT",
             urls=("https://huggingface.co/datasets/torchgeo/eurosat/resolve/"
                   "c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip",),
             path="eurosat/EuroSAT.zip", md5="c8fa014336c82ac7804f0398fcb19387",
             checksum_from="torchvision.datasets.EuroSAT.download", extract_to="eurosat",
             produces=tuple(f"eurosat/2750/{c}" for c in EuroSATTask.CLASSES), size_mb=89.9),
)


class EuroSATFewShotTask(FewShotTask):
    name = "eurosat_fs"
    kind = "satellite land cover (EuroSAT RGB), few-shot"
    id_domain = "eurosat_fs"
    cb_key = "eurosat"
    resources = RESOURCES
    SIZES = {("eurosat_fs", "train"): 18900, ("eurosat_fs", "test"): 8100}
    host_note = "huggingface.co (torchgeo/eurosat at a fixed revision: torchvision's URL)"
    _base = EuroSATTask()

    def pool(self, src, domain, split):
        # the paper task's split: its test is the test here, its train + val the train pool here
        parts = ("test",) if split == "test" else ("train", "val")
        items, labels = [], []
        for part in parts:
            f, y, _, _ = self._base.index(src, self._base.id_domain, part)
            items += f
            labels += list(y)
        order = np.argsort(items, kind="stable")
        return Pool([items[i] for i in order], np.asarray(labels, dtype=np.int64)[order])
