"""The eight task renderers of the embedded world (one :class:`~lib.world.render.Renderer`
subclass per task) and :data:`RENDERERS`, task name -> renderer."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import affine_transform, convolve, gaussian_filter, map_coordinates

from .constants import _U0, _V0, _XX, _YY, COLORS, NUMBER_WORDS, S
from .render import (Renderer, _blend, _color_jitter, _coords, _crop, _digits, _faces, _fill, _horse, _noise,
                     _outline, _pick, _pool, _r, _ri, _sdf, _smooth_noise, _soft, _textures)


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
        wy, wx = sc["warp"]
        coords = [_YY + 8.0 * wy, _XX + 8.0 * wx]
        out = np.stack([map_coordinates(img[..., c], coords, order=1, mode="reflect") for c in range(3)], -1)
        return out * (0.6 + 0.6 * sc["fold"])[..., None]


RENDERERS: dict[str, Renderer] = {r.name: r for r in (Objects(), Digits(), Landcover(), Pathology(), CameraTrap(),
                                                      TrafficSigns(), Flowers(), Textures())}
