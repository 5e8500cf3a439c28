"""Real datasets of the paper profile, read from their standard on-disk layouts.

Registered as the data source ``"real"``; a profile selects it with::

    data:
      source: real
      root: ~/data               # the env var CLIPMIS_DATA_ROOT overrides it
      download: false            # let dataset tooling (wilds, torchvision) fetch missing data
      shots: 16                  # ImageNet train images per class (null: all of them)
      seed: 0                    # every sampling below is a function of this seed
      val_fraction: 0.1          # validation share where a dataset has no official ID val
      max_test_per_domain: null  # optional cap on every test split (seeded subsample)
      tasks: [imagenet, iwildcam, fmow, camelyon17, eurosat]
      templates: {}              # optional {task: ["a photo of {}.", ...]} overrides

Tasks live in :data:`TASKS` (name -> task object); adding a dataset is adding one entry.
Every task knows its class names, prompt templates, domains, the folders it needs (``check``)
and how to list the files and labels of one (domain, split).  Nothing is scanned before
:meth:`RealSource.load` (``tasks()`` reads only small files shipped in ``lib/classnames``);
listings are cached in memory per source.

Layouts and split rules (``<root>`` is the data root):

* ``imagenet`` (objects, 1000 classes; ID domain ``imagenet``)
    - train/val: ``<root>/imagenet/train/<wnid>/*.JPEG``.  Per class, ``shots`` train images
      and ``val_shots = ceil(shots * val_fraction / (1 - val_fraction))`` further images
      (2 for 16 shots at 0.1) for validation, disjoint, drawn without replacement by a
      generator seeded with (seed, class index).  ``shots: null`` uses every train image and
      holds out ``val_fraction`` of each class.
    - test: ``<root>/imagenet/val/<wnid>/*.JPEG`` (ILSVRC2012 val sorted into wnid folders).
    - ``imagenet_v2``: ``<root>/imagenetv2-matched-frequency-format-val/<0..999>/*.jpeg``;
      the folder name is the class index.
    - ``imagenet_sketch``: ``<root>/imagenet-sketch/sketch/<wnid>/*.JPEG``.
    - ``imagenet_r`` / ``imagenet_a``: ``<root>/imagenet-r/<wnid>/*.jpg`` and
      ``<root>/imagenet-a/<wnid>/*.jpg``, 200-class subsets: the Split's ``classnames`` are
      the 200 names, labels index into them and ``meta['class_subset']`` holds the 1000-way
      indices.
    Class index = position of the wnid in the sorted list of the 1000 ILSVRC2012 wnids
    (``lib/classnames/imagenet_wnids.txt``); names and the 80 prompt templates are open_clip's
    ``IMAGENET_CLASSNAMES`` / ``OPENAI_IMAGENET_TEMPLATES``.
* ``iwildcam`` (WILDS iWildCam2020 v2.0, 182 classes): ``<root>/iwildcam_v2.0/metadata.csv``
  + ``train/<filename>``.  The ``split`` column is official: ID train/val/test =
  ``train``/``id_val``/``id_test``; domain ``ood``: test = ``test``, val = ``val``.
  Labels = column ``y``; class names = common English names (``lib/classnames/
  iwildcam_classnames.txt``, in ``y`` order).
* ``fmow`` (WILDS FMoW v1.1, 62 classes): ``<root>/fmow_v1.1/rgb_metadata.csv`` +
  ``images/rgb_img_<row>.png`` (row = position in the full csv).  Official time split:
  OOD test = ``split == test`` and year >= 2016; OOD val = ``split == val`` and
  2013 <= year < 2016; ID train/val/test = ``split == train/val/test`` and year < 2013;
  ``seq`` rows are never used.
* ``camelyon17`` (WILDS Camelyon17 v1.0, 2 classes): ``<root>/camelyon17_v1.0/metadata.csv`` +
  ``patches/patient_<p>_node_<n>/patch_patient_<p>_node_<n>_x_<x>_y_<y>.png``.  Official
  hospitals (the csv's 0-indexed ``center``): OOD test = center 2, OOD val = center 1, ID =
  centers 0, 3, 4.  WILDS has no ID test split, so ID test = the official ``id_val`` rows
  (``split == 1``) and ID val = ``val_fraction`` of the official train rows (seeded).
* ``eurosat`` (EuroSAT RGB, 10 classes, ID only): ``<root>/eurosat/2750/<ClassName>/*.jpg``.
  Per class, seeded: 30% test, ``val_fraction`` val, the rest train (60/10/30 by default).

``max_test_per_domain`` caps every ``test`` split with a seeded subsample (order kept).

``Split.fingerprint`` = sha256 (first 16 hex) of the sorted ``relative path<TAB>label`` lines
of the split, paths relative to the data root.  It does not read image bytes (too slow for
ImageNet): it changes when files, labels or the sampling change, not when a file is
rewritten in place, and it does not depend on where the data root is.
"""
from __future__ import annotations

