"""The embedded world (v2): eight downstream tasks in a 2x2x2 factorial design, and a pretraining
corpus, generated offline.

Everything is drawn from one *concept vocabulary*: a renderer per task that turns
``(class, domain, rng)`` into a 32x32 RGB image.  Real images that ship inside wheels are used where
they fit (scikit-learn's handwritten digits; scikit-image's LFW faces, horse silhouette, grass /
gravel / brick textures and immunohistochemistry slide); the rest is procedural.

The tasks mirror the kinds of datasets a CLIP PEFT study uses:

=============  ==========================  ====================  ===================================
task           mirrors                     ID domain             shift family (mild, strong)
=============  ==========================  ====================  ===================================
objects        ImageNet (general objects)  photo                 sketch (line drawing)
digits         MNIST / handwriting         ink (white on black)  colored (MNIST-M-like)
landcover      EuroSAT / FMoW (overhead)   summer                winter (snow, haze)
pathology      Camelyon17 (H&E patches)    hospital_a stain      hospital_b stain
camera_trap    iWildCam (camera traps)     day                   night (infrared, flash)
traffic_signs  GTSRB                       clear                 motion_blur (from a moving car)
flowers        Flowers102                  garden                vintage (sepia, faded print)
textures       DTD (describable textures)  flat                  warped (crumpled, folded surface)
=============  ==========================  ====================  ===================================

Each task has three domains ``[id, <shift>_mild, <shift>_strong]``: a renderer draws ONE sample
(class, pose, background, ...) and paints it in the ID look and in the fully shifted look; the
domain's image is ``(1 - s) * id + s * shifted`` with the severity ``s`` of :data:`SEVERITY`.

The profile's ``world`` mapping places every task in one cell of a 2x2x2 design (``world.design``)
over three factors whose levels are fixed in ``world.levels`` (docs/world.md):

* **coverage** -- the task's relative weight in the pretraining corpus (within a task the pairs are
  shared between its domains by ``world.corpus.domain_share``);
* **caption_noise** -- the fraction of the task's pretraining captions that name a WRONG class
  (uniform over the task's other classes; the image is unchanged);
* **diversity** -- how wide the nuisance factors (background, pose, scale, rotation, colour jitter,
  tint, clutter) are drawn, for the task's images of every domain and its corpus images.

Captions are natural phrases drawn from per-task caption templates; every class of every task is
named in some pretraining caption (``generate`` checks it).  Generation is deterministic for a seed:
every (task, domain, split) and every corpus chunk has its own seeded random stream.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import paths
from .io import write_bytes, write_json
from .config import ConfigError, code_fingerprint, fingerprint, load_profile
from .splits import DatasetSource, Split, TaskSpec, register_source

S = 32  # image side
_YY, _XX = np.mgrid[0:S, 0:S].astype(np.float32)
_U0 = (_XX + 0.5) / S * 2 - 1  # [-1, 1]
_V0 = (_YY + 0.5) / S * 2 - 1

COLORS = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 210, 40),
    "orange": (240, 130, 30), "purple": (140, 60, 180), "pink": (240, 120, 180),
    "white": (240, 240, 240), "black": (25, 25, 25), "brown": (130, 80, 40), "gray": (128, 128, 128),
    "cyan": (40, 200, 210),
}
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

# ============================================================================ the design's constants
# Severity = the weight of the fully shifted look in a shifted domain's image.  Fixed, not tuned:
# "strong" is the full shift (world v1's shifted domain), "mild" exactly halfway between it and ID.
SEVERITY = {"mild": 0.5, "strong": 1.0}
DOMAIN_KINDS = ("id", "mild", "strong")
# The 2x2x2 design: factor -> its two level names (values in the profile's world.levels).
FACTORS = {"coverage": ("low", "high"), "caption_noise": ("clean", "noisy"), "diversity": ("tight", "varied")}


class WorldDesignError(ConfigError):
    """The world's design or its corpus breaks a rule of the design (docs/world.md)."""


# ============================================================================ real-image banks
@lru_cache(maxsize=None)
def _textures() -> dict[str, np.ndarray]:
    """Downsampled grayscale texture sources in [0, 1] (from scikit-image)."""
    from skimage import data as skd
    out = {}
    for name in ("grass", "gravel", "brick"):
        im = getattr(skd, name)().astype(np.float32) / 255.0
        out[name] = im.reshape(128, 4, 128, 4).mean(axis=(1, 3))
    ihc = skd.immunohistochemistry().astype(np.float32) / 255.0  # 512x512x3
    out["ihc"] = ihc.reshape(256, 2, 256, 2, 3).mean(axis=(1, 3))
    return out


@lru_cache(maxsize=None)
def _faces() -> np.ndarray:
    """100 LFW faces (scikit-image lfw_subset), resized to 28x28 grayscale in [0, 1]."""
    from skimage import data as skd
    from skimage.transform import resize
    faces = skd.lfw_subset()[:100]
    return np.stack([resize(f, (28, 28), anti_aliasing=True) for f in faces]).astype(np.float32)


@lru_cache(maxsize=None)
def _horse() -> np.ndarray:
    """scikit-image's horse silhouette as a 20x24 mask (True = horse)."""
    from skimage import data as skd
    from skimage.transform import resize
    h = ~skd.horse()  # horse is False on white
    return resize(h.astype(np.float32), (20, 24), anti_aliasing=True)


@lru_cache(maxsize=None)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 handwritten digits (8x8, 0..16) upsampled to 24x24 in [0, 1]."""
    from sklearn.datasets import load_digits
    from skimage.transform import resize
    d = load_digits()
    imgs = np.stack([resize(im / 16.0, (24, 24), order=1) for im in d.images]).astype(np.float32)
    return imgs, d.target.astype(np.int64)


def _pool(n: int, part: str, seed: int = 1234, test_fraction: float = 0.3) -> np.ndarray:
    """Disjoint index pools of a real-image bank: 'test' images never appear in train or corpus."""
    perm = np.random.default_rng(seed).permutation(n)
    k = int(round(n * test_fraction))
    return perm[:k] if part == "test" else perm[k:]


def _crop(tex: np.ndarray, rng, size: int = S) -> np.ndarray:
    h, w = tex.shape[:2]
    y = rng.integers(0, h - size + 1)
    x = rng.integers(0, w - size + 1)
    return tex[y:y + size, x:x + size]


# ============================================================================ nuisance draws
# ``d`` is the task's diversity level in [0, 1]: every nuisance factor is drawn from its nominal
# (wide) range shrunk around the range's middle by ``d`` (1 = the full range, 0 = the middle value).
def _r(rng, lo, hi, d, size=None, mid=None):
    """A nuisance value: uniform on [lo, hi] shrunk around ``mid`` (default the middle) by ``d``."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    mid = (lo + hi) / 2 if mid is None else np.asarray(mid, np.float64)
    a, b = mid - d * (mid - lo), mid + d * (hi - mid)
    out = rng.uniform(a, b, size)
    return out.astype(np.float32) if isinstance(out, np.ndarray) else float(out)


def _ri(rng, lo: int, hi: int, d) -> int:
    """An integer nuisance value in [lo, hi] (inclusive), its range shrunk around the middle by ``d``."""
    return int(np.clip(np.floor(_r(rng, lo, hi + 1, d, mid=(lo + hi + 1) / 2)), lo, hi))


def _pick(rng, options: list, d):
    """One of ``options``; a diversity ``d`` < 1 keeps only the first ceil(d * n) of them."""
    k = max(1, min(len(options), math.ceil(d * len(options) - 1e-9)))
    return options[int(rng.integers(k))]


def _coords(rng, d, scale=(0.45, 0.75), shift=0.35):
    s = _r(rng, *scale, d)
    tx, ty = _r(rng, -shift, shift, d, size=2)
    a = _r(rng, -np.pi, np.pi, d)
    u, v = _U0 - tx, _V0 - ty
    c, sn = np.cos(a), np.sin(a)
    return (c * u + sn * v) / s, (-sn * u + c * v) / s, s


def _nuisance(rng, d) -> dict:
    """The generic nuisance of every image: a background tint and clutter blobs, growing with d**2
    (tight worlds get almost none, varied ones a tint up to 30% and up to 3 blobs)."""
    return {"tint": rng.uniform(0, 0.3) * d * d, "tint_rgb": rng.uniform(0, 1, 3).astype(np.float32),
            "n_blobs": int(rng.uniform(0, 4 * d * d)), "blob_yx": rng.uniform(0, S, (3, 2)),
            "blob_r": rng.uniform(1.0, 2.5, (3, 2)), "blob_rgb": rng.uniform(0, 1, (3, 3)).astype(np.float32)}


