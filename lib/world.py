"""The embedded world: five downstream tasks and a pretraining corpus, generated offline.

Everything is drawn from one *concept vocabulary*: a renderer per task that turns
``(class, domain, rng)`` into a 32x32 RGB image.  Real images that ship inside wheels are used where
they fit (scikit-learn's handwritten digits; scikit-image's LFW faces, horse silhouette, grass /
gravel / brick textures and immunohistochemistry slide); the rest is procedural.

The tasks mirror the kinds of datasets a CLIP PEFT study uses:

=============  ==========================  ======================  ====================
task           mirrors                     ID domain               shifted domain(s)
=============  ==========================  ======================  ====================
objects        ImageNet (general objects)  photo                   sketch
digits         MNIST / handwriting         ink (white on black)    colored (MNIST-M-like)
landcover      EuroSAT / FMoW (overhead)   summer                  winter (snow, haze)
pathology      Camelyon17 (H&E patches)    hospital_a stain        hospital_b stain
camera_trap    iWildCam (camera traps)     day cameras             night (infrared) cameras
=============  ==========================  ======================  ====================

The pretraining corpus covers these concepts UNEVENLY (weights per task/domain in the profile's
``world.corpus.coverage``), so the tasks span a range of zero-shot difficulty.  Captions are
natural phrases drawn from per-task caption templates.  Generation is deterministic for a seed:
every (task, domain, split) and every corpus chunk has its own seeded random stream.
"""
from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import paths
from .io import write_bytes, write_json
from .config import ConfigError, fingerprint
from .data import DatasetSource, Split, TaskSpec, register_source

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


# ============================================================================ drawing helpers
def _coords(rng, scale=(0.45, 0.75), shift=0.35, rotate=True):
    s = rng.uniform(*scale)
    tx, ty = rng.uniform(-shift, shift, size=2)
    a = rng.uniform(0, 2 * np.pi) if rotate else 0.0
    u, v = _U0 - tx, _V0 - ty
    c, sn = np.cos(a), np.sin(a)
    return (c * u + sn * v) / s, (-sn * u + c * v) / s, s


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
    g = rng.random((cells + 1, cells + 1)).astype(np.float32)
    t = np.linspace(0, cells, S, dtype=np.float32)
    i = np.minimum(t.astype(int), cells - 1)
    f = t - i
    rows = g[i] * (1 - f)[:, None] + g[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def _to_uint8(img):
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _color_jitter(rng, rgb, amount=30):
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)


# ============================================================================ task renderers
class Renderer:
    name: str
    classnames: list[str]
    templates: list[str]
    id_domain: str
    ood_domains: list[str]
    kind: str
    captions: dict  # domain -> list of caption templates with {c} (class phrase) and optional {color}

    def render(self, cls: int, domain: str, rng, pool: str) -> tuple[np.ndarray, dict]:
        raise NotImplementedError

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
    id_domain, ood_domains = "photo", ["sketch"]
    captions = {
        "photo": ["a photo of a {color} {c}", "a {color} {c}", "a {c} on a textured background",
                  "picture of a {color} {c}", "a photo of a {c}", "there is a {color} {c} here"],
        "sketch": ["a sketch of a {c}", "a line drawing of a {c}", "a pencil sketch of a {c}",
                   "a black and white drawing of a {c}"],
    }

    def render(self, cls, domain, rng, pool):
        info = {}
        if domain == "photo":
            tex = _textures()[rng.choice(["grass", "gravel", "brick"])]
            base = _crop(tex, rng)[..., None] * rng.uniform(0.3, 0.7)
            tint = rng.uniform(0.2, 0.9, 3).astype(np.float32)
            bg = base + tint * 0.5
        else:
            bg = np.full((S, S, 3), rng.uniform(0.85, 1.0), np.float32)
        if cls < len(self.shapes):
            u, v, s = _coords(rng)
            sdf = _sdf(self.shapes[cls], u, v)
            if domain == "photo":
                cname = rng.choice(list(COLORS))
                info["color"] = str(cname)
                img = _blend(bg, _color_jitter(rng, COLORS[cname]), _fill(sdf, 14 * s))
            else:
                img = _blend(bg, (20, 20, 20), _outline(sdf, 0.08 / s, 14 * s))
        else:
            faces = _faces()
            idx = _pool(len(faces), pool)
            f = faces[rng.choice(idx)]
            if rng.random() < 0.5:
                f = f[:, ::-1]
            y, x = rng.integers(0, S - 28 + 1, size=2)
            img = bg.copy()
            if domain == "photo":
                skin = rng.uniform(0.6, 1.0, 3).astype(np.float32)
                img[y:y + 28, x:x + 28] = f[..., None] * skin
                info["color"] = "natural"
            else:
                gy, gx = np.gradient(f)
                edge = np.clip(np.sqrt(gx ** 2 + gy ** 2) * 6, 0, 1)
                img[y:y + 28, x:x + 28] = img[y:y + 28, x:x + 28] * (1 - edge[..., None]) + 0.08 * edge[..., None]
        img = img + _noise(rng, 0.03)
        return _to_uint8(img), info

    def caption_phrase(self, cls, info, rng):
        if cls == len(self.shapes):
            return rng.choice(["face", "human face", "person's face"])
        return self.classnames[cls]