import hashlib
import math
import os
import zlib
from pathlib import Path

import numpy as np

from .config import ConfigError, check_type
from .splits import DatasetSource, Split, TaskSpec, register_source

CLASSNAMES_DIR = Path(__file__).resolve().parent / "classnames"
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
SPLITS = ("train", "val", "test")
ROOT_HINT = ("Point data.root in params/profiles/<profile>.yaml (or the env var "
             "CLIPMIS_DATA_ROOT) at the folder holding it.")


def _read_list(name: str) -> list[str]:
    path = CLASSNAMES_DIR / name
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _seed_of(*parts) -> list[int]:
    """Entropy for np.random.default_rng from ints and strings (strings via crc32: stable)."""
    return [p if isinstance(p, int) else zlib.crc32(str(p).encode()) for p in parts]


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTS


def _list_images(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if _is_image(e.name) and e.is_file())


def _has_image(folder: Path) -> bool:
    with os.scandir(folder) as it:
        return any(_is_image(e.name) for e in it)


def _subdirs(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir())


def _missing(task: "RealTask", path: Path, root: Path, what: str = "folder") -> FileNotFoundError:
    state = "does not exist" if not path.exists() else "is empty"
    return FileNotFoundError(
        f"[data] task {task.name!r} needs the {what} {path}, which {state}.\n"
        f"Expected layout under the data root {root}:\n{task.layout}\n"
        f"How to get it: {task.how_to_get}\n{ROOT_HINT}")


def _malformed(task: "RealTask", path: Path, problem: str) -> ValueError:
    return ValueError(f"[data] task {task.name!r}: {path} is malformed: {problem}.\n"
                      f"Expected layout:\n{task.layout}\nHow to get a clean copy: {task.how_to_get}")


def _nonempty(folder: Path) -> bool:
    with os.scandir(folder) as it:
        return any(True for _ in it)


def _require_dir(task, path: Path, root: Path) -> Path:
    if not path.is_dir() or not _nonempty(path):
        raise _missing(task, path, root)
    return path


def _require_file(task, path: Path, root: Path) -> Path:
    if not path.is_file() or path.stat().st_size == 0:
        raise _missing(task, path, root, what="file")
    return path


def _check_class_dirs(task, folder: Path, root: Path, expected: list[str], what: str) -> None:
    """``folder`` must hold exactly the ``expected`` class folders, each with an image."""
    _require_dir(task, folder, root)
    found = _subdirs(folder)
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        parts = [f"found {len(found)} class folders, expected the {len(expected)} {what}"]
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {', '.join(missing[:5])})")
        if extra:
            parts.append(f"unexpected {len(extra)} (e.g. {', '.join(extra[:5])})")
        raise _malformed(task, folder, "; ".join(parts))
    for name in expected:
        if not _has_image(folder / name):
            raise _malformed(task, folder / name, "class folder without any image file")


def fingerprint_files(relative_files, labels) -> str:
    """sha256 of the sorted ``relpath<TAB>label`` lines (no image bytes are read)."""
    h = hashlib.sha256(b"clipmis-real-split-v1\n")
    for rel, y in sorted(zip(relative_files, (int(v) for v in labels))):
        h.update(f"{rel}\t{y}\n".encode())
    return h.hexdigest()[:16]