def _apply_nuisance(img, nu):
    img = img * (1 - nu["tint"]) + nu["tint"] * nu["tint_rgb"]
    for k in range(nu["n_blobs"]):
        (cy, cx), (ry, rx) = nu["blob_yx"][k], nu["blob_r"][k]
        q = ((_YY - cy) / ry) ** 2 + ((_XX - cx) / rx) ** 2
        img = _blend(img, nu["blob_rgb"][k] * 255, np.clip((1.0 - q) * 3, 0, 1) * 0.8)
    return img


# ============================================================================ drawing helpers
def _sdf(shape: str, u, v):
    r = np.sqrt(u * u + v * v)
    if shape == "circle":
        return r - 0.8
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.65
    if shape == "diamond":
        return (np.abs(u) + np.abs(v)) - 0.85
    if shape == "triangle":
        return np.maximum(np.abs(u) * 0.866 + v * 0.5, -v) - 0.45
    if shape == "cross":
        a = np.maximum(np.abs(u) - 0.85, np.abs(v) - 0.28)
        b = np.maximum(np.abs(u) - 0.28, np.abs(v) - 0.85)
        return np.minimum(a, b)
    if shape == "ring":
        return np.abs(r - 0.65) - 0.18
    if shape == "star":
        th = np.arctan2(v, u)
        return r - (0.5 + 0.35 * np.cos(5 * th))
    if shape == "crescent":
        return np.maximum(r - 0.8, -(np.sqrt((u - 0.4) ** 2 + (v + 0.1) ** 2) - 0.65))
    raise KeyError(shape)


def _fill(sdf, sharp=12.0):
    return np.clip(0.5 - sdf * sharp, 0.0, 1.0)


def _outline(sdf, width=0.09, sharp=12.0):
    return np.clip(1.0 - (np.abs(sdf) - width) * sharp, 0.0, 1.0) * (np.abs(sdf) < width + 0.1)


def _blend(bg, color, alpha):
    color = np.asarray(color, np.float32).reshape(1, 1, 3) / 255.0
    return bg * (1 - alpha[..., None]) + color * alpha[..., None]


def _noise(rng, sigma):
    return rng.normal(0, sigma, (S, S, 3)).astype(np.float32)


def _smooth_noise(rng, cells=4):
    """Cheap value noise: a random low-res grid upsampled bilinearly to 32x32."""
    cells = int(cells)
    g = rng.random((cells + 1, cells + 1)).astype(np.float32)
    t = np.linspace(0, cells, S, dtype=np.float32)
    i = np.minimum(t.astype(int), cells - 1)
    f = t - i
    rows = g[i] * (1 - f)[:, None] + g[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def _to_uint8(img):
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _color_jitter(rng, rgb, amount=30.0):
    amount = int(round(amount))
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)


def _soft(x, sharp=3.0):
    """A soft mask from a signed value (> 0 inside)."""
    return np.clip(0.5 + x * sharp, 0.0, 1.0)


# ============================================================================ task renderers
class Renderer:
    """One task: its classes, prompt templates, caption templates and two looks of one sample.

    Subclasses implement ``scene`` (ALL random draws of one sample, the same for every domain) and
    ``look`` (the sample painted in the ID look or in the fully shifted look, no randomness).
    """
    name: str
    classnames: list[str]
    templates: list[str]
    id_domain: str
    shift: str          # the shift family: the shifted domains are <shift>_mild and <shift>_strong
    kind: str
    captions: dict      # "id" / "shift" -> caption templates with {c} (class phrase) and optional {color}
    noise_sigma = 0.03

    @property
    def ood_domains(self) -> list[str]:
        return [f"{self.shift}_{k}" for k in ("mild", "strong")]

    @property
    def domains(self) -> list[str]:
        return [self.id_domain, *self.ood_domains]

    def domain_kind(self, domain: str) -> str:
        """'id', 'mild' or 'strong'."""
        if domain == self.id_domain:
            return "id"
        for k in ("mild", "strong"):
            if domain == f"{self.shift}_{k}":
                return k
        raise ConfigError(f"task {self.name!r} has no domain {domain!r}; valid: {', '.join(self.domains)}")

    def severity(self, domain: str) -> float:
        kind = self.domain_kind(domain)
        return 0.0 if kind == "id" else SEVERITY[kind]

    def caption_templates(self, domain: str) -> list[str]:
        """ID captions for the ID domain, shift captions for strong, both for mild."""
        kind = self.domain_kind(domain)
        if kind == "id":
            return list(self.captions["id"])
        return (list(self.captions["id"]) if kind == "mild" else []) + list(self.captions["shift"])

    def scene(self, cls: int, rng, pool: str, d: float) -> dict:
        raise NotImplementedError

    def look(self, sc: dict, shifted: bool) -> np.ndarray:
        raise NotImplementedError

    def render(self, cls: int, domain: str, rng, pool: str, diversity: float = 1.0) -> tuple[np.ndarray, dict]:
        """One image of class ``cls`` in ``domain`` (uint8, 32x32x3) and its info (e.g. its colour).

        The random draws do not depend on the domain: the same stream gives the same sample in
        every domain, and a shifted domain's image is the blend of that sample's two looks.
        """
        s = self.severity(domain)
        d = float(diversity)
        sc = self.scene(int(cls), rng, pool, d)
        nu = _nuisance(rng, d)
        noise = _noise(rng, self.noise_sigma)
        if s <= 0.0:
            img = self.look(sc, False)
        elif s >= 1.0:
            img = self.look(sc, True)
        else:
            img = (1 - s) * self.look(sc, False) + s * self.look(sc, True)
        return _to_uint8(_apply_nuisance(img, nu) + noise), dict(sc.get("info", {}))

    def caption_phrase(self, cls: int, info: dict, rng) -> str:
        return self.classnames[cls]

    def spec(self) -> TaskSpec:
        return TaskSpec(self.name, list(self.classnames), list(self.templates), self.id_domain,
                        list(self.ood_domains), self.kind)


class Objects(Renderer):
    name, kind = "objects", "general objects (ImageNet-like)"
    shapes = ["circle", "square", "triangle", "star", "cross", "ring", "diamond", "crescent"]
    classnames = shapes + ["face"]
    templates = ["a photo of a {}."]
    id_domain, shift = "photo", "sketch"
    captions = {
        "id": ["a photo of a {color} {c}", "a {color} {c}", "a {c} on a textured background",
               "picture of a {color} {c}", "a photo of a {c}", "there is a {color} {c} here"],
        "shift": ["a sketch of a {c}", "a line drawing of a {c}", "a pencil sketch of a {c}",
                  "a black and white drawing of a {c}"],
    }

    def scene(self, cls, rng, pool, d):
        tex = _textures()[_pick(rng, ["grass", "gravel", "brick"], d)]
        bg = _crop(tex, rng)[..., None] * _r(rng, 0.3, 0.7, d) + _r(rng, 0.2, 0.9, d, size=3) * 0.5
        sc = {"bg": bg, "paper": np.full((S, S, 3), _r(rng, 0.85, 1.0, d), np.float32)}
        if cls < len(self.shapes):
            u, v, s = _coords(rng, d)
            sc.update(sdf=_sdf(self.shapes[cls], u, v), s=s)
            cname = _pick(rng, list(COLORS), d)
            sc["color"] = _color_jitter(rng, COLORS[cname], 30 * d)
            sc["info"] = {"color": str(cname)}
        else:
            faces = _faces()
            f = faces[rng.choice(_pool(len(faces), pool))]
            if rng.random() < 0.5:
                f = f[:, ::-1]
            sc.update(face=f, yx=(_ri(rng, 0, S - 28, d), _ri(rng, 0, S - 28, d)),
                      skin=_r(rng, 0.6, 1.0, d, size=3), info={"color": "natural"})
        return sc

    def look(self, sc, shifted):
        if "sdf" in sc:
            if not shifted:
                return _blend(sc["bg"], sc["color"], _fill(sc["sdf"], 14 * sc["s"]))
            return _blend(sc["paper"], (20, 20, 20), _outline(sc["sdf"], 0.08 / sc["s"], 14 * sc["s"]))
        f, (y, x) = sc["face"], sc["yx"]
        if not shifted:
            img = sc["bg"].copy()
            img[y:y + 28, x:x + 28] = f[..., None] * sc["skin"]
            return img
        img = sc["paper"].copy()
        gy, gx = np.gradient(f)
        edge = np.clip(np.sqrt(gx ** 2 + gy ** 2) * 6, 0, 1)[..., None]
        img[y:y + 28, x:x + 28] = img[y:y + 28, x:x + 28] * (1 - edge) + 0.08 * edge
        return img

    def caption_phrase(self, cls, info, rng):
        if cls == len(self.shapes):
            return str(rng.choice(["face", "human face", "person's face"]))
        return self.classnames[cls]