class Digits(Renderer):
    name, kind = "digits", "handwritten digits (MNIST-like)"
    classnames = NUMBER_WORDS
    templates = ["a handwritten digit {}."]
    id_domain, ood_domains = "ink", ["colored"]
    captions = {
        "ink": ["the digit {c} written by hand", "a handwritten {c}", "the number {c} in white ink",
                "a scan of a handwritten {c}", "a handwritten digit {c}"],
        "colored": ["a colorful handwritten {c}", "the digit {c} on a colored background",
                    "a {color} handwritten {c}"],
    }

    def render(self, cls, domain, rng, pool):
        from scipy.ndimage import affine_transform
        imgs, y = _digits()
        idx = _pool(len(imgs), pool)
        idx = idx[y[idx] == cls]
        d = imgs[rng.choice(idx)]
        a = rng.uniform(-0.3, 0.3)
        sc = rng.uniform(0.85, 1.2)
        m = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * sc
        canvas = np.zeros((S, S), np.float32)
        canvas[4:28, 4:28] = d
        center = np.array([15.5, 15.5])
        off = center - m @ center + rng.uniform(-2.5, 2.5, 2)
        glyph = affine_transform(canvas, m, offset=off, order=1)
        info = {}
        if domain == "ink":
            img = np.repeat(glyph[..., None], 3, axis=2) * rng.uniform(0.8, 1.0) + _noise(rng, 0.04)
        else:
            tex = _textures()[rng.choice(["grass", "gravel", "brick"])]
            bg = _crop(tex, rng)[..., None] * rng.uniform(0.4, 1.0, 3).astype(np.float32)
            cname = rng.choice(["red", "green", "blue", "yellow", "orange", "purple", "pink", "cyan"])
            info["color"] = str(cname)
            img = _blend(bg, COLORS[cname], np.clip(glyph * 1.3, 0, 1)) + _noise(rng, 0.03)
        return _to_uint8(img), info

    def caption_phrase(self, cls, info, rng):
        return str(cls) if rng.random() < 0.35 else NUMBER_WORDS[cls]