# ============================================================================= tasks
class RealTask:
    """One real task. Subclasses fill in the attributes and the four methods."""
    name: str = ""
    kind: str = ""
    id_domain: str = "id"
    ood_domains: tuple = ()
    ood_val_domains: tuple = ()      # OOD domains that also have an official "val" split
    templates: tuple = ()
    layout: str = ""                 # short tree, shown in error messages
    how_to_get: str = ""

    def classnames(self) -> list[str]:
        raise NotImplementedError

    def check(self, src: "RealSource") -> None:
        """Raise FileNotFoundError / ValueError when the data is missing or malformed."""
        raise NotImplementedError

    def present(self, src: "RealSource") -> bool:
        """Cheap test whether the task's top folder exists (used before downloading)."""
        return True

    def fetch(self, src: "RealSource") -> None:
        """Download with the dataset's own tooling (data.download: true). Default: manual."""

    def index(self, src: "RealSource", domain: str, split: str):
        """-> (relative paths, labels, classnames, meta) of one split, deterministic."""
        raise NotImplementedError


# ----------------------------------------------------------------------------- ImageNet
def _openai_templates() -> list[str]:
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
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
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
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


# ----------------------------------------------------------------------------- WILDS
class WildsTask(RealTask):
    """A WILDS dataset read straight from its metadata csv (the ``wilds`` package is optional)."""
    wilds_name = ""
    folder = ""
    metadata = "metadata.csv"
    image_dir = ""
    required_columns: tuple = ()
    read_kwargs: dict = {}
    id_domain = "id"
    ood_domains = ("ood",)
    ood_val_domains = ("ood",)

    @property
    def how_to_get(self):
        return (f"pip install wilds, then either set data.download: true (calls "
                f"wilds.get_dataset({self.wilds_name!r}, root_dir=<root>, download=True)) or run "
                f"`python -c \"import wilds; wilds.get_dataset('{self.wilds_name}', "
                f"root_dir='<root>', download=True)\"`; manual download links: "
                f"https://wilds.stanford.edu/datasets/ (unpacks to {self.folder}/).")

    def present(self, src):
        return (src.root / self.folder / self.metadata).is_file()

    def fetch(self, src):
        try:
            import wilds
        except ImportError as exc:
            raise FileNotFoundError(
                f"[data] task {self.name!r}: {src.root / self.folder} is missing and "
                f"data.download is true, but the `wilds` package is not installed. "
                f"Run `pip install wilds` (it downloads {self.wilds_name} into "
                f"{src.root}/{self.folder}), or download it by hand from "
                f"https://wilds.stanford.edu/datasets/ and unpack it there.\n"
                f"Expected layout:\n{self.layout}") from exc
        src.root.mkdir(parents=True, exist_ok=True)
        wilds.get_dataset(dataset=self.wilds_name, root_dir=str(src.root), download=True)

    def check(self, src):
        base = _require_dir(self, src.root / self.folder, src.root)
        meta = _require_file(self, base / self.metadata, src.root)
        _require_dir(self, base / self.image_dir, src.root)
        import pandas as pd
        try:
            cols = list(pd.read_csv(meta, nrows=0, **self.read_kwargs).columns)
        except Exception as exc:  # noqa: BLE001  (unreadable csv = malformed)
            raise _malformed(self, meta, f"cannot be read as csv ({exc})") from exc
        lacking = [c for c in self.required_columns if c not in cols]
        if lacking:
            raise _malformed(self, meta, f"missing column(s) {', '.join(lacking)} "
                                         f"(has: {', '.join(map(str, cols))})")

    def frame(self, src):
        key = ("frame", self.name)
        if key not in src._cache:
            self.check(src)
            import pandas as pd
            df = pd.read_csv(src.root / self.folder / self.metadata, **self.read_kwargs)
            src._cache[key] = self.prepare(src, df)
        return src._cache[key]

    def prepare(self, src, df):
        return df

    def rows(self, src, df, domain, split) -> np.ndarray:
        """Row positions (into the metadata csv) of one split."""
        raise NotImplementedError

    def relpaths(self, df, rows) -> list[str]:
        raise NotImplementedError

    def labels(self, src, df, rows) -> np.ndarray:
        raise NotImplementedError

    def index(self, src, domain, split):
        df = self.frame(src)
        rows = np.sort(np.asarray(self.rows(src, df, domain, split), dtype=np.int64))
        labels = self.labels(src, df, rows)
        n = len(self.classnames())
        if len(labels) and (labels.min() < 0 or labels.max() >= n):
            raise _malformed(self, src.root / self.folder / self.metadata,
                             f"labels outside 0..{n - 1} (found {labels.min()}..{labels.max()})")
        rel = [f"{self.folder}/{p}" for p in self.relpaths(df, rows)]
        return rel, labels, self.classnames(), {"rule": self.rule(domain, split),
                                                "metadata_rows": rows}

    def rule(self, domain, split) -> str:
        return ""


