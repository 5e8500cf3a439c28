"""The WILDS datasets, read straight from their metadata csv: :class:`WildsTask` (the base class)
and its three tasks, iWildCam2020 (camera traps), FMoW (satellite images over time) and
Camelyon17 (pathology patches by hospital)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .common import RealTask, _malformed, _read_list, _require_dir, _require_file, _seed_of


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
            import wilds  # optional: wilds may be absent
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