class Landcover(Renderer):
    name, kind = "landcover", "overhead land cover (EuroSAT / FMoW-like)"
    classnames = ["forest", "sea", "river", "farmland", "residential area", "highway", "desert",
                  "pasture"]
    templates = ["a satellite photo of {}."]
    id_domain, ood_domains = "summer", ["winter"]
    captions = {
        "summer": ["a satellite photo of {c}", "an aerial view of {c}", "{c} seen from above",
                   "satellite imagery of {c}", "an overhead image of {c}"],
        "winter": ["a satellite photo of {c} in winter", "snowy {c} seen from above",
                   "an aerial view of {c} covered in snow"],
    }

    def render(self, cls, domain, rng, pool):
        name = self.classnames[cls]
        tex = _textures()
        n = _smooth_noise(rng, rng.integers(3, 7))
        g = _crop(tex["grass"], rng)
        if name == "forest":
            img = np.stack([0.10 + 0.1 * n, 0.30 + 0.2 * g, 0.10 + 0.05 * n], -1)
        elif name == "sea":
            w = 0.03 * np.sin(_XX * rng.uniform(0.5, 1.2) + _YY * rng.uniform(0.2, 0.8))
            img = np.stack([0.05 + w, 0.25 + 0.1 * n + w, 0.55 + 0.15 * n + w], -1)
        elif name == "river":
            land = np.stack([0.35 + 0.1 * g, 0.45 + 0.15 * g, 0.2 + 0.05 * n], -1)
            ph, fr, amp = rng.uniform(0, 6), rng.uniform(0.1, 0.3), rng.uniform(2, 6)
            center = S / 2 + amp * np.sin(_YY * fr + ph) + rng.uniform(-6, 6)
            wmask = np.clip(rng.uniform(2.0, 4.0) - np.abs(_XX - center), 0, 1)
            if rng.random() < 0.5:
                wmask = wmask.T
            img = _blend(land, (30, 70, 160), wmask)
        elif name == "farmland":
            img = np.zeros((S, S, 3), np.float32)
            k = rng.integers(2, 4)
            for i in range(k):
                for j in range(k):
                    col = np.array([rng.uniform(0.5, 0.85), rng.uniform(0.5, 0.8), rng.uniform(0.1, 0.3)])
                    stripe = 0.08 * np.sin((_XX if (i + j) % 2 else _YY) * rng.uniform(1.0, 2.0))
                    ys, xs = slice(i * S // k, (i + 1) * S // k), slice(j * S // k, (j + 1) * S // k)
                    img[ys, xs] = col + stripe[ys, xs, None]
        elif name == "residential area":
            img = np.stack([0.45 + 0.1 * g] * 3, -1) * np.array([1.0, 1.02, 0.95])
            step = int(rng.integers(5, 8))
            ox, oy = rng.integers(0, step, 2)
            for y in range(oy, S - 2, step):
                for x in range(ox, S - 2, step):
                    roof = (0.7, 0.25, 0.2) if rng.random() < 0.6 else (0.75, 0.75, 0.75)
                    img[y:y + step - 2, x:x + step - 2] = roof
        elif name == "highway":
            img = np.stack([0.30 + 0.1 * g, 0.45 + 0.15 * g, 0.22 + 0.05 * n], -1)
            a = rng.uniform(0, np.pi)
            d = np.abs((_XX - S / 2 - rng.uniform(-6, 6)) * np.cos(a) + (_YY - S / 2) * np.sin(a))
            img = _blend(img, (90, 90, 95), np.clip(4.0 - d, 0, 1))
            img = _blend(img, (235, 235, 235), np.clip(0.7 - d, 0, 1))
        elif name == "desert":
            dunes = 0.06 * np.sin(_XX * rng.uniform(0.3, 0.6) + 3 * n)
            sand = _crop(tex["gravel"], rng) * 0.1
            img = np.stack([0.85 + dunes + sand, 0.72 + dunes + sand, 0.45 + dunes], -1)
        elif name == "pasture":
            img = np.stack([0.45 + 0.1 * n, 0.70 + 0.1 * n, 0.30 + 0.05 * g], -1)
        else:  # pragma: no cover
            raise KeyError(name)
        img = img * rng.uniform(0.9, 1.1)
        if domain == "winter":
            snow = np.clip(_smooth_noise(rng, 3) * 1.4 - 0.2, 0, 1)[..., None]
            if name in ("sea", "river"):
                snow = snow * 0.3
            img = img * (1 - 0.7 * snow) + 0.95 * 0.7 * snow
            img = 0.75 * img + 0.25 * np.array([0.7, 0.75, 0.85], np.float32)  # haze, bluish sensor
        return _to_uint8(img + _noise(rng, 0.02)), {}


class Pathology(Renderer):
    name, kind = "pathology", "H&E histopathology patches (Camelyon17-like)"
    classnames = ["normal lymph tissue", "tumor tissue", "adipose tissue", "stroma"]
    templates = ["a microscope image of {}."]
    id_domain, ood_domains = "hospital_a", ["hospital_b"]
    captions = {
        "hospital_a": ["a microscope image of {c}", "a histology slide showing {c}",
                       "an H&E stained patch of {c}"],
        "hospital_b": ["a microscope image of {c}", "a stained slide of {c}"],
    }
    stains = {"hospital_a": ((0.35, 0.15, 0.55), (0.95, 0.65, 0.80)),   # (nuclei, eosin background)
              "hospital_b": ((0.20, 0.25, 0.50), (0.80, 0.70, 0.85))}

    def render(self, cls, domain, rng, pool):
        nuc_col, bg_col = (np.array(c, np.float32) for c in self.stains[domain])
        bg_col = bg_col + rng.uniform(-0.05, 0.05, 3)
        ihc = _crop(_textures()["ihc"], rng).mean(-1, keepdims=True)
        img = np.ones((S, S, 3), np.float32) * bg_col + (ihc - ihc.mean()) * 0.3
        name = self.classnames[cls]
        if name == "adipose tissue":
            cells = np.ones((S, S), np.float32)
            for _ in range(rng.integers(4, 8)):
                cy, cx, r = rng.uniform(0, S), rng.uniform(0, S), rng.uniform(4, 8)
                cells = np.minimum(cells, np.clip(np.sqrt((_YY - cy) ** 2 + (_XX - cx) ** 2) - r, 0, 1))
            img = _blend(img, (250, 245, 250), 1 - cells)
            nuclei = [(rng.uniform(0, S), rng.uniform(0, S), 1.0, 1.0) for _ in range(rng.integers(1, 4))]
        elif name == "stroma":
            a = rng.uniform(0, np.pi)
            fib = 0.5 + 0.5 * np.sin((_XX * np.cos(a) + _YY * np.sin(a)) * rng.uniform(0.8, 1.4) + 2 * _smooth_noise(rng))
            img = img * (0.85 + 0.15 * fib[..., None])
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
        img = _blend(img, tuple(int(c * 255) for c in nuc_col), mask * rng.uniform(0.75, 0.95))
        if domain == "hospital_b":
            img = img * 0.9 + 0.03
        return _to_uint8(img + _noise(rng, 0.025)), {}


class CameraTrap(Renderer):
    name, kind = "camera_trap", "camera-trap wildlife (iWildCam-like)"
    classnames = ["deer", "wild boar", "fox", "rabbit", "horse", "empty forest"]
    templates = ["a camera trap photo of a {}."]
    id_domain, ood_domains = "day", ["night"]
    captions = {
        "day": ["a camera trap photo of a {c}", "a {c} in the forest", "a trail camera picture of a {c}",
                "wildlife camera: a {c}"],
        "night": ["an infrared camera trap photo of a {c} at night", "a {c} at night"],
    }

    def _scene(self, rng, night):
        g = _crop(_textures()["grass"], rng)
        sky = np.clip(1.2 - _V0 * 1.0, 0, 1)[..., None]
        ground = np.stack([0.30 + 0.15 * g, 0.45 + 0.2 * g, 0.2 + 0.1 * g], -1)
        img = ground * (1 - sky * 0.3) + np.array([0.55, 0.7, 0.55], np.float32) * sky * 0.3
        for _ in range(rng.integers(1, 4)):  # tree trunks
            x = rng.integers(0, S)
            w = rng.integers(1, 4)
            img[: int(S * 0.75), x:x + w] = np.array([0.3, 0.22, 0.15]) * rng.uniform(0.7, 1.2)
        return img

    def _animal(self, name, rng):
        """Soft mask and colour of an animal built from ellipses, at a random place and size."""
        sc = rng.uniform(0.8, 1.2)
        cx, cy = rng.uniform(10, 22), rng.uniform(16, 22)
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

    def render(self, cls, domain, rng, pool):
        night = domain == "night"
        img = self._scene(rng, night)
        mask, col = self._animal(self.classnames[cls], rng)
        img = _blend(img, _color_jitter(rng, col, 20), mask)
        img = img * rng.uniform(0.8, 1.15)
        if night:
            lum = img.mean(-1, keepdims=True)
            flash = np.clip(1.3 - 0.7 * np.sqrt(_U0 ** 2 + _V0 ** 2), 0, 1)[..., None]
            img = np.repeat(lum * flash * 1.3, 3, axis=2) + _noise(rng, 0.06).mean(-1, keepdims=True)
        return _to_uint8(img + _noise(rng, 0.02)), {}

    def caption_phrase(self, cls, info, rng):
        return "empty forest with no animal" if cls == 5 and rng.random() < 0.5 else self.classnames[cls]


RENDERERS: dict[str, Renderer] = {r.name: r for r in (Objects(), Digits(), Landcover(), Pathology(), CameraTrap())}


# ============================================================================ generation
def _stream(seed: int, *keys) -> np.random.Generator:
    h = int.from_bytes(hashlib.sha256(json.dumps([seed, *keys]).encode()).digest()[:8], "little")
    return np.random.default_rng(h)


def render_split(task: str, domain: str, split: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced images of one (task, domain, split)."""
    r = RENDERERS[task]
    rng = _stream(seed, task, domain, split)
    labels = np.arange(n) % len(r.classnames)
    rng.shuffle(labels)
    pool = "test" if split == "test" else "train"
    imgs = np.empty((n, S, S, 3), np.uint8)
    for i, c in enumerate(labels):
        imgs[i], _ = r.render(int(c), domain, rng, pool)
    return imgs, labels.astype(np.int64)


def _corpus_chunk(args) -> tuple[np.ndarray, list[str], list[str]]:
    seed, chunk, n, entries, weights = args
    rng = _stream(seed, "corpus", chunk)
    picks = rng.choice(len(entries), size=n, p=weights)
    imgs = np.empty((n, S, S, 3), np.uint8)
    caps, srcs = [], []
    for i, k in enumerate(picks):
        task, domain = entries[k]
        r = RENDERERS[task]
        cls = int(rng.integers(len(r.classnames)))
        imgs[i], info = r.render(cls, domain, rng, "train")
        tmpl = str(rng.choice(r.captions[domain]))
        color = info.get("color") or str(rng.choice(list(COLORS)))
        caps.append(tmpl.format(c=r.caption_phrase(cls, info, rng), color=color))
        srcs.append(f"{task}/{domain}/{r.classnames[cls]}")
    return imgs, caps, srcs


def corpus_entries(coverage: dict) -> tuple[list[tuple[str, str]], np.ndarray]:
    entries, w = [], []
    for task, doms in coverage.items():
        if task not in RENDERERS:
            raise ConfigError(f"world.corpus.coverage names unknown task {task!r}; valid: {', '.join(RENDERERS)}")
        for dom, weight in doms.items():
            if dom not in RENDERERS[task].captions:
                raise ConfigError(f"world.corpus.coverage: task {task!r} has no domain {dom!r}; "
                                  f"valid: {', '.join(RENDERERS[task].captions)}")
            if weight < 0:
                raise ConfigError(f"world.corpus.coverage.{task}.{dom} must be >= 0, got {weight}")
            if weight > 0:
                entries.append((task, dom))
                w.append(float(weight))
    if not entries:
        raise ConfigError("world.corpus.coverage gives every task weight 0: the corpus would be empty")
    w = np.asarray(w)
    return entries, w / w.sum()


def world_fingerprint(world_cfg: dict) -> str:
    from .config import code_fingerprint
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
    is written last.
    """
    from tqdm.auto import tqdm
    wcfg = profile_cfg["world"]
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
    entries, weights = corpus_entries(wcfg["corpus"]["coverage"])
    n_corpus = int(wcfg["corpus"]["n_pairs"])
    chunk = 2000
    cjobs = [(seed, i, min(chunk, n_corpus - s), entries, weights) for i, s in enumerate(range(0, n_corpus, chunk))]
    records = {}
    for task, dom, split, n in tqdm(jobs, desc="world: task splits", disable=not progress):
        imgs, labels = render_split(task, dom, split, n, seed)
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
    records["corpus.npz"] = _atomic_savez(out / "corpus.npz", images=imgs, captions=caps, sources=srcs)
    write_json(manifest, {"format": MANIFEST_FORMAT, "fingerprint": fp, "world": wcfg,
                          "n_corpus": len(caps), "files": records})
    return out


def load_corpus(profile_cfg: dict) -> dict:
    profile = profile_cfg["name"]
    out = paths.world_dir(profile)
    f = out / "corpus.npz"
    if not f.exists():
        raise WorldNotReady(f"{f} is missing: generate the world first (make world PROFILE={profile})")
    m = read_manifest(out, profile_cfg["world"], profile)
    z = verify_file(f, m["files"]["corpus.npz"], profile)
    return {"images": z["images"], "captions": z["captions"].tolist(), "sources": z["sources"].tolist()}


# ============================================================================ data source
class EmbeddedSource(DatasetSource):
    def __init__(self, profile_cfg: dict):
        self.cfg = profile_cfg
        self.wcfg = profile_cfg["world"]
        self.dir = paths.world_dir(profile_cfg["name"])
        unknown = [t for t in self.wcfg["tasks"] if t not in RENDERERS]
        if unknown:
            raise ConfigError(f"unknown task(s) {unknown} in world.tasks; valid: {', '.join(RENDERERS)}")

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

    from .config import load_profile
    try:
        cfg = load_profile(sys.argv[1] if len(sys.argv) > 1 else "")
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    if cfg.get("data", {}).get("source", "embedded") != "embedded":
        sys.exit(f"profile {cfg['name']} reads real data (data.source: {cfg['data']['source']}): it has no embedded world")
    try:
        verify_world(cfg, deep=True)
        print(f"world of {cfg['name']}: ok ({paths.world_dir(cfg['name'])})")
    except WorldNotReady as exc:
        print(f"world of {cfg['name']}: {str(exc).split(': regenerate')[0]}; regenerating", file=sys.stderr)
        generate(cfg, progress=False)
        verify_world(cfg, deep=True)
        print(f"world of {cfg['name']}: regenerated ({paths.world_dir(cfg['name'])})")
