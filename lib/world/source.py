"""The embedded world as a data source: :class:`EmbeddedSource` reads the generated, verified
arrays of build/<profile>/world/; registered as ``"embedded"`` (lib.splits.register_source)."""
from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from .. import paths
from ..config import ConfigError
from ..splits import DatasetSource, Split, register_source
from .design import check_design
from .generation import WorldNotReady, _fix, read_manifest, verify_file, verify_world
from .variants import TASKS


# ============================================================================ data source
class EmbeddedSource(DatasetSource):
    def __init__(self, profile_cfg: dict):
        self.cfg = profile_cfg
        self.wcfg = profile_cfg["world"]
        self.dir = paths.world_dir(profile_cfg["name"])
        check_design(self.wcfg)

    def tasks(self):
        return {t: TASKS[t].spec() for t in self.wcfg["tasks"]}

    def check(self):
        """Cheap: the manifest is current and every file has its recorded size (readers hash each file)."""
        verify_world(self.cfg, deep=False)

    @lru_cache(maxsize=64)
    def _arrays(self, task, domain, split):
        name = f"{task}__{domain}__{split}.npz"
        m = read_manifest(self.dir, self.wcfg, self.cfg["name"])
        if name not in m["files"]:
            raise WorldNotReady(f"{self.dir / name} is not part of the generated world: {_fix(self.cfg['name'])}")
        z = verify_file(self.dir / name, m["files"][name], self.cfg["name"])
        return z["images"], z["labels"]

    def load(self, task, domain, split):
        spec = self.task(task)
        if domain not in spec.domains:
            raise ConfigError(f"task {task!r} has no domain {domain!r}; valid: {', '.join(spec.domains)}")
        if split in ("train", "val"):
            if domain != spec.id_domain:
                raise ConfigError(f"only the ID domain {spec.id_domain!r} of {task!r} has a {split} split")
            imgs, labels = self._arrays(task, domain, "train")
            n_val = int(self.wcfg["sizes"]["val"])
            idx = np.arange(len(labels))
            idx = idx[:-n_val] if split == "train" else idx[-n_val:]
            imgs, labels = imgs[idx], labels[idx]
        elif split == "test":
            imgs, labels = self._arrays(task, domain, "test")
        else:
            raise ConfigError(f"unknown split {split!r}; valid: train, val, test")
        fp = hashlib.sha256(imgs.tobytes() + labels.tobytes()).hexdigest()[:16]
        return Split(task, domain, split, labels, spec.classnames, spec.templates, images=imgs,
                     fingerprint=fp, meta={"source": "embedded"})


@register_source("embedded")
def _make(profile_cfg):
    return EmbeddedSource(profile_cfg)