class Digits(Renderer):
    name, kind = "digits", "handwritten digits (MNIST-like)"
    classnames = NUMBER_WORDS
    templates = ["a handwritten digit {}."]
    id_domain, shift = "ink", "colored"
    noise_sigma = 0.035
    captions = {
        "id": ["the digit {c} written by hand", "a handwritten {c}", "the number {c} in white ink",
               "a scan of a handwritten {c}", "a handwritten digit {c}"],
        "shift": ["a colorful handwritten {c}", "the digit {c} on a colored background",
                  "a {color} handwritten {c}"],
    }
    ink_colors = ["red", "green", "blue", "yellow", "orange", "purple", "pink", "cyan"]

    # A digit cropped from a line of handwriting shows parts of its neighbours at the left and right
    # edges (a neighbour's centre 11-15 px from the crop's centre); the label is the middle digit.
    neighbour_gap = (11.0, 15.0)

    def scene(self, cls, rng, pool, d):
        from scipy.ndimage import affine_transform
        imgs, y = _digits()
        idx = _pool(len(imgs), pool)
        digit = imgs[rng.choice(idx[y[idx] == cls])]
        a, sc_ = _r(rng, -0.35, 0.35, d), _r(rng, 0.8, 1.25, d)
        m = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * sc_
        center = np.array([15.5, 15.5])
        glyph = np.zeros((S, S), np.float32)
        for k, dx in enumerate((0.0, -rng.uniform(*self.neighbour_gap), rng.uniform(*self.neighbour_gap))):
            canvas = np.zeros((S, S), np.float32)
            canvas[4:28, 4:28] = digit if k == 0 else imgs[rng.choice(idx)]
            off = center - m @ center + (_r(rng, -3.0, 3.0, d, size=2) if k == 0 else np.array([0.0, -dx]))
            glyph = np.maximum(glyph, affine_transform(canvas, m, offset=off, order=1))
        tex = _textures()[_pick(rng, ["grass", "gravel", "brick"], d)]
        bg = _crop(tex, rng)[..., None] * _r(rng, 0.4, 1.0, d, size=3)
        cname = _pick(rng, self.ink_colors, d)
        return {"glyph": glyph, "gain": _r(rng, 0.8, 1.0, d), "bg": bg,
                "color": _color_jitter(rng, COLORS[cname], 25 * d), "info": {"color": str(cname)}}

    def look(self, sc, shifted):
        if not shifted:
            return np.repeat(sc["glyph"][..., None], 3, axis=2) * sc["gain"]
        return _blend(sc["bg"], sc["color"], np.clip(sc["glyph"] * 1.3, 0, 1))

    def caption_phrase(self, cls, info, rng):
        return str(cls) if rng.random() < 0.35 else NUMBER_WORDS[cls]


