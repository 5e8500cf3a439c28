"""The real data source: :data:`TASKS` (the registry of real tasks, name -> task object),
:class:`RealSource` (the profile's ``data`` mapping, splits, checks) and :func:`make`, registered as
the data source ``"real"``."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..config import ConfigError, check_type
from ..splits import DatasetSource, Split, TaskSpec, register_source
from .cifar import CIFAR10Task
from .common import SPLITS, RealTask, _seed_of, fingerprint_files
from .digits import MNISTTask
from .dtd import DTDTask
from .eurosat import EuroSATTask
from .eurosat_fewshot import EuroSATFewShotTask
from .flowers102 import Flowers102Task
from .gtsrb import GTSRBTask
from .imagenet import ImageNetTask
from .pets import PetsTask
from .rendered_sst2 import RenderedSST2Task
from .wilds import Camelyon17Task, FMoWTask, IWildCamTask


# name -> task; adding a dataset = adding one entry here. The paper profile's tasks, then the tasks
# that download themselves (the colab profile: lib/real_data/fewshot.py, docs/colab.md).
TASKS: dict[str, RealTask] = {t.name: t for t in (
    ImageNetTask(), IWildCamTask(), FMoWTask(), Camelyon17Task(), EuroSATTask(),
    MNISTTask(), CIFAR10Task(), EuroSATFewShotTask(), GTSRBTask(), DTDTask(), Flowers102Task(), PetsTask(),
    RenderedSST2Task())}


# ============================================================================= source
class RealSource(DatasetSource):
    def __init__(self, profile_cfg: dict):
        d = dict(profile_cfg.get("data") or {})
        root = os.environ.get("CLIPMIS_DATA_ROOT") or d.get("root") or "~/data"
        self.root = Path(os.path.expandvars(os.path.expanduser(str(root)))).resolve()
        self.download = check_type("data.download", d.get("download", False), bool)
        shots = d.get("shots", 16)
        self.shots = None if shots is None else check_type("data.shots", shots, int, positive=True)
        self.seed = check_type("data.seed", d.get("seed", 0), int, nonneg=True)
        self.val_fraction = check_type("data.val_fraction", d.get("val_fraction", 0.1), float,
                                       positive=True)
        if not self.val_fraction < 0.5:
            raise ConfigError(f"parameter 'data.val_fraction' must be < 0.5, got {self.val_fraction}")
        cap = d.get("max_test_per_domain")
        self.max_test = None if cap is None else check_type("data.max_test_per_domain", cap, int,
                                                             positive=True)
        names = d.get("tasks", list(TASKS))
        check_type("data.tasks", names, list)
        unknown = [t for t in names if t not in TASKS]
        if unknown or not names:
            raise ConfigError(f"data.tasks: unknown task(s) {unknown}; valid tasks: "
                              f"{', '.join(TASKS)}")
        self.task_names = list(names)
        self.templates_override = d.get("templates") or {}
        check_type("data.templates", self.templates_override, dict)
        for t, tpl in self.templates_override.items():
            if t not in TASKS or not isinstance(tpl, list) or not tpl or \
                    not all(isinstance(s, str) and "{}" in s for s in tpl):
                raise ConfigError(f"data.templates.{t}: must name a task and list strings "
                                  f"containing '{{}}', got {tpl!r}")
        self._cache: dict = {}

    @property
    def val_shots(self) -> int:
        """Extra ImageNet images per class for validation (beyond the ``shots``)."""
        if self.shots is None:
            return 0
        return max(1, math.ceil(self.shots * self.val_fraction / (1 - self.val_fraction) - 1e-9))

    # ------------------------------------------------------------------ DatasetSource API
    def _templates(self, task: RealTask) -> list[str]:
        return list(self.templates_override.get(task.name) or task.templates)

    def tasks(self) -> dict[str, TaskSpec]:
        out = {}
        for name in self.task_names:
            t = TASKS[name]
            out[name] = TaskSpec(name, t.classnames(), self._templates(t), t.id_domain,
                                 list(t.ood_domains), t.kind)
        return out

    def load(self, task: str, domain: str, split: str) -> Split:
        key = ("split", task, domain, split)
        if key in self._cache:
            return self._cache[key]
        spec = self.task(task)
        t = TASKS[task]
        if domain not in spec.domains:
            raise ConfigError(f"task {task!r} has no domain {domain!r}; domains: "
                              f"{', '.join(spec.domains)}")
        allowed = SPLITS if domain == t.id_domain else \
            (("val", "test") if domain in t.ood_val_domains else ("test",))
        if split not in allowed:
            raise ConfigError(f"{task}/{domain} has no split {split!r}; available: "
                              f"{', '.join(allowed)} (shifted domains are test-only)")
        rel, labels, classnames, meta = t.index(self, domain, split)
        if split == "test" and self.max_test is not None and len(rel) > self.max_test:
            rng = np.random.default_rng(_seed_of(self.seed, "max-test", task, domain))
            keep = np.sort(rng.choice(len(rel), size=self.max_test, replace=False))
            meta["subsampled_from"] = len(rel)
            rel = [rel[i] for i in keep]
            labels = labels[keep]
            if "metadata_rows" in meta:
                meta["metadata_rows"] = meta["metadata_rows"][keep]
        if len(rel) == 0:
            raise ValueError(f"[data] {task}/{domain}/{split} is empty under {self.root}: the "
                             f"data does not match the expected layout:\n{t.layout}")
        meta.update(source="real", root=str(self.root), task_kind=t.kind)
        split_obj = Split(task=task, domain=domain, split=split, labels=labels,
                          classnames=list(classnames), templates=self._templates(t),
                          files=[str(self.root / r) for r in rel],
                          fingerprint=fingerprint_files(rel, labels), meta=meta)
        self._cache[key] = split_obj
        return split_obj

    def check(self) -> None:
        """Verify (and, with data.download, fetch) everything the profile's tasks need.

        Missing data of all tasks is reported in one FileNotFoundError; a malformed folder or
        metadata file raises ValueError at once.
        """
        missing = []
        for name in self.task_names:
            t = TASKS[name]
            try:
                if self.download and not t.present(self):
                    t.fetch(self)
                t.check(self)
            except FileNotFoundError as exc:
                missing.append(str(exc))
        if len(missing) == 1:
            raise FileNotFoundError(missing[0])
        if missing:
            raise FileNotFoundError(f"{len(missing)} tasks lack data:\n\n" + "\n\n".join(missing))


@register_source("real")
def make(profile_cfg: dict) -> RealSource:
    return RealSource(profile_cfg)
