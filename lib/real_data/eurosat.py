"""EuroSAT RGB (satellite land cover, ID only) as a real task."""
from __future__ import annotations

import numpy as np

from .common import RealTask, _check_class_dirs, _list_images, _require_dir, _seed_of


# ----------------------------------------------------------------------------- EuroSAT
class EuroSATTask(RealTask):
    name = "eurosat"
    kind = "satellite land cover (EuroSAT RGB)"
    id_domain = "eurosat"
    ood_domains = ()
    FOLDER = "eurosat/2750"
    TEST_FRACTION = 0.3
    CLASSES = {  # folder -> readable name (CLIP's EuroSAT class names)
        "AnnualCrop": "annual crop land", "Forest": "forest",
        "HerbaceousVegetation": "brushland or shrubland", "Highway": "highway or road",
        "Industrial": "industrial buildings or commercial buildings",
        "Pasture": "pasture land", "PermanentCrop": "permanent crop land",
        "Residential": "residential buildings or homes or apartments", "River": "river",
        "SeaLake": "lake or sea"}
    templates = ("a centered satellite photo of {}.", "a centered satellite photo of a {}.",
                 "a centered satellite photo of the {}.")
    layout = """\
  eurosat/2750/<ClassName>/*.jpg   10 folders: AnnualCrop Forest HerbaceousVegetation Highway
                                   Industrial Pasture PermanentCrop Residential River SeaLake"""
    how_to_get = ("set data.download: true (uses torchvision.datasets.EuroSAT(root, "
                  "download=True)) or download EuroSAT.zip (RGB) from "
                  "https://github.com/phelber/EuroSAT and unzip it into <root>/eurosat/ "
                  "(it unpacks to 2750/).")

    def classnames(self):
        return list(self.CLASSES.values())

    def present(self, src):
        return (src.root / self.FOLDER).is_dir()

    def fetch(self, src):
        from torchvision.datasets import EuroSAT  # start-up: torchvision 1.6-1.8 s; grid --make loads lib.real_data without it
        EuroSAT(root=str(src.root), download=True)

    def check(self, src):
        _check_class_dirs(self, src.root / self.FOLDER, src.root, list(self.CLASSES),
                          "EuroSAT class folders")

    def index(self, src, domain, split):
        key = ("listing", self.FOLDER)
        if key not in src._cache:
            base = _require_dir(self, src.root / self.FOLDER, src.root)
            src._cache[key] = [_list_images(base / c) for c in self.CLASSES]
        files, labels = [], []
        for y, (folder, names) in enumerate(zip(self.CLASSES, src._cache[key])):
            rng = np.random.default_rng(_seed_of(src.seed, "eurosat-split", y))
            perm = rng.permutation(len(names))
            n_test = int(round(len(names) * self.TEST_FRACTION))
            n_val = int(round(len(names) * src.val_fraction))
            part = {"test": perm[:n_test], "val": perm[n_test:n_test + n_val],
                    "train": perm[n_test + n_val:]}[split]
            picked = sorted(names[j] for j in part)
            files += [f"{self.FOLDER}/{folder}/{n}" for n in picked]
            labels += [y] * len(picked)
        rule = (f"per class, seeded: {self.TEST_FRACTION:.0%} test, {src.val_fraction:.0%} val, "
                f"rest train")
        return files, np.asarray(labels, dtype=np.int64), self.classnames(), {"rule": rule}