class Landcover(Renderer):
    name, kind = "landcover", "overhead land cover (EuroSAT / FMoW-like)"
    classnames = ["forest", "sea", "river", "farmland", "residential area", "highway", "desert",
                  "pasture"]
    templates = ["a satellite photo of {}."]
    id_domain, shift = "summer", "winter"
    noise_sigma = 0.02
    captions = {
        "id": ["a satellite photo of {c}", "an aerial view of {c}", "{c} seen from above",
               "satellite imagery of {c}", "an overhead image of {c}"],
        "shift": ["a satellite photo of {c} in winter", "snowy {c} seen from above",
                  "an aerial view of {c} covered in snow"],
    }

    # A tile is rarely one land type (EuroSAT's tiles mix them): a second, other class covers a
    # part of the tile beyond a straight boundary at a random angle; the label is the majority class.
    mixed_share = (0.2, 0.45)

    def scene(self, cls, rng, pool, d):
        other = int((cls + 1 + rng.integers(len(self.classnames) - 1)) % len(self.classnames))
        main, second = self._land(self.classnames[cls], rng, d), self._land(self.classnames[other], rng, d)
        a = rng.uniform(0, 2 * np.pi)
        proj = _U0 * np.cos(a) + _V0 * np.sin(a)              # a signed distance across the tile
        cut = np.quantile(proj, 1 - rng.uniform(*self.mixed_share))
        mask = np.clip((proj - cut) * 8 + 0.5, 0, 1)[..., None]
        img = main * (1 - mask) + second * mask
        img = img * _r(rng, 0.8, 1.2, d) * _r(rng, 0.9, 1.1, d, size=3)
        snow = np.clip(_smooth_noise(rng, 3) * 1.4 - 0.2, 0, 1)[..., None]
        water = {"sea", "river"}
        snow = snow * np.where(mask > 0.5, 0.3 if self.classnames[other] in water else 1.0,
                               0.3 if self.classnames[cls] in water else 1.0)
        return {"img": img.astype(np.float32), "snow": snow.astype(np.float32)}

    def _land(self, name, rng, d):
        """One land type filling the whole tile."""
        tex = _textures()
        n = _smooth_noise(rng, _ri(rng, 3, 6, d))
        g = _crop(tex["grass"], rng)
        if name == "forest":
            img = np.stack([0.10 + 0.1 * n, 0.30 + 0.2 * g, 0.10 + 0.05 * n], -1)
        elif name == "sea":
            w = 0.03 * np.sin(_XX * _r(rng, 0.5, 1.2, d) + _YY * _r(rng, 0.2, 0.8, d))
            img = np.stack([0.05 + w, 0.25 + 0.1 * n + w, 0.55 + 0.15 * n + w], -1)
        elif name == "river":
            land = np.stack([0.35 + 0.1 * g, 0.45 + 0.15 * g, 0.2 + 0.05 * n], -1)
            ph, fr, amp = rng.uniform(0, 6), _r(rng, 0.1, 0.3, d), _r(rng, 2, 6, d)
            center = S / 2 + amp * np.sin(_YY * fr + ph) + _r(rng, -6, 6, d)
            wmask = np.clip(_r(rng, 2.0, 4.0, d) - np.abs(_XX - center), 0, 1)
            if rng.random() < 0.5:
                wmask = wmask.T
            img = _blend(land, (30, 70, 160), wmask)
        elif name == "farmland":
            img = np.zeros((S, S, 3), np.float32)
            k = _ri(rng, 2, 3, d)
            for i in range(k):
                for j in range(k):
                    col = np.array([rng.uniform(0.5, 0.85), rng.uniform(0.5, 0.8), rng.uniform(0.1, 0.3)])
                    stripe = 0.08 * np.sin((_XX if (i + j) % 2 else _YY) * rng.uniform(1.0, 2.0))
                    ys, xs = slice(i * S // k, (i + 1) * S // k), slice(j * S // k, (j + 1) * S // k)
                    img[ys, xs] = col + stripe[ys, xs, None]
        elif name == "residential area":
            img = np.stack([0.45 + 0.1 * g] * 3, -1) * np.array([1.0, 1.02, 0.95], np.float32)
            step = _ri(rng, 5, 7, d)
            ox, oy = rng.integers(0, step, 2)
            for y in range(oy, S - 2, step):
                for x in range(ox, S - 2, step):
                    roof = (0.7, 0.25, 0.2) if rng.random() < 0.6 else (0.75, 0.75, 0.75)
                    img[y:y + step - 2, x:x + step - 2] = roof
        elif name == "highway":
            img = np.stack([0.30 + 0.1 * g, 0.45 + 0.15 * g, 0.22 + 0.05 * n], -1)
            a = _r(rng, 0, np.pi, d)
            dist = np.abs((_XX - S / 2 - _r(rng, -6, 6, d)) * np.cos(a) + (_YY - S / 2) * np.sin(a))
            img = _blend(img, (90, 90, 95), np.clip(4.0 - dist, 0, 1))
            img = _blend(img, (235, 235, 235), np.clip(0.7 - dist, 0, 1))
        elif name == "desert":
            dunes = 0.06 * np.sin(_XX * _r(rng, 0.3, 0.6, d) + 3 * n)
            sand = _crop(tex["gravel"], rng) * 0.1
            img = np.stack([0.85 + dunes + sand, 0.72 + dunes + sand, 0.45 + dunes], -1)
        elif name == "pasture":
            img = np.stack([0.45 + 0.1 * n, 0.70 + 0.1 * n, 0.30 + 0.05 * g], -1)
        else:  # pragma: no cover
            raise KeyError(name)
        return img.astype(np.float32)

    def look(self, sc, shifted):
        img = sc["img"]
        if not shifted:
            return img
        snow = sc["snow"]
        img = img * (1 - 0.7 * snow) + 0.95 * 0.7 * snow
        return 0.75 * img + 0.25 * np.array([0.7, 0.75, 0.85], np.float32)  # haze, bluish sensor


class Pathology(Renderer):
    name, kind = "pathology", "H&E histopathology patches (Camelyon17-like)"
    classnames = ["normal lymph tissue", "tumor tissue", "adipose tissue", "stroma"]
    templates = ["a microscope image of {}."]
    id_domain, shift = "hospital_a", "hospital_b"
    noise_sigma = 0.025
    captions = {
        "id": ["a microscope image of {c}", "a histology slide showing {c}",
               "an H&E stained patch of {c}"],
        "shift": ["a microscope image of {c}", "a stained slide of {c}",
                  "a slide of {c} from another laboratory"],
    }
    stains = {False: ((0.35, 0.15, 0.55), (0.95, 0.65, 0.80)),   # hospital_a: (nuclei, eosin background)
              True: ((0.20, 0.25, 0.50), (0.80, 0.70, 0.85))}    # hospital_b

    def scene(self, cls, rng, pool, d):
        jitter = _r(rng, -0.08, 0.08, d, size=3)
        ihc = _crop(_textures()["ihc"], rng).mean(-1, keepdims=True)
        sc = {"jitter": jitter, "tex": (ihc - ihc.mean()) * _r(rng, 0.2, 0.4, d), "white": None, "fib": None}
        name = self.classnames[cls]
        if name == "adipose tissue":
            cells = np.ones((S, S), np.float32)
            for _ in range(rng.integers(4, 8)):
                cy, cx, r = rng.uniform(0, S), rng.uniform(0, S), rng.uniform(4, 8)
                cells = np.minimum(cells, np.clip(np.sqrt((_YY - cy) ** 2 + (_XX - cx) ** 2) - r, 0, 1))
            sc["white"] = 1 - cells
            nuclei = [(rng.uniform(0, S), rng.uniform(0, S), 1.0, 1.0) for _ in range(rng.integers(1, 4))]
        elif name == "stroma":
            a = rng.uniform(0, np.pi)
            sc["fib"] = 0.5 + 0.5 * np.sin((_XX * np.cos(a) + _YY * np.sin(a)) * rng.uniform(0.8, 1.4)
                                           + 2 * _smooth_noise(rng))
            nuclei = [(rng.uniform(0, S), rng.uniform(0, S), 0.7, 2.2) for _ in range(rng.integers(3, 7))]
        elif name == "normal lymph tissue":
            nuclei = [(rng.uniform(0, S), rng.uniform(0, S), 1.2, 1.2) for _ in range(rng.integers(25, 40))]
        else:  # tumor
            nuclei = [(rng.uniform(0, S), rng.uniform(0, S), rng.uniform(1.8, 3.2), rng.uniform(1.8, 3.2))
                      for _ in range(rng.integers(14, 24))]
        mask = np.zeros((S, S), np.float32)
        for cy, cx, ry, rx in nuclei:
            a = rng.uniform(0, np.pi)
            du, dv = (_XX - cx), (_YY - cy)
            q = ((du * np.cos(a) + dv * np.sin(a)) / rx) ** 2 + ((-du * np.sin(a) + dv * np.cos(a)) / ry) ** 2
            mask = np.maximum(mask, np.clip((1.2 - q) * 3, 0, 1))
        sc.update(mask=mask * _r(rng, 0.7, 0.95, d), gain=_r(rng, 0.9, 1.1, d))
        return sc

    def look(self, sc, shifted):
        nuc_col, bg_col = (np.array(c, np.float32) for c in self.stains[shifted])
        img = np.ones((S, S, 3), np.float32) * (bg_col + sc["jitter"]) + sc["tex"]
        if sc["white"] is not None:
            img = _blend(img, (250, 245, 250), sc["white"])
        if sc["fib"] is not None:
            img = img * (0.85 + 0.15 * sc["fib"][..., None])
        img = _blend(img, nuc_col * 255, sc["mask"])
        if shifted:
            img = img * 0.9 + 0.03
        return img * sc["gain"]


class CameraTrap(Renderer):
    name, kind = "camera_trap", "camera-trap wildlife (iWildCam-like)"
    classnames = ["deer", "wild boar", "fox", "rabbit", "horse", "empty forest"]
    templates = ["a camera trap photo of a {}."]
    id_domain, shift = "day", "night"
    noise_sigma = 0.02
    captions = {
        "id": ["a camera trap photo of a {c}", "a {c} in the forest", "a trail camera picture of a {c}",
               "wildlife camera: a {c}"],
        "shift": ["an infrared camera trap photo of a {c} at night", "a {c} at night",
                  "a night-time trail camera picture of a {c}"],
    }

    def _background(self, rng, d):
        g = _crop(_textures()["grass"], rng)
        sky = np.clip(1.2 - _V0 * 1.0, 0, 1)[..., None]
        ground = np.stack([0.30 + 0.15 * g, 0.45 + 0.2 * g, 0.2 + 0.1 * g], -1) * _r(rng, 0.85, 1.15, d, size=3)
        img = ground * (1 - sky * 0.3) + np.array([0.55, 0.7, 0.55], np.float32) * sky * 0.3
        for _ in range(_ri(rng, 1, 3, d)):  # tree trunks
            x = rng.integers(0, S)
            w = rng.integers(1, 4)
            img[: int(S * 0.75), x:x + w] = np.array([0.3, 0.22, 0.15]) * _r(rng, 0.7, 1.2, d)
        return img

    def _animal(self, name, rng, d):
        """Soft mask and colour of an animal built from ellipses, at a random place and size."""
        sc = _r(rng, 0.75, 1.25, d)
        cx, cy = _r(rng, 9, 23, d), _r(rng, 15, 23, d)
        flip = -1 if rng.random() < 0.5 else 1

        def ell(x, y, rx, ry):
            q = ((_XX - (cx + flip * x * sc)) / (rx * sc)) ** 2 + ((_YY - (cy + y * sc)) / (ry * sc)) ** 2
            return np.clip((1.0 - q) * 3, 0, 1)

        def leg(x, y0, y1, w=0.8):
            return np.clip(w * sc - np.abs(_XX - (cx + flip * x * sc)), 0, 1) * (_YY > cy + y0 * sc) * (_YY < cy + y1 * sc)

        if name == "deer":
            parts = [ell(0, 0, 6, 3), ell(6, -6, 1.2, 4), ell(7.5, -9.5, 2.2, 1.5)] + [leg(x, 1, 9, 0.7) for x in (-4, -2, 3, 5)]
            col = (150, 100, 55)
        elif name == "wild boar":
            parts = [ell(0, 2, 7, 4), ell(7, 3, 3, 2.5)] + [leg(x, 4, 8, 1.0) for x in (-4, -1, 2, 5)]
            col = (60, 45, 35)
        elif name == "fox":
            parts = [ell(0, 2, 5, 2.3), ell(6, 0, 2.2, 2), ell(-7, 1, 4, 1.3), ell(6.5, -2.4, 0.8, 1.3)] + [leg(x, 3, 7, 0.6) for x in (-3, 3)]
            col = (215, 110, 40)
        elif name == "rabbit":
            parts = [ell(0, 4, 3.5, 2.8), ell(3, 1.5, 1.8, 1.6), ell(3, -2.5, 0.6, 2.5), ell(4.2, -2.5, 0.6, 2.5)]
            col = (150, 140, 130)
        elif name == "horse":
            h = _horse()
            m = np.zeros((S, S), np.float32)
            y0, x0 = int(np.clip(cy - 12, 0, S - 20)), int(np.clip(cx - 12, 0, S - 24))
            m[y0:y0 + 20, x0:x0 + 24] = h[:, ::flip]
            return m, (95, 60, 40)
        else:
            return np.zeros((S, S), np.float32), (0, 0, 0)
        return np.clip(np.max(parts, axis=0), 0, 1), col

    def scene(self, cls, rng, pool, d):
        img = self._background(rng, d)
        mask, col = self._animal(self.classnames[cls], rng, d)
        img = _blend(img, _color_jitter(rng, col, 25 * d), mask)
        return {"img": img * _r(rng, 0.75, 1.2, d), "ir_noise": _noise(rng, 0.06).mean(-1, keepdims=True)}

    def look(self, sc, shifted):
        img = sc["img"]
        if not shifted:
            return img
        lum = img.mean(-1, keepdims=True)
        flash = np.clip(1.3 - 0.7 * np.sqrt(_U0 ** 2 + _V0 ** 2), 0, 1)[..., None]
        return np.repeat(lum * flash * 1.3, 3, axis=2) + sc["ir_noise"]

    def caption_phrase(self, cls, info, rng):
        return "empty forest with no animal" if cls == 5 and rng.random() < 0.5 else self.classnames[cls]


def _seven_segment(u, v, digit: int, w=0.16):
    """Mask of a seven-segment digit in a box u in [-0.5, 0.5], v in [-1, 1]."""
    on = {0: "abcdef", 1: "bc", 2: "abdeg", 3: "abcdg", 4: "bcfg", 5: "acdfg", 6: "acdefg", 7: "abc",
          8: "abcdefg", 9: "abcdfg"}[digit]
    segs = {"a": (0, -1, 0.5, w), "g": (0, 0, 0.5, w), "d": (0, 1, 0.5, w),           # horizontal: (cu, cv, half-length, half-width)
            "f": (-0.5, -0.5, w, 0.5), "b": (0.5, -0.5, w, 0.5), "e": (-0.5, 0.5, w, 0.5), "c": (0.5, 0.5, w, 0.5)}
    m = np.zeros_like(u)
    for s in on:
        cu, cv, hu, hv = segs[s]
        m = np.maximum(m, _soft(np.minimum(hu - np.abs(u - cu), hv - np.abs(v - cv)), 8.0))
    return m


class TrafficSigns(Renderer):
    name, kind = "traffic_signs", "traffic signs (GTSRB-like)"
    classnames = ["stop", "yield", "no entry", "speed limit", "roundabout", "pedestrian crossing", "keep right"]
    templates = ["a photo of a {} traffic sign."]
    id_domain, shift = "clear", "motion_blur"
    noise_sigma = 0.025
    captions = {
        "id": ["a photo of a {c} sign", "a {c} sign by the road", "a road sign: {c}", "the {c} traffic sign",
               "a {c} sign on a pole"],
        "shift": ["a blurry photo of a {c} sign", "a {c} sign seen from a moving car",
                  "a motion-blurred {c} road sign"],
    }
    RED, BLUE, WHITE, BLACK = (200, 30, 35), (30, 70, 180), (240, 240, 240), (20, 20, 20)

    def scene(self, cls, rng, pool, d):
        # background: sky above a wall / gravel / grass band, with a pole under the sign
        tex = _textures()[_pick(rng, ["brick", "gravel", "grass"], d)]
        sky = _r(rng, (0.35, 0.45, 0.55), (0.85, 0.9, 1.0), d, size=3)
        ground = _crop(tex, rng)[..., None] * _r(rng, 0.3, 0.8, d, size=3) + 0.1
        horizon = _r(rng, 8, 24, d)
        img = np.where((_YY < horizon)[..., None], sky, ground).astype(np.float32)
        cx, cy, rad = _r(rng, 11, 21, d), _r(rng, 10, 18, d), _r(rng, 8.0, 12.5, d)
        a, squash = _r(rng, -0.35, 0.35, d), _r(rng, 0.7, 1.0, d, mid=0.9)
        img = _blend(img, (110, 110, 115), np.clip(1.2 - np.abs(_XX - cx), 0, 1) * (_YY > cy))
        du, dv = _XX - cx, _YY - cy
        u = (du * np.cos(a) + dv * np.sin(a)) / (rad * squash)
        v = (-du * np.sin(a) + dv * np.cos(a)) / rad
        r = np.sqrt(u * u + v * v)
        sharp = rad / 1.5
        jit = [_color_jitter(rng, c, 25 * d) for c in (self.RED, self.BLUE, self.WHITE)]
        red, blue, white = jit
        first = int(rng.choice([3, 5, 6, 8]))
        phase = rng.uniform(0, 2 * np.pi)
        name = self.classnames[cls]
        if name == "stop":
            octa = np.maximum(np.maximum(np.abs(u), np.abs(v)), (np.abs(u) + np.abs(v)) / np.sqrt(2) * 1.08)
            img = _blend(img, red, _soft(0.95 - octa, sharp))
            for i in range(4):   # the four letters, as white blocks
                img = _blend(img, white, _soft(np.minimum(0.12 - np.abs(u - (-0.54 + 0.36 * i)), 0.26 - np.abs(v)), sharp))
        elif name == "yield":   # a triangle pointing down
            tri = np.maximum(np.abs(u) * 0.866 + v * 0.5, -v) - 0.5
            img = _blend(img, red, _soft(-tri, sharp))
            img = _blend(img, white, _soft(-(tri + 0.22), sharp))
        elif name == "no entry":
            img = _blend(img, red, _soft(0.95 - r, sharp))
            img = _blend(img, white, _soft(np.minimum(0.7 - np.abs(u), 0.19 - np.abs(v)), sharp))
        elif name == "speed limit":
            img = _blend(img, red, _soft(0.95 - r, sharp))
            img = _blend(img, white, _soft(0.72 - r, sharp))
            for k, (cu, dig) in enumerate(((-0.26, first), (0.26, 0))):
                img = _blend(img, self.BLACK, _seven_segment((u - cu) / 0.36, v / 0.4, dig))
        elif name == "roundabout":
            img = _blend(img, blue, _soft(0.95 - r, sharp))
            th = np.arctan2(v, u)
            ring = _soft(0.12 - np.abs(r - 0.5), sharp) * (np.cos(3 * th + phase) > -0.6)
            img = _blend(img, white, ring)
        elif name == "pedestrian crossing":
            img = _blend(img, blue, _soft(0.9 - np.maximum(np.abs(u), np.abs(v)), sharp))
            tri = np.maximum(np.abs(u) * 0.866 - v * 0.5, v) - 0.42      # pointing up
            img = _blend(img, white, _soft(-tri, sharp))
            fig = np.maximum(_soft(np.minimum(0.07 - np.abs(u), 0.2 - np.abs(v - 0.1)), sharp),
                             _soft(0.1 - np.sqrt(u ** 2 + (v + 0.2) ** 2), sharp))
            img = _blend(img, self.BLACK, fig)
        else:  # keep right: a white arrow pointing down-right on a blue disc
            img = _blend(img, blue, _soft(0.95 - r, sharp))
            t = np.clip((u + v) / 2, -0.45, 0.25)
            shaft = np.sqrt((u - t) ** 2 + (v - t) ** 2)
            head = np.maximum(np.abs(u - v) / np.sqrt(2) - (0.55 - (u + v) / np.sqrt(2)) * 0.9, -(u + v) / np.sqrt(2) + 0.25)
            img = _blend(img, white, np.maximum(_soft(0.12 - shaft, sharp), _soft(-head, sharp)))
        # the shifted look's motion: a line kernel of this length and angle
        length, ang = _r(rng, 5.0, 9.0, d), rng.uniform(0, np.pi)
        return {"img": img * _r(rng, 0.7, 1.2, d), "blur": (length, ang)}

    def look(self, sc, shifted):
        img = sc["img"]
        if not shifted:
            return img
        from scipy.ndimage import convolve, gaussian_filter
        length, ang = sc["blur"]
        k = np.zeros((11, 11), np.float32)
        for t in np.linspace(-length / 2, length / 2, 25):
            k[int(round(5 + t * np.sin(ang))), int(round(5 + t * np.cos(ang)))] += 1
        k /= k.sum()
        out = np.stack([convolve(gaussian_filter(img[..., c], 0.6), k, mode="nearest") for c in range(3)], -1)
        return out * 0.85 + 0.06


class Flowers(Renderer):
    name, kind = "flowers", "flower species (Flowers102-like)"
    classnames = ["sunflower", "daisy", "rose", "tulip", "lavender", "poppy", "dandelion"]
    templates = ["a photo of a {}, a type of flower."]
    id_domain, shift = "garden", "vintage"
    captions = {
        "id": ["a photo of a {c}", "a {c} in the garden", "a close-up of a {c} flower", "a blooming {c}",
               "a {c} in bloom"],
        "shift": ["an old photo of a {c}", "a vintage photograph of a {c}", "a faded sepia picture of a {c}"],
    }
    palette = {"rose": [(200, 25, 45), (240, 120, 160), (245, 235, 215)],
               "tulip": [(215, 35, 40), (235, 110, 170), (240, 205, 40), (130, 50, 150)]}

    def scene(self, cls, rng, pool, d):
        base = _r(rng, (0.12, 0.30, 0.08), (0.35, 0.60, 0.30), d, size=3)
        leaves = (_smooth_noise(rng, _ri(rng, 3, 6, d)) - 0.5)[..., None] * 0.3
        img = base + leaves + _crop(_textures()["grass"], rng)[..., None] * 0.15
        cx, cy, rad = _r(rng, 11, 21, d), _r(rng, 11, 21, d), _r(rng, 8.0, 13.0, d)
        rot = _r(rng, -np.pi, np.pi, d)
        jit = 25 * d
        name = self.classnames[cls]
        r = np.sqrt((_XX - cx) ** 2 + (_YY - cy) ** 2) / rad
        th = np.arctan2(_YY - cy, _XX - cx) + rot
        col_pick = {k: _color_jitter(rng, _pick(rng, v, d), jit) for k, v in self.palette.items()}
        spikes = [(_r(rng, -7, 7, d), rng.uniform(3, 9)) for _ in range(4)]
        fluff = _smooth_noise(rng, 6)
        if name == "sunflower":
            petals = _soft(0.55 + 0.45 * np.abs(np.cos(8 * th)) ** 0.6 - r, 6)
            img = _blend(img, _color_jitter(rng, (240, 195, 30), jit), petals)
            img = _blend(img, (95, 55, 20), _soft(0.42 - r, 8) * (0.8 + 0.2 * fluff))
        elif name == "daisy":
            petals = _soft(0.25 + 0.75 * np.abs(np.cos(6.5 * th)) ** 2 - r, 6)
            img = _blend(img, _color_jitter(rng, (245, 245, 240), jit), petals)
            img = _blend(img, (235, 195, 40), _soft(0.22 - r, 8))
        elif name == "dandelion":
            petals = _soft((0.6 + 0.4 * np.abs(np.cos(20 * th)) ** 3) * (0.85 + 0.2 * fluff) - r, 6)
            img = _blend(img, _color_jitter(rng, (250, 215, 45), jit), petals)
            img = _blend(img, (225, 180, 30), _soft(0.3 - r, 6))
        elif name == "poppy":
            petals = _soft(0.72 + 0.28 * np.abs(np.cos(2 * th)) - r, 6)
            img = _blend(img, _color_jitter(rng, (230, 60, 25), jit), petals)
            img = _blend(img, (25, 20, 20), _soft(0.2 - r, 8))
        elif name == "rose":
            disc = _soft(0.8 * (1 + 0.08 * np.cos(5 * th)) - r, 6)
            col = col_pick["rose"]
            img = _blend(img, col, disc)
            spiral = (np.sin(2 * np.pi * r / 0.22 + th) > 0.55) * disc * (r < 0.75)
            img = _blend(img, tuple(int(c * 0.55) for c in col), spiral.astype(np.float32))
        elif name == "tulip":
            dx, dy = (_XX - cx) / rad, (_YY - cy) / rad
            img = _blend(img, (50, 130, 40), np.clip(1.2 - np.abs(_XX - cx), 0, 1) * (dy > 0.3))
            top = -0.5 + 0.35 * np.abs(np.sin(np.pi * (dx + 0.7) / 0.7))
            cup = _soft(1 - (dx / 0.7) ** 2 - ((dy - 0.05) / 0.7) ** 2, 4) * _soft(dy - top, 8)
            img = _blend(img, col_pick["tulip"], cup)
        else:  # lavender: purple spikes of small florets on green stems
            for k, (ox, top) in enumerate(spikes):
                x0 = cx + ox * 0.6
                img = _blend(img, (70, 120, 50), np.clip(0.9 - np.abs(_XX - x0), 0, 1) * (_YY > top))
                florets = np.clip(2.2 - np.abs(_XX - x0), 0, 1) * (_YY > top) * (_YY < top + 13) \
                    * (np.sin(_YY * 2.2 + k) > -0.5)
                img = _blend(img, _color_jitter(rng, (135, 85, 210), jit), florets.astype(np.float32))
        vignette = np.clip(1 - 0.4 * (_U0 ** 2 + _V0 ** 2), 0, 1)[..., None]
        return {"img": img * _r(rng, 0.8, 1.15, d), "vignette": vignette,
                "grain": rng.normal(0, 0.04, (S, S, 1)).astype(np.float32)}

    def look(self, sc, shifted):
        img = sc["img"]
        if not shifted:
            return img
        lum = img @ np.array([0.3, 0.59, 0.11], np.float32)
        sepia = lum[..., None] * np.array([1.07, 0.74, 0.43], np.float32) + 0.05
        return (0.7 * sepia + 0.22) * sc["vignette"] + sc["grain"]


class Textures(Renderer):
    name, kind = "textures", "describable textures (DTD-like)"
    classnames = ["striped", "polka-dotted", "chequered", "zigzagged", "honeycombed", "crosshatched",
                  "swirly", "cracked"]
    templates = ["a photo of a {} texture."]
    id_domain, shift = "flat", "warped"
    noise_sigma = 0.025
    captions = {
        "id": ["a {c} pattern", "a close-up of a {c} surface", "a {c} texture", "fabric with a {c} pattern",
               "a photo of a {c} texture"],
        "shift": ["a crumpled {c} fabric", "a {c} pattern on a wrinkled cloth", "a distorted {c} texture"],
    }

    def scene(self, cls, rng, pool, d):
        period = _r(rng, 5.0, 9.0, d)
        a = _r(rng, -np.pi / 2, np.pi / 2, d)
        ox, oy = rng.uniform(0, 32, 2)
        u = ((_XX - ox) * np.cos(a) + (_YY - oy) * np.sin(a)) / period
        v = (-(_XX - ox) * np.sin(a) + (_YY - oy) * np.cos(a)) / period
        light, dark = _r(rng, 0.6, 1.0, d, size=3), _r(rng, 0.0, 0.4, d, size=3)
        if rng.random() < 0.5 * d:          # varied worlds also draw dark-on-light / light-on-dark swapped
            light, dark = dark, light
        name = self.classnames[cls]
        sharp = period / 2
        if name == "striped":
            m = _soft(np.sin(2 * np.pi * u), sharp / 4)
        elif name == "polka-dotted":
            fu, fv = u - np.floor(u) - 0.5, v - np.floor(v) - 0.5
            m = _soft(0.28 - np.sqrt(fu ** 2 + fv ** 2), sharp)
        elif name == "chequered":
            m = _soft(np.sin(np.pi * u) * np.sin(np.pi * v), sharp / 2)
        elif name == "zigzagged":
            tri = np.abs(u - np.floor(u) - 0.5) * 2
            m = _soft(np.sin(2 * np.pi * (v + 0.8 * tri)), sharp / 4)
        elif name == "honeycombed":
            k = 2 * np.pi * 2 / np.sqrt(3)
            f = sum(np.cos(k * (u * np.cos(t) + v * np.sin(t))) for t in (0, 2 * np.pi / 3, 4 * np.pi / 3))
            m = _soft(-(f + 0.2), 1.5)
        elif name == "crosshatched":
            fu, fv = u * 1.6 - np.floor(u * 1.6) - 0.5, v * 1.6 - np.floor(v * 1.6) - 0.5
            m = np.maximum(_soft(0.1 - np.abs(fu), sharp), _soft(0.1 - np.abs(fv), sharp))
        elif name == "swirly":
            rr = np.sqrt((_XX - ox) ** 2 + (_YY - oy) ** 2) / period
            th = np.arctan2(_YY - oy, _XX - ox)
            m = _soft(np.sin(2 * np.pi * rr + 3 * th), sharp / 4)
        else:  # cracked: dark thin lines on the borders of random cells
            pts = rng.uniform(-4, S + 4, (_ri(rng, 8, 16, d), 2))
            dist = np.sort(np.sqrt((_YY[None] - pts[:, 0, None, None]) ** 2 + (_XX[None] - pts[:, 1, None, None]) ** 2), axis=0)
            m = 1 - _soft(0.9 - (dist[1] - dist[0]), 2.0)
        img = dark[None, None] * (1 - m[..., None]) + light[None, None] * m[..., None]
        g = _r(rng, -0.35, 0.35, d, size=2)
        img = img * (1 + g[0] * _U0 + g[1] * _V0)[..., None] + (_crop(_textures()["gravel"], rng)[..., None] - 0.5) * 0.12
        return {"img": img.astype(np.float32), "warp": (_smooth_noise(rng, 3) - 0.5, _smooth_noise(rng, 3) - 0.5),
                "fold": _smooth_noise(rng, 4)}

    def look(self, sc, shifted):
        img = sc["img"]
        if not shifted:
            return img
        from scipy.ndimage import map_coordinates
        wy, wx = sc["warp"]
        coords = [_YY + 8.0 * wy, _XX + 8.0 * wx]
        out = np.stack([map_coordinates(img[..., c], coords, order=1, mode="reflect") for c in range(3)], -1)
        return out * (0.6 + 0.6 * sc["fold"])[..., None]


RENDERERS: dict[str, Renderer] = {r.name: r for r in (Objects(), Digits(), Landcover(), Pathology(), CameraTrap(),
                                                      TrafficSigns(), Flowers(), Textures())}


# ============================================================================ the design
def _design_error(msg: str) -> WorldDesignError:
    return WorldDesignError(f"{msg} (see docs/world.md and params/profiles/mini.yaml)")


def check_design(wcfg: dict) -> dict[str, dict[str, float]]:
    """Validate the world's design; returns task -> {factor: level value} for every task of the world.

    Every task of ``world.tasks`` needs a ``world.design`` entry naming one level of each factor;
    when the world holds as many tasks as the design has cells, the tasks fill every cell once.
    """
    tasks = list(wcfg["tasks"])
    unknown = [t for t in tasks if t not in RENDERERS]
    if unknown:
        raise ConfigError(f"unknown task(s) {unknown} in world.tasks; valid: {', '.join(RENDERERS)}")
    levels, design = wcfg.get("levels"), wcfg.get("design")
    if not isinstance(levels, dict) or not isinstance(design, dict):
        raise _design_error("the world needs 'levels' and 'design' mappings (world.corpus.coverage of "
                            "world v1 is gone)")
    for factor, names in FACTORS.items():
        got = levels.get(factor)
        if not isinstance(got, dict) or sorted(got) != sorted(names):
            raise _design_error(f"world.levels.{factor} must give the levels {', '.join(names)}, got "
                                f"{sorted(got) if isinstance(got, dict) else got!r}")
    for t in design:
        if t not in RENDERERS:
            raise _design_error(f"world.design names unknown task {t!r}; valid: {', '.join(RENDERERS)}")
    missing = [t for t in tasks if t not in design]
    if missing:
        raise _design_error(f"world.design has no cell for task(s) {', '.join(missing)}: give each task of "
                            f"world.tasks one level of {', '.join(FACTORS)}")
    out, cells = {}, {}
    for t in tasks:
        entry = design[t]
        if not isinstance(entry, dict):
            raise _design_error(f"world.design.{t} must be a mapping of {', '.join(FACTORS)} to level names")
        extra = [k for k in entry if k not in FACTORS]
        if extra:
            raise _design_error(f"world.design.{t} has unknown factor(s) {', '.join(extra)}; valid: {', '.join(FACTORS)}")
        vals = {}
        for factor, names in FACTORS.items():
            lv = entry.get(factor)
            if lv not in names:
                raise _design_error(f"world.design.{t}.{factor}: {lv!r} is not a level of {factor}; "
                                    f"valid: {', '.join(names)}")
            vals[factor] = float(levels[factor][lv])
        cell = tuple(entry[f] for f in FACTORS)
        cells.setdefault(cell, []).append(t)
        out[t] = vals
    n_cells = math.prod(len(v) for v in FACTORS.values())
    if len(tasks) == n_cells:
        twice = {c: ts for c, ts in cells.items() if len(ts) > 1}
        empty = [c for c in itertools.product(*FACTORS.values()) if c not in cells]
        if twice or empty:
            fmt = lambda c: "/".join(c)  # noqa: E731
            raise _design_error(
                "the design's tasks must fill its cells exactly once: "
                + "; ".join([f"cell {fmt(c)} holds {', '.join(ts)}" for c, ts in twice.items()]
                            + [f"cell {fmt(c)} holds no task" for c in empty]))
    for factor in ("coverage",):
        if any(float(v) <= 0 for v in levels[factor].values()):
            raise _design_error("world.levels.coverage values must be > 0: every task's classes must be "
                                "named in pretraining")
    for v in levels["caption_noise"].values():
        if not 0 <= float(v) < 1:
            raise _design_error(f"world.levels.caption_noise values must be in [0, 1), got {v}")
    for v in levels["diversity"].values():
        if not 0 <= float(v) <= 1:
            raise _design_error(f"world.levels.diversity values must be in [0, 1], got {v}")
    return out


def corpus_entries(wcfg: dict) -> tuple[list[tuple[str, str]], np.ndarray]:
    """The corpus's (task, domain) strata and their probabilities: the task's coverage level times
    the domain's ``world.corpus.domain_share``."""
    lv = check_design(wcfg)
    share = wcfg["corpus"].get("domain_share")
    if not isinstance(share, dict) or sorted(share) != sorted(DOMAIN_KINDS):
        raise _design_error(f"world.corpus.domain_share must give id, mild and strong, got {share!r}")
    if any(float(v) < 0 for v in share.values()) or sum(float(v) for v in share.values()) <= 0:
        raise _design_error(f"world.corpus.domain_share values must be >= 0 with a positive sum, got {share}")
    entries, w = [], []
    for task in wcfg["tasks"]:
        r = RENDERERS[task]
        for dom in r.domains:
            weight = lv[task]["coverage"] * float(share[r.domain_kind(dom)])
            if weight > 0:
                entries.append((task, dom))
                w.append(weight)
    w = np.asarray(w)
    return entries, w / w.sum()


def check_class_words(captions, tasks) -> None:
    """Every class name of every task occurs (as whole words) in some pretraining caption."""
    text = "\n".join(str(c).lower() for c in captions)
    for task in tasks:
        for cname in RENDERERS[task].classnames:
            if not re.search(rf"(?<![\w-]){re.escape(cname.lower())}(?![\w-])", text):
                raise WorldDesignError(
                    f"class {cname!r} of task {task!r} occurs in no pretraining caption ({len(captions)} pairs): "
                    f"every class of every task must be named in pretraining; raise world.corpus.n_pairs or "
                    f"the coverage levels (world.levels.coverage)")


# ============================================================================ generation
def _stream(seed: int, *keys) -> np.random.Generator:
    h = int.from_bytes(hashlib.sha256(json.dumps([seed, *keys]).encode()).digest()[:8], "little")
    return np.random.default_rng(h)


def render_split(task: str, domain: str, split: str, n: int, seed: int,
                 diversity: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced images of one (task, domain, split)."""
    r = RENDERERS[task]
    rng = _stream(seed, task, domain, split)
    labels = np.arange(n) % len(r.classnames)
    rng.shuffle(labels)
    pool = "test" if split == "test" else "train"
    imgs = np.empty((n, S, S, 3), np.uint8)
    for i, c in enumerate(labels):
        imgs[i], _ = r.render(int(c), domain, rng, pool, diversity)
    return imgs, labels.astype(np.int64)


def _corpus_chunk(args) -> tuple[np.ndarray, list[str], list[str], np.ndarray]:
    """One chunk of the corpus: images, captions, sources (task/domain/true class) and the class
    index each caption names (another class than the image's with the task's caption_noise)."""
    seed, chunk, n, entries, weights, levels = args
    rng = _stream(seed, "corpus", chunk)
    picks = rng.choice(len(entries), size=n, p=weights)
    imgs = np.empty((n, S, S, 3), np.uint8)
    caps, srcs, named = [], [], np.empty(n, np.int64)
    for i, k in enumerate(picks):
        task, domain = entries[k]
        r = RENDERERS[task]
        ncls = len(r.classnames)
        cls = int(rng.integers(ncls))
        imgs[i], info = r.render(cls, domain, rng, "train", levels[task]["diversity"])
        wrong = rng.random() < levels[task]["caption_noise"]
        other = int(rng.integers(ncls - 1))
        said = (other + (other >= cls)) if wrong else cls
        tmpl = str(rng.choice(r.caption_templates(domain)))
        color = info.get("color") or str(rng.choice(list(COLORS)))
        caps.append(tmpl.format(c=r.caption_phrase(said, info, rng), color=color))
        srcs.append(f"{task}/{domain}/{r.classnames[cls]}")
        named[i] = said
    return imgs, caps, srcs, named


def world_fingerprint(world_cfg: dict) -> str:
    return fingerprint({"world": world_cfg, "generator": code_fingerprint("world")})


# ---------------------------------------------------------------------------- verified files
# The world's manifest.json is written LAST and removed FIRST: it records the world's fingerprint
# and, per file, its size, sha256 and array shapes / dtypes.  A world counts as generated only when
# the manifest parses, its fingerprint is the current one and every file matches its record, so a
# zero-byte, truncated or rewritten file, or an interrupted regeneration, is never accepted.
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 2


class WorldNotReady(FileNotFoundError):
    """The world is missing, stale or damaged; the message names the file and the command that fixes it."""


def _fix(profile: str) -> str:
    return (f"regenerate it with `python -m lib.world {profile}` (or `make world PROFILE={profile}`); "
            f"generation is deterministic, so the pretrained model stays valid")


def expected_files(wcfg: dict) -> list[str]:
    """The file names a world of this configuration consists of (the corpus last)."""
    return [f"{t}__{d}__{s}.npz" for t, d, s, _ in _split_jobs(wcfg)] + ["corpus.npz"]


def _split_jobs(wcfg: dict) -> list[tuple[str, str, str, int]]:
    sizes = wcfg["sizes"]
    jobs = []
    for task in wcfg["tasks"]:
        if task not in RENDERERS:
            raise ConfigError(f"unknown task {task!r} in world.tasks; valid: {', '.join(RENDERERS)}")
        r = RENDERERS[task]
        jobs.append((task, r.id_domain, "train", int(sizes["train"]) + int(sizes["val"])))
        for dom in [r.id_domain, *r.ood_domains]:
            jobs.append((task, dom, "test", int(sizes["test"])))
    return jobs


def _record(data: bytes, arrays: dict) -> dict:
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}}


def _atomic_savez(path: Path, **arrays) -> dict:
    """Write ``path`` through a temporary name unique to this writer; returns the file's record."""
    import io
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    write_bytes(path, data)
    return _record(data, arrays)


def read_manifest(out: Path, wcfg: dict, profile: str) -> dict:
    """The world's manifest if it is complete and current; else WorldNotReady naming why."""
    manifest = out / MANIFEST
    if not manifest.exists():
        raise WorldNotReady(f"the embedded world is not generated in {out}: run `make world PROFILE={profile}` "
                            f"(or notebook 00_pretrain, or `python -m lib.world {profile}`)")
    try:
        m = json.loads(manifest.read_text(encoding="utf-8"))
        if not isinstance(m, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise WorldNotReady(f"the world manifest {manifest} cannot be read ({exc}): the world counts as "
                            f"not generated; {_fix(profile)}") from exc
    if m.get("format") != MANIFEST_FORMAT or not isinstance(m.get("files"), dict):
        raise WorldNotReady(f"the world manifest {manifest} is of an older format (no per-file records): "
                            f"{_fix(profile)}")
    if m.get("fingerprint") != world_fingerprint(wcfg):
        raise WorldNotReady(f"the world in {out} was generated for other world parameters or by other "
                            f"generator code (fingerprint {m.get('fingerprint')}, expected "
                            f"{world_fingerprint(wcfg)}): {_fix(profile)}")
    names = expected_files(wcfg)
    missing = [n for n in names if n not in m["files"]]
    if missing:
        raise WorldNotReady(f"the world manifest {manifest} does not list {', '.join(missing)}: {_fix(profile)}")
    return m


def verify_file(path: Path, record: dict, profile: str, data: bytes | None = None) -> dict:
    """Check one world file against its record (size, sha256, arrays); returns its arrays.

    Raises WorldNotReady naming the file and the fix when it is missing, truncated, rewritten or
    holds arrays of another shape.
    """
    import io
    import zipfile
    if data is None:
        if not path.exists():
            raise WorldNotReady(f"{path} is missing: {_fix(profile)}")
        data = path.read_bytes()
    if len(data) != record.get("bytes"):
        raise WorldNotReady(f"{path} is damaged: {len(data)} bytes, the manifest records {record.get('bytes')} "
                            f"(truncated or rewritten): {_fix(profile)}")
    if hashlib.sha256(data).hexdigest() != record.get("sha256"):
        raise WorldNotReady(f"{path} is damaged: its sha256 differs from the manifest's: {_fix(profile)}")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise WorldNotReady(f"{path} cannot be read as arrays ({exc}): {_fix(profile)}") from exc
    want = record.get("arrays", {})
    got = {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}
    if got != want:
        raise WorldNotReady(f"{path} holds arrays {got}, the manifest records {want}: {_fix(profile)}")
    return arrays


def verify_world(profile_cfg: dict, deep: bool = True) -> None:
    """Raise WorldNotReady unless the profile's world is complete and current.

    ``deep`` hashes every file (generate() does); otherwise only sizes are compared (cheap: the
    readers hash each file as they load it).
    """
    profile = profile_cfg["name"]
    wcfg = profile_cfg["world"]
    out = paths.world_dir(profile)
    m = read_manifest(out, wcfg, profile)
    for name in expected_files(wcfg):
        f, rec = out / name, m["files"][name]
        if deep:
            verify_file(f, rec, profile)
        elif not f.exists():
            raise WorldNotReady(f"{f} is missing: {_fix(profile)}")
        elif f.stat().st_size != rec.get("bytes"):
            raise WorldNotReady(f"{f} is damaged: {f.stat().st_size} bytes, the manifest records "
                                f"{rec.get('bytes')} (truncated or rewritten): {_fix(profile)}")


def generate(profile_cfg: dict, progress: bool = True, workers: int | None = None) -> Path:
    """Generate (or reuse) the profile's world under build/<profile>/world/. Returns that folder.

    Reused only when ``verify_world`` accepts every file; otherwise the manifest is removed FIRST
    (so an interrupted regeneration is never accepted), every file is rewritten and the manifest
    is written last.  A corpus in which some class of some task is never named is refused
    (WorldDesignError) before the manifest is written.
    """
    from .progress import progress as tqdm  # text lines under papermill or Make, a bar when watched
    wcfg = profile_cfg["world"]
    levels = check_design(wcfg)
    entries, weights = corpus_entries(wcfg)
    out = paths.ensure(paths.world_dir(profile_cfg["name"]))
    fp = world_fingerprint(wcfg)
    manifest = out / MANIFEST
    try:
        verify_world(profile_cfg, deep=True)
        return out
    except WorldNotReady:
        pass
    manifest.unlink(missing_ok=True)          # invalidate before any file is rewritten
    seed = int(wcfg["seed"])
    jobs = _split_jobs(wcfg)
    n_corpus = int(wcfg["corpus"]["n_pairs"])
    chunk = 2000
    cjobs = [(seed, i, min(chunk, n_corpus - s), entries, weights, levels)
             for i, s in enumerate(range(0, n_corpus, chunk))]
    records = {}
    for task, dom, split, n in tqdm(jobs, desc="world: task splits", disable=not progress):
        imgs, labels = render_split(task, dom, split, n, seed, diversity=levels[task]["diversity"])
        name = f"{task}__{dom}__{split}.npz"
        records[name] = _atomic_savez(out / name, images=imgs, labels=labels)
    workers = workers or min(2, os.cpu_count() or 1)
    parts = []
    if workers > 1:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(workers) as pool:
            for p in tqdm(pool.imap(_corpus_chunk, cjobs), total=len(cjobs), desc="world: corpus", disable=not progress):
                parts.append(p)
    else:
        for j in tqdm(cjobs, desc="world: corpus", disable=not progress):
            parts.append(_corpus_chunk(j))
    imgs = np.concatenate([p[0] for p in parts])
    caps = np.array([c for p in parts for c in p[1]])
    srcs = np.array([c for p in parts for c in p[2]])
    named = np.concatenate([p[3] for p in parts])
    check_class_words(caps.tolist(), wcfg["tasks"])
    records["corpus.npz"] = _atomic_savez(out / "corpus.npz", images=imgs, captions=caps, sources=srcs,
                                          caption_labels=named)
    write_json(manifest, {"format": MANIFEST_FORMAT, "fingerprint": fp, "world": wcfg,
                          "n_corpus": len(caps), "files": records})
    return out


def load_corpus(profile_cfg: dict) -> dict:
    """The corpus: images, captions, sources ("task/domain/true class") and caption_labels (the
    class index each caption names; differs from the true class for the task's noisy captions)."""
    profile = profile_cfg["name"]
    out = paths.world_dir(profile)
    f = out / "corpus.npz"
    if not f.exists():
        raise WorldNotReady(f"{f} is missing: generate the world first (make world PROFILE={profile})")
    m = read_manifest(out, profile_cfg["world"], profile)
    z = verify_file(f, m["files"]["corpus.npz"], profile)
    return {"images": z["images"], "captions": z["captions"].tolist(), "sources": z["sources"].tolist(),
            "caption_labels": z["caption_labels"]}


# ============================================================================ data source
class EmbeddedSource(DatasetSource):
    def __init__(self, profile_cfg: dict):
        self.cfg = profile_cfg
        self.wcfg = profile_cfg["world"]
        self.dir = paths.world_dir(profile_cfg["name"])
        check_design(self.wcfg)

    def tasks(self):
        return {t: RENDERERS[t].spec() for t in self.wcfg["tasks"]}

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


if __name__ == "__main__":
    # python -m lib.world <profile>: verify the world and regenerate it if it is missing, stale or damaged
    import sys

    try:
        cfg = load_profile(sys.argv[1] if len(sys.argv) > 1 else "")
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    if cfg.get("data", {}).get("source", "embedded") != "embedded":
        sys.exit(f"profile {cfg['name']} reads real data (data.source: {cfg['data']['source']}): it has no embedded world")
    try:
        check_design(cfg["world"])
        corpus_entries(cfg["world"])
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    try:
        verify_world(cfg, deep=True)
        print(f"world of {cfg['name']}: ok ({paths.world_dir(cfg['name'])})")
    except WorldNotReady as exc:
        print(f"world of {cfg['name']}: {str(exc).split(': regenerate')[0]}; regenerating", file=sys.stderr)
        generate(cfg, progress=False)
        verify_world(cfg, deep=True)
        print(f"world of {cfg['name']}: regenerated ({paths.world_dir(cfg['name'])})")
