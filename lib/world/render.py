"""Rendering building blocks of the embedded world: the real-image banks (scikit-image,
scikit-learn), the nuisance draws shrunk by a task's diversity, the drawing helpers (signed
distances, blends, noise) and :class:`Renderer`, the base class of the eight task renderers
(:mod:`lib.world.renderers`)."""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ..config import ConfigError
from ..splits import TaskSpec
from .constants import _U0, _V0, _XX, _YY, S, SEVERITY


# ============================================================================ real-image banks
@lru_cache(maxsize=None)
def _textures() -> dict[str, np.ndarray]:
    """Downsampled grayscale texture sources in [0, 1] (from scikit-image)."""
    from skimage import data as skd  # start-up: skimage 0.43 s on the grid --make path (lib.world is imported to validate the world)
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
    from skimage import data as skd  # start-up: skimage 0.43 s on the grid --make path (lib.world is imported to validate the world)
    from skimage.transform import resize  # start-up: skimage 0.43 s on the grid --make path (lib.world is imported to validate the world)
    faces = skd.lfw_subset()[:100]
    return np.stack([resize(f, (28, 28), anti_aliasing=True) for f in faces]).astype(np.float32)


@lru_cache(maxsize=None)
def _horse() -> np.ndarray:
    """scikit-image's horse silhouette as a 20x24 mask (True = horse)."""
    from skimage import data as skd  # start-up: skimage 0.43 s on the grid --make path (lib.world is imported to validate the world)
    from skimage.transform import resize  # start-up: skimage 0.43 s on the grid --make path (lib.world is imported to validate the world)
    h = ~skd.horse()  # horse is False on white
    return resize(h.astype(np.float32), (20, 24), anti_aliasing=True)


@lru_cache(maxsize=None)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 handwritten digits (8x8, 0..16) upsampled to 24x24 in [0, 1]."""
    from sklearn.datasets import load_digits  # start-up: 1.7 s on the grid --make path
    from skimage.transform import resize  # start-up: skimage 0.43 s on the grid --make path (lib.world is imported to validate the world)
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
