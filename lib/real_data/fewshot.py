"""What the tasks that download themselves share (the ``colab`` profile): :class:`FewShotTask`.

A few-shot task reads a dataset from the layout its torchvision download produces (fetched by
:mod:`.fetch` when ``data.download`` is true) and splits it by one rule, a function of
``data.seed`` only:

* ID **train**: per class, ``data.shots`` images drawn without replacement (seeded by task, class)
  from the official train split (all of them when the class has fewer; ``shots: null``: every
  train image);
* ID **val**: per class, ``val_shots`` images (``ceil(shots * val_fraction / (1 - val_fraction))``:
  4 for 16 shots at 0.2, as :class:`lib.real_data.source.RealSource` computes it) from the official
  validation split where the dataset has one, else from the train images not drawn for train
  (disjoint from them);
* **test** (ID and every shifted domain): the official test split, capped by
  ``data.max_test_per_domain`` with the same seeded subsample as ``RealSource.load`` (applied here
  first, so that only the kept images of an array dataset are written out).

Datasets stored as arrays (MNIST's idx files, USPS's bz2 text, SVHN's .mat, CIFAR's pickles,
STL-10's binaries, CIFAR-10.1's .npy) are read by :meth:`FewShotTask.arrays`, and each image a split
uses is written once as a lossless PNG under ``<root>/clipmis-png/<dataset>/<split>/<index>.png``
(index = its position in the official split; written to a temporary name, then renamed), so every
split is a list of files like any real task's and goes through open_clip's own preprocessing
(PIL, as torchvision's dataset classes hand images to CLIP_benchmark).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..progress import log
from . import clip_benchmark as cb
from .common import ROOT_HINT, RealTask, _malformed, _seed_of
from .fetch import ensure, is_ready

PNG_DIR = "clipmis-png"


@dataclass
class Pool:
    """One official split: its items (relative file paths, or indices into an array dataset) and labels."""
    items: list
    labels: np.ndarray
    png: str | None = None                        # array datasets: the PNG folder (relative to the root)
    images: Callable[[], np.ndarray] | None = None  # array datasets: all images, (N, H, W[, 3]) uint8


class FewShotTask(RealTask):
    resources: tuple = ()           # the downloads (:class:`lib.real_data.fetch.Resource`)
    cb_key: str = ""                # CLIP_benchmark's dataset key (templates; class names unless CLASSES)
    CLASSES: tuple = ()             # class names CLIP_benchmark takes from the data (checked against it)
    official_val: bool = False      # the ID domain has an official validation split
    SIZES: dict = {}                # official sizes {(domain, split): n}: the docs and the time estimate
    host_note: str = ""             # where the data comes from (docs/colab.md)

    # ------------------------------------------------------------------ names
    def classnames(self) -> list[str]:
        return list(self.CLASSES) if self.CLASSES else cb.classnames(self.cb_key)

    @property
    def templates(self):
        return cb.templates(self.cb_key)

    @property
    def layout(self) -> str:
        lines = []
        for r in self.resources:
            lines += [f"  {p}" for p in r.produces]
        return "\n".join(dict.fromkeys(lines))

    @property
    def how_to_get(self) -> str:
        parts = [f"{r.urls[0]} ({r.checksum[0]} {r.checksum[1]}, {r.checksum_from}) -> <root>/{r.path}"
                 + (f", unpacked into <root>/{r.extract_to}" if r.extract_to is not None else "")
                 for r in self.resources]
        return ("set data.download: true (the colab profile does: `python -m lib.real_data.download colab` "
                "downloads, verifies and unpacks them), or put these files in place yourself: "
                + "; ".join(parts))

    # ------------------------------------------------------------------ data on disk
    def present(self, src) -> bool:
        return all(is_ready(src.root, r) for r in self.resources)

    def fetch(self, src) -> None:
        for r in self.resources:
            ensure(src.root, r)

    def check(self, src) -> None:
        missing = [r for r in self.resources if not is_ready(src.root, r)]
        if missing:
            what = "\n".join(f"  {src.root / p}" for r in missing for p in r.produces
                             if not (src.root / p).exists()) or \
                "\n".join(f"  {src.root / r.path} (an unpacking was cut off: it is redone)" for r in missing)
            raise FileNotFoundError(
                f"[data] task {self.name!r} lacks:\n{what}\nExpected layout under the data root {src.root} "
                f"(torchvision's):\n{self.layout}\nHow to get it: {self.how_to_get}\n{ROOT_HINT}")

    # ------------------------------------------------------------------ subclasses
    def pool(self, src, domain: str, split: str) -> Pool:
        """The official ``split`` ("train", "val" or "test") of ``domain``."""
        raise NotImplementedError

    def _pool(self, src, domain: str, split: str) -> Pool:
        key = ("pool", self.name, domain, split)
        if key not in src._cache:
            src._cache[key] = self.pool(src, domain, split)
        return src._cache[key]

    # ------------------------------------------------------------------ splits
    def _fewshot(self, src, split: str):
        train = self._pool(src, self.id_domain, "train")
        val = self._pool(src, self.id_domain, "val") if self.official_val else None
        k = len(self.classnames())
        picked_tr, picked_va = [], []
        for c in range(k):
            idx = np.flatnonzero(train.labels == c)
            if len(idx) == 0:
                raise _malformed(self, src.root, f"class {c} ({self.classnames()[c]}) has no training image")
            perm = idx[np.random.default_rng(_seed_of(src.seed, self.name, "shots", c)).permutation(len(idx))]
            if src.shots is None:
                n_tr = len(idx) if val is not None else \
                    len(idx) - max(1, int(round(len(idx) * src.val_fraction)))
            else:
                n_tr = min(src.shots, len(idx))
            picked_tr.append(perm[:n_tr])
            if val is None:
                n_va = len(idx) - n_tr if src.shots is None else src.val_shots
                picked_va.append(perm[n_tr:n_tr + n_va])
            else:
                vidx = np.flatnonzero(val.labels == c)
                vperm = vidx[np.random.default_rng(_seed_of(src.seed, self.name, "val", c)).permutation(len(vidx))]
                picked_va.append(vperm if src.shots is None else vperm[:src.val_shots])
        if split == "train":
            keep, pool = np.sort(np.concatenate(picked_tr)), train
        else:
            keep, pool = np.sort(np.concatenate(picked_va)), (val if val is not None else train)
        shots = "every" if src.shots is None else f"{src.shots}"
        rule = (f"{shots} train image(s) per class from the official train split, "
                + (f"{'all' if src.shots is None else src.val_shots} val per class from the official val split"
                   if val is not None else
                   f"{'the rest' if src.shots is None else src.val_shots} val per class from the train split's rest")
                + f", seed {src.seed}")
        return pool, keep, rule

    def index(self, src, domain, split):
        meta: dict = {}
        if domain == self.id_domain and split in ("train", "val"):
            pool, keep, rule = self._fewshot(src, split)
        else:
            pool = self._pool(src, domain, "test")
            keep = np.arange(len(pool.labels))
            rule = f"the official test split of {domain}"
            if src.max_test is not None and len(keep) > src.max_test:   # RealSource.load's rule
                rng = np.random.default_rng(_seed_of(src.seed, "max-test", self.name, domain))
                keep = np.sort(rng.choice(len(keep), size=src.max_test, replace=False))
                meta["subsampled_from"] = len(pool.labels)
        labels = np.asarray(pool.labels)[keep].astype(np.int64)
        if pool.png is not None:
            files = write_pngs(src.root, pool, keep)
        else:
            files = [pool.items[i] for i in keep]
        meta["rule"] = rule
        meta.update(self.domain_meta(domain))
        return files, labels, self.classnames(), meta

    def domain_meta(self, domain: str) -> dict:
        return {}


def write_pngs(root: Path, pool: Pool, keep) -> list[str]:
    """The PNG files of the array images ``keep`` of ``pool``, each written once (temporary name,
    then renamed: a file that exists is complete)."""
    rel = [f"{pool.png}/{int(pool.items[i]):06d}.png" for i in keep]
    todo = [(r, int(pool.items[i])) for r, i in zip(rel, keep) if not (Path(root) / r).exists()]
    if todo:
        log(f"[data] writing {len(todo)} images of {pool.png} as PNG files (once)")
        images = pool.images()
        folder = Path(root) / pool.png
        folder.mkdir(parents=True, exist_ok=True)
        for r, i in todo:
            dest = Path(root) / r
            tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
            Image.fromarray(np.ascontiguousarray(images[i])).save(tmp, format="PNG", compress_level=1)
            os.replace(tmp, dest)
    return rel
