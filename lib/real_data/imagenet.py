"""ImageNet (ILSVRC2012) and its distribution shifts (ImageNetV2, -Sketch, -R, -A) as a real task."""
from __future__ import annotations

import numpy as np

from .common import (ROOT_HINT, RealTask, _check_class_dirs, _list_images, _malformed, _read_list,
                     _require_dir, _seed_of)


# ----------------------------------------------------------------------------- ImageNet
def _openai_templates() -> list[str]:
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES  # start-up: 3.9 s on the grid --make path
    return [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]


class ImageNetTask(RealTask):
    name = "imagenet"
    kind = "objects (ImageNet and its distribution shifts)"
    id_domain = "imagenet"
    ood_domains = ("imagenet_v2", "imagenet_sketch", "imagenet_r", "imagenet_a")
    DIRS = {"train": "imagenet/train", "test": "imagenet/val",
            "imagenet_v2": "imagenetv2-matched-frequency-format-val",
            "imagenet_sketch": "imagenet-sketch/sketch",
            "imagenet_r": "imagenet-r", "imagenet_a": "imagenet-a"}
    SUBSETS = {"imagenet_r": "imagenet_r_wnids.txt", "imagenet_a": "imagenet_a_wnids.txt"}
    layout = """\
  imagenet/train/<wnid>/*.JPEG          1000 folders n01440764 ... n15075141 (ILSVRC2012 train)
  imagenet/val/<wnid>/*.JPEG            ILSVRC2012 val, sorted into the same 1000 wnid folders
  imagenetv2-matched-frequency-format-val/<0..999>/*.jpeg
  imagenet-sketch/sketch/<wnid>/*.JPEG  1000 wnid folders
  imagenet-r/<wnid>/*.jpg               200 wnid folders
  imagenet-a/<wnid>/*.jpg               200 wnid folders"""
    how_to_get = (
        "no automatic download (data.download does not apply). ILSVRC2012: download the train "
        "and val archives from https://image-net.org (login) and sort val into wnid folders "
        "(e.g. with the valprep.sh script used by the PyTorch ImageNet example); ImageNetV2: "
        "download imagenetv2-matched-frequency.tar.gz from the ImageNetV2 release on Hugging "
        "Face (vaishaal/ImageNetV2); ImageNet-Sketch: download ImageNet-Sketch.zip (Hugging "
        "Face imagenet_sketch / the ImageNet-Sketch GitHub page) and unzip it into "
        "<root>/imagenet-sketch/ (it unpacks to sketch/); "
        "ImageNet-R and ImageNet-A: download imagenet-r.tar and imagenet-a.tar from "
        "https://people.eecs.berkeley.edu/~hendrycks/ and extract them into the data root.")

    def wnids(self) -> list[str]:
        return _read_list("imagenet_wnids.txt")

    def classnames(self) -> list[str]:
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES  # start-up: 3.9 s on the grid --make path
        return list(IMAGENET_CLASSNAMES)

    @property
    def templates(self):
        return _openai_templates()

    def subset(self, domain: str) -> list[int]:
        pos = {w: i for i, w in enumerate(self.wnids())}
        return [pos[w] for w in _read_list(self.SUBSETS[domain])]

    def check(self, src):
        wnids, root = self.wnids(), src.root
        wanted = [("train", wnids, "ImageNet wnid folders"), ("test", wnids, "ImageNet wnid folders"),
                  ("imagenet_v2", [str(i) for i in range(1000)], "class-index folders 0..999"),
                  ("imagenet_sketch", wnids, "ImageNet wnid folders")]
        wanted += [(d, _read_list(self.SUBSETS[d]), f"{d} wnid folders")
                   for d in ("imagenet_r", "imagenet_a")]
        missing = []
        for key, expected, what in wanted:
            try:
                _check_class_dirs(self, root / self.DIRS[key], root, expected, what)
            except FileNotFoundError as exc:      # report every missing folder at once
                missing.append(exc)
        if len(missing) == 1:
            raise missing[0]
        if missing:
            paths = "\n".join(f"  {root / self.DIRS[k]}" for k, _, _ in wanted
                              if any(f" {root / self.DIRS[k]}," in str(e) for e in missing))
            raise FileNotFoundError(
                f"[data] task 'imagenet' is missing {len(missing)} folders:\n{paths}\n"
                f"Expected layout under the data root {root}:\n{self.layout}\n"
                f"How to get it: {self.how_to_get}\n{ROOT_HINT}")

    def _class_files(self, src, rel_dir: str, folders: list[str]) -> list[list[str]]:
        """Sorted image names of every class folder (cached per source)."""
        key = ("listing", rel_dir)
        if key not in src._cache:
            base = _require_dir(self, src.root / rel_dir, src.root)
            out = []
            for name in folders:
                d = base / name
                if not d.is_dir():
                    raise _malformed(self, base, f"class folder {name} is missing "
                                                 f"(run check() for the full list)")
                out.append(_list_images(d))
            src._cache[key] = out
        return src._cache[key]

    def _shots(self, src):
        """Per class: (train names, val names) drawn from the train folder."""
        key = ("shots", src.shots, src.seed, src.val_fraction)
        if key in src._cache:
            return src._cache[key]
        wnids = self.wnids()
        listing = self._class_files(src, self.DIRS["train"], wnids)
        out = []
        for i, names in enumerate(listing):
            rng = np.random.default_rng(_seed_of(src.seed, "imagenet-shots", i))
            perm = rng.permutation(len(names))
            if src.shots is None:
                n_val = max(1, int(round(len(names) * src.val_fraction)))
                tr, va = perm[n_val:], perm[:n_val]
            else:
                need = src.shots + src.val_shots
                if len(names) < need:
                    raise _malformed(self, src.root / self.DIRS["train"] / wnids[i],
                                     f"{len(names)} images, fewer than shots + val_shots = "
                                     f"{src.shots} + {src.val_shots}")
                tr, va = perm[:src.shots], perm[src.shots:need]
            out.append((sorted(names[j] for j in tr), sorted(names[j] for j in va)))
        src._cache[key] = out
        return out

    def index(self, src, domain, split):
        wnids, names = self.wnids(), self.classnames()
        if domain == self.id_domain and split in ("train", "val"):
            rel = self.DIRS["train"]
            per_class = [p[0 if split == "train" else 1] for p in self._shots(src)]
            rule = (f"{src.shots} train + {src.val_shots} val images per class"
                    if src.shots is not None else
                    f"all train images, {src.val_fraction:.0%} of each class for val")
            rule += f" from imagenet/train, seed {src.seed}"
            folders, labels_of, classnames, meta = wnids, list(range(1000)), names, {}
        else:
            key = "test" if domain == self.id_domain else domain
            rel = self.DIRS[key]
            meta = {}
            if domain == "imagenet_v2":
                folders, labels_of, classnames = [str(i) for i in range(1000)], list(range(1000)), names
            elif domain in self.SUBSETS:
                sub = self.subset(domain)
                folders = _read_list(self.SUBSETS[domain])
                labels_of = list(range(len(sub)))
                classnames = [names[i] for i in sub]
                meta["class_subset"] = sub
            else:
                folders, labels_of, classnames = wnids, list(range(1000)), names
            per_class = self._class_files(src, rel, folders)
            rule = f"every image of {rel}"
        files, labels = [], []
        for folder, y, imgs in zip(folders, labels_of, per_class):
            files += [f"{rel}/{folder}/{n}" for n in imgs]
            labels += [y] * len(imgs)
        meta["rule"] = rule
        return files, np.asarray(labels, dtype=np.int64), classnames, meta
