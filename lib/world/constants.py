"""The embedded world's constants, defined once: the image grid, the colour and number
vocabularies of captions and renderers, and the design's constants (severities, domain kinds,
the three factors of the 2x2x2 design and their level names)."""
from __future__ import annotations

import numpy as np

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
