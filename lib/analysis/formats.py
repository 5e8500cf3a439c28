"""Number formats of the analysis: an estimate with its interval, a p-value. Read by the claims
(``lib.analysis.claims``) and the text output (``lib.analysis.report``, which re-exports them)."""
from __future__ import annotations

import numpy as np


def _finite(v) -> bool:
    try:
        return bool(np.isfinite(float(v)))
    except (TypeError, ValueError):
        return False


def fmt_ci(v, lo=np.nan, hi=np.nan, pct: bool = False, digits: int | None = None) -> str:
    """'+0.176 [-0.563, +0.793]'; pct: x100 with one decimal (accuracy points); no interval -> value only."""
    k = 100.0 if pct else 1.0
    d = digits if digits is not None else (1 if pct else 3)
    if not _finite(v):
        return "n/a"
    s = f"{float(v) * k:+.{d}f}"
    if _finite(lo) and _finite(hi):
        s += f" [{float(lo) * k:+.{d}f}, {float(hi) * k:+.{d}f}]"
    return s


def fmt_p(p) -> str:
    return f"{float(p):.2g}" if _finite(p) else "n/a"
