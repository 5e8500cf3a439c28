"""The one learning-rate schedule of the project (pretraining and fine-tuning): linear warm-up, then
cosine to 0 (or constant)."""
from __future__ import annotations

import math


def lr_factor(step: int, total: int, warmup: int, cosine: bool = True) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based) of ``total``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if not cosine:
        return 1.0
    span = max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, span) / span))