class IWildCamTask(WildsTask):
    name = "iwildcam"
    kind = "camera-trap animal species (WILDS iWildCam2020)"
    wilds_name = "iwildcam"
    folder = "iwildcam_v2.0"
    image_dir = "train"
    required_columns = ("split", "filename", "y")
    templates = ("a camera trap photo of a {}.", "a photo of a {}.", "{} in the wild.")
    SPLITS = {("id", "train"): "train", ("id", "val"): "id_val", ("id", "test"): "id_test",
              ("ood", "val"): "val", ("ood", "test"): "test"}
    layout = """\
  iwildcam_v2.0/metadata.csv     columns split (train/id_val/id_test/val/test), filename, y, ...
  iwildcam_v2.0/categories.csv   columns y, category_id, name
  iwildcam_v2.0/train/<filename> every image (all splits)"""

    def classnames(self):
        return _read_list("iwildcam_classnames.txt")

    def rows(self, src, df, domain, split):
        return np.flatnonzero((df["split"] == self.SPLITS[(domain, split)]).to_numpy())

    def relpaths(self, df, rows):
        return [f"{self.image_dir}/{f}" for f in df["filename"].to_numpy()[rows]]

    def labels(self, src, df, rows):
        return df["y"].to_numpy()[rows].astype(np.int64)

    def rule(self, domain, split):
        return f"official WILDS split {self.SPLITS[(domain, split)]!r}"


FMOW_CATEGORIES = (
    "airport", "airport_hangar", "airport_terminal", "amusement_park", "aquaculture",
    "archaeological_site", "barn", "border_checkpoint", "burial_site", "car_dealership",
    "construction_site", "crop_field", "dam", "debris_or_rubble", "educational_institution",
    "electric_substation", "factory_or_powerplant", "fire_station", "flooded_road", "fountain",
    "gas_station", "golf_course", "ground_transportation_station", "helipad", "hospital",
    "impoverished_settlement", "interchange", "lake_or_pond", "lighthouse", "military_facility",
    "multi-unit_residential", "nuclear_powerplant", "office_building", "oil_or_gas_facility",
    "park", "parking_lot_or_garage", "place_of_worship", "police_station", "port", "prison",
    "race_track", "railway_bridge", "recreational_facility", "road_bridge", "runway", "shipyard",
    "shopping_mall", "single-unit_residential", "smokestack", "solar_farm", "space_facility",
    "stadium", "storage_tank", "surface_mine", "swimming_pool", "toll_booth", "tower",
    "tunnel_opening", "waste_disposal", "water_treatment_facility", "wind_farm", "zoo")


class FMoWTask(WildsTask):
    name = "fmow"
    kind = "satellite land use (WILDS FMoW)"
    wilds_name = "fmow"
    folder = "fmow_v1.1"
    metadata = "rgb_metadata.csv"
    image_dir = "images"
    required_columns = ("split", "category", "timestamp")
    templates = ("satellite imagery of {}.", "a satellite photo of a {}.", "an aerial photo of a {}.")
    OOD_TEST_YEAR, OOD_VAL_YEAR = 2016, 2013   # WILDS split_scheme "official" = time_after_2016
    layout = """\
  fmow_v1.1/rgb_metadata.csv        columns split (train/val/test/seq), category, timestamp, ...
  fmow_v1.1/images/rgb_img_<row>.png  <row> = 0-based row of rgb_metadata.csv"""

    def classnames(self):
        return [c.replace("_", " ") for c in FMOW_CATEGORIES]

    def prepare(self, src, df):
        import pandas as pd
        ts = pd.to_datetime(df["timestamp"], utc=True, format="ISO8601")
        df = df.assign(_year=ts.dt.year.to_numpy())
        unknown = sorted(set(df["category"]) - set(FMOW_CATEGORIES))
        if unknown:
            raise _malformed(self, src.root / self.folder / self.metadata,
                             f"unknown categories {unknown[:5]}")
        return df

    def rows(self, src, df, domain, split):
        year, s = df["_year"].to_numpy(), df["split"].to_numpy()
        test_ood = year >= self.OOD_TEST_YEAR
        val_ood = (year >= self.OOD_VAL_YEAR) & ~test_ood
        if domain == "ood":
            mask = (s == "test") & test_ood if split == "test" else (s == "val") & val_ood
        else:
            mask = (s == split) & ~(test_ood | val_ood)
        return np.flatnonzero(mask)

    def relpaths(self, df, rows):
        return [f"{self.image_dir}/rgb_img_{int(r)}.png" for r in rows]

    def labels(self, src, df, rows):
        pos = {c: i for i, c in enumerate(FMOW_CATEGORIES)}
        return np.asarray([pos[c] for c in df["category"].to_numpy()[rows]], dtype=np.int64)

    def rule(self, domain, split):
        if domain == "ood":
            return ("split=='test' and year>=2016" if split == "test"
                    else "split=='val' and 2013<=year<2016")
        return f"split=={split!r} and year<2013"


