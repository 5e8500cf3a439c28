"""World v3's tasks: four instances of each of the eight renderer families (docs/world.md, "World v3").

An instance ``<family>_<a|b|c|d>`` draws its images with its family's renderer (the same scenes, the
same ID look and the same shift), restricted to :data:`N_CLASSES` of the family's classes, and names
them with invented words of its own, so that no class word is shared by two tasks: the small CLIP
learns every word from the world's corpus, and a task's zero-shot classifier only ever compares its
own words. Instance ``k`` takes the family's classes ``start_k .. start_k + 3`` (cyclically), the
starts spread evenly over the family's classes, so the instances of a family differ in what they
show where the family has more than four classes (pathology has four: its instances differ in their
words and in their design cell only).

The design cell of each instance is the profile's (``world.design``), not this module's: the
pre-registered rule (docs/world.md) gives each family the four cells of one half of the 2x2x2 design
(a 2^(3-1) fraction), so every family holds both levels of every factor and each factor's effect is
estimated within families.

The words are drawn once, deterministically, from consonant-vowel syllables (:func:`pseudowords`);
none is an English word of the corpus's caption templates (a test checks it).
"""
from __future__ import annotations

import hashlib

from ..splits import TaskSpec
from .render import Renderer
from .renderers import RENDERERS

N_CLASSES = 4                 # classes of every v3 / v4 task (chance 0.25)
INSTANCES = ("a", "b", "c", "d")
# world v4 (study v4, docs/study.md): 12 more instances per family, new tasks with new words
INSTANCES_V4 = tuple("efghijklmnop")
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
# drawn words that are English words (or read as such): skipped, so every class word is invented
_ENGLISH = ("sinus", "getup", "bagel", "camel", "cabin", "lemon", "melon", "medal", "metal", "model", "motel",
            "robin", "salad", "solid", "tulip", "panel", "lapel", "rebel", "pedal", "timid", "vivid", "valid",
            # world v4's words (drawn after v3's 128, so v3's words are unchanged by these)
            "runes", "penis", "pubis", "domed", "bared", "nosed", "rufus", "genom", "sabor", "poder")


def pseudowords(n: int, salt: str = "world-v3") -> list[str]:
    """``n`` distinct invented words of the form CVCVC (e.g. ``"bakef"``), in a fixed order."""
    out: list[str] = []
    i = 0
    while len(out) < n:
        h = hashlib.sha256(f"{salt}:{i}".encode()).digest()
        i += 1
        w = "".join((_CONSONANTS if j % 2 == 0 else _VOWELS)[h[j] % (len(_CONSONANTS) if j % 2 == 0 else len(_VOWELS))]
                    for j in range(5))
        if w not in out and w not in _ENGLISH:
            out.append(w)
    return out


def class_starts(n_family: int) -> list[int]:
    """The first class of each instance: spread evenly over the family's ``n_family`` classes."""
    span = max(n_family - N_CLASSES, 0)
    return [round(k * span / (len(INSTANCES) - 1)) for k in range(len(INSTANCES))]


class Instance(Renderer):
    """One v3 task: a family renderer restricted to some of its classes, named with invented words."""

    def __init__(self, name: str, family: Renderer, classes: list[int], words: list[str]):
        self.name, self.family, self.classes = name, family, list(classes)
        self.classnames = list(words)
        self.templates = list(family.templates)
        self.id_domain, self.shift = family.id_domain, family.shift
        self.kind = f"{family.kind}, instance {name} (classes {', '.join(family.classnames[c] for c in classes)})"
        self.captions = family.captions
        self.noise_sigma = family.noise_sigma

    def scene(self, cls, rng, pool, d):
        return self.family.scene(self.classes[int(cls)], rng, pool, d)

    def look(self, sc, shifted):
        return self.family.look(sc, shifted)

    def caption_phrase(self, cls, info, rng):
        return self.classnames[int(cls)]

    def spec(self) -> TaskSpec:
        return TaskSpec(self.name, list(self.classnames), list(self.templates), self.id_domain,
                        list(self.ood_domains), self.kind)


def class_starts_v4(n_family: int) -> list[int]:
    """World v4's first class of each of its 12 instances: spread evenly around the family's classes
    (cyclically), so that a family of 7-10 classes shows 7-10 different class sets over its instances."""
    return [round(k * n_family / len(INSTANCES_V4)) % n_family for k in range(len(INSTANCES_V4))]


def _instances() -> tuple[dict[str, Instance], dict[str, Instance]]:
    """The v3 instances (a-d) and the v4 ones (e-p); the v4 words follow the v3 words in the one fixed
    sequence of :func:`pseudowords`, so adding v4 changed no v3 task."""
    per = len(RENDERERS) * N_CLASSES
    words = iter(pseudowords(per * (len(INSTANCES) + len(INSTANCES_V4))))
    v3, v4 = {}, {}
    for out, letters, starts in ((v3, INSTANCES, class_starts), (v4, INSTANCES_V4, class_starts_v4)):
        for fam_name, fam in RENDERERS.items():
            n = len(fam.classnames)
            for k, start in zip(letters, starts(n)):
                classes = [(start + j) % n for j in range(N_CLASSES)]
                out[f"{fam_name}_{k}"] = Instance(f"{fam_name}_{k}", fam, classes, [next(words) for _ in classes])
    return v3, v4


VARIANTS, VARIANTS_V4 = _instances()
# every task a world may hold: the eight v2 tasks (the families themselves), the v3 and the v4 instances
TASKS: dict[str, Renderer] = {**RENDERERS, **VARIANTS, **VARIANTS_V4}


def family_of(task: str) -> str:
    """The renderer family of a task (a v2 task is its own family)."""
    r = VARIANTS.get(task) or VARIANTS_V4.get(task)
    return r.family.name if r is not None else task
