"""Splits, tasks and data sources: the types every dataset module shares, and the source registry.

A *task* is a classification problem with class names, prompt templates, one in-distribution
(ID) domain with train/val/test splits and shifted domains (OOD test only).  Every loader returns
:class:`Split` objects; the rest of ``lib`` never needs to know where images come from.

* embedded profile: ``lib.world`` generates the tasks into ``build/<profile>/world/`` (arrays).
* paper profile: ``lib.real_data`` reads the real datasets' on-disk layouts (files).

Both register their source here (:func:`register_source`); :func:`lib.data.source_for`, one layer
up, imports them and picks a profile's source. Training and evaluation import this module only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .config import ConfigError
from .io import SHORT, sha256_hex


@dataclass
class Split:
    task: str
    domain: str
    split: str                       # "train" | "val" | "test"
    labels: np.ndarray               # (N,) int64
    classnames: list[str]
    templates: list[str]
    images: np.ndarray | None = None  # (N, H, W, 3) uint8, embedded world
    files: list[str] | None = None    # image file paths, real datasets
    fingerprint: str = ""             # content hash of images + labels
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.fingerprint:  # hand-built splits: hash the content so caches never mix them up
            parts = [np.ascontiguousarray(self.labels).tobytes()]
            if self.images is not None:
                parts.append(np.ascontiguousarray(self.images).tobytes())
            if self.files is not None:
                parts.append("\n".join(map(str, self.files)))
            self.fingerprint = sha256_hex(*parts, length=SHORT)

    def __len__(self) -> int:
        return int(len(self.labels))

    @property
    def n_classes(self) -> int:
        return len(self.classnames)

    def subset(self, idx) -> "Split":
        idx = np.asarray(idx)
        return Split(self.task, self.domain, self.split, self.labels[idx], self.classnames,
                     self.templates,
                     None if self.images is None else self.images[idx],
                     None if self.files is None else [self.files[i] for i in idx],
                     f"{self.fingerprint}:{_hash_idx(idx)}", dict(self.meta))


def _hash_idx(idx) -> str:
    """The subset's indices, hashed (12 hex digits: the length recorded in existing fingerprints)."""
    return sha256_hex(np.asarray(idx, dtype=np.int64).tobytes(), length=12)


@dataclass
class TaskSpec:
    name: str
    classnames: list[str]
    templates: list[str]
    id_domain: str
    ood_domains: list[str]
    kind: str = ""                    # e.g. "objects", "digits" ... (what real dataset it mirrors)

    @property
    def domains(self) -> list[str]:
        return [self.id_domain, *self.ood_domains]


# ----------------------------------------------------------------------------- torch side
class ArrayImages(torch.utils.data.Dataset):
    """uint8 arrays -> normalised tensors at the model's resolution (no PIL round trip)."""

    def __init__(self, split: Split, image_size: int, mean, std):
        self.x = split.images
        self.y = split.labels
        self.size = image_size
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        img = torch.from_numpy(self.x[i]).permute(2, 0, 1).float().div_(255.0)
        if img.shape[-1] != self.size:
            img = torch.nn.functional.interpolate(img[None], size=(self.size, self.size),
                                                  mode="bicubic", align_corners=False)[0]
        return (img - self.mean) / self.std, int(self.y[i])

    def batch(self, idx) -> tuple[torch.Tensor, torch.Tensor]:
        """Vectorised fetch of many items at once (fast path for small arrays)."""
        x = torch.from_numpy(self.x[idx]).permute(0, 3, 1, 2).float().div_(255.0)
        if x.shape[-1] != self.size:
            x = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bicubic",
                                                align_corners=False)
        return (x - self.mean) / self.std, torch.from_numpy(self.y[idx]).long()


class FileImages(torch.utils.data.Dataset):
    """Image files -> the model's own open_clip preprocessing."""

    def __init__(self, split: Split, preprocess):
        self.files = split.files
        self.y = split.labels
        self.preprocess = preprocess

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        try:
            with Image.open(self.files[i]) as im:
                img = im.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"corrupt or unreadable image file {self.files[i]}: {exc}. "
                             f"Re-download or delete it.") from exc
        return self.preprocess(img), int(self.y[i])


def torch_dataset(split: Split, bundle) -> torch.utils.data.Dataset:
    if split.images is not None:
        return ArrayImages(split, bundle.image_size, bundle.mean, bundle.std)
    if split.files is not None:
        return FileImages(split, bundle.preprocess)
    raise ValueError(f"split {split.task}/{split.domain}/{split.split} has neither images nor files")


def iterate(split: Split, bundle, batch_size: int, shuffle: bool = False, seed: int = 0,
            num_workers: int = 0, drop_last: bool = False):
    """Yield (images, labels) batches on the bundle's device, deterministically."""
    ds = torch_dataset(split, bundle)
    n = len(ds)
    order = np.arange(n)
    if shuffle:
        order = np.random.default_rng(seed).permutation(n)
    if isinstance(ds, ArrayImages):
        stop = n - (n % batch_size) if drop_last and n >= batch_size else n
        for s in range(0, stop, batch_size):
            x, y = ds.batch(order[s:s + batch_size])
            yield x.to(bundle.device), y.to(bundle.device)
        return
    sub = torch.utils.data.Subset(ds, order.tolist())
    loader = torch.utils.data.DataLoader(sub, batch_size=batch_size, shuffle=False,
                                         num_workers=num_workers, drop_last=drop_last,
                                         pin_memory=bundle.device.type == "cuda")
    for x, y in loader:
        yield x.to(bundle.device, non_blocking=True), y.to(bundle.device, non_blocking=True)


# ----------------------------------------------------------------------------- registry
# name -> callable(profile_cfg) -> DatasetSource.  ``lib.world`` and ``lib.real_data`` register.
SOURCES: dict[str, Callable] = {}


def register_source(name: str):
    def deco(fn):
        SOURCES[name] = fn
        return fn
    return deco


class DatasetSource:
    """What a profile's data section resolves to: tasks and their splits."""

    def tasks(self) -> dict[str, TaskSpec]:
        raise NotImplementedError

    def load(self, task: str, domain: str, split: str) -> Split:
        raise NotImplementedError

    def check(self) -> None:
        """Fail early (before any work) with a message naming missing data and the fix."""

    def task(self, name: str) -> TaskSpec:
        tasks = self.tasks()
        if name not in tasks:
            raise ConfigError(f"unknown task {name!r}; valid tasks: {', '.join(tasks)}")
        return tasks[name]