class Camelyon17Task(WildsTask):
    name = "camelyon17"
    kind = "histopathology patches (WILDS Camelyon17)"
    wilds_name = "camelyon17"
    folder = "camelyon17_v1.0"
    image_dir = "patches"
    required_columns = ("patient", "node", "x_coord", "y_coord", "tumor", "center", "split")
    read_kwargs = {"index_col": 0, "dtype": {"patient": "str"}}
    templates = ("this is a photo of {}.",)
    VAL_CENTER, TEST_CENTER = 1, 2     # WILDS official, 0-indexed `center` column
    layout = """\
  camelyon17_v1.0/metadata.csv  unnamed index column, then patient, node, x_coord, y_coord,
                                tumor, slide, center (0..4), split (0 train / 1 id_val)
  camelyon17_v1.0/patches/patient_<ppp>_node_<n>/patch_patient_<ppp>_node_<n>_x_<x>_y_<y>.png"""

    def classnames(self):
        return ["lymph node", "lymph node containing tumor tissue"]

    def prepare(self, src, df):
        df = df.reset_index(drop=True)
        df["patient"] = df["patient"].astype(str).str.zfill(3)
        return df

    def rows(self, src, df, domain, split):
        center, s = df["center"].to_numpy(), df["split"].to_numpy()
        if domain == "ood":
            return np.flatnonzero(center == (self.TEST_CENTER if split == "test" else self.VAL_CENTER))
        id_rows = ~np.isin(center, [self.VAL_CENTER, self.TEST_CENTER])
        if split == "test":
            return np.flatnonzero(id_rows & (s == 1))
        train = np.flatnonzero(id_rows & (s == 0))
        rng = np.random.default_rng(_seed_of(src.seed, "camelyon17-val"))
        perm = rng.permutation(len(train))
        n_val = int(round(len(train) * src.val_fraction))
        return train[perm[:n_val]] if split == "val" else train[perm[n_val:]]

    def relpaths(self, df, rows):
        sub = df.iloc[rows]
        return [f"{self.image_dir}/patient_{p}_node_{n}/patch_patient_{p}_node_{n}_x_{x}_y_{y}.png"
                for p, n, x, y in zip(sub["patient"], sub["node"], sub["x_coord"], sub["y_coord"])]

    def labels(self, src, df, rows):
        return df["tumor"].to_numpy()[rows].astype(np.int64)

    def rule(self, domain, split):
        if domain == "ood":
            return f"center=={self.TEST_CENTER if split == 'test' else self.VAL_CENTER} (official)"
        return {"train": "centers 0,3,4 split==0 minus the seeded val share",
                "val": "val_fraction of centers 0,3,4 split==0 (seeded)",
                "test": "centers 0,3,4 split==1 (official id_val)"}[split]


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
        from torchvision.datasets import EuroSAT
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


# name -> task; adding a dataset = adding one entry here.
TASKS: dict[str, RealTask] = {t.name: t for t in (
    ImageNetTask(), IWildCamTask(), FMoWTask(), Camelyon17Task(), EuroSATTask())}


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
