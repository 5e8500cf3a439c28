"""What an executed notebook shows: small figures and paths without this machine in them.

The executed notebooks are published (``paper_figures/notebooks/``) and read on GitHub or nbviewer,
so what they embed must be light and must not name the machine that ran them:

* ``install()`` -- called by the shared bootstrap cell (tools/nbcells.py) inside a notebook
  kernel: every matplotlib figure a cell leaves is embedded as a PNG at ``FIGURE_DPI`` with an
  adaptive 256-colour palette (about 3x smaller than matplotlib's RGBA PNG, the same to the eye);
  a figure still over ``MAX_FIGURE_BYTES`` (a grid of sample images) is drawn again at a lower dpi.
  Outside an IPython kernel it does nothing.
* ``image(path, width=None)`` -- a saved figure (``build/<profile>/figures/*.png``, written at the
  paper's 200 dpi) downscaled to ``FIGURE_DPI`` and palettised, for ``display``.
* ``shown(path)`` -- a path as a notebook should print it: relative to the repository
  (``build/mini/figures``), or under ``$CLIPMIS_BUILD`` when the build root lies elsewhere.

Nothing here is imported by the pipeline; it needs matplotlib and Pillow only when it draws.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

from . import paths

FIGURE_DPI = 90            # embedded figures: legible on a screen, ~2/3 of the pixels of 110 dpi
MAX_PIXELS = 1_500_000     # and never more pixels than this, whatever the figure size
MAX_FIGURE_BYTES = 200_000  # a figure larger than this once palettised is drawn again, smaller
MIN_DPI = 50                # ... but never below this
PALETTE_COLORS = 256


def _palettised(im) -> bytes:
    """``im`` (a PIL image) as an optimised PNG with an adaptive palette (no dithering)."""
    from PIL import Image
    im = im.convert("RGB")
    if im.width * im.height > MAX_PIXELS:
        s = (MAX_PIXELS / (im.width * im.height)) ** 0.5
        im = im.resize((max(1, int(im.width * s)), max(1, int(im.height * s))), Image.LANCZOS)
    q = im.quantize(PALETTE_COLORS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    q.save(buf, format="png", optimize=True)
    return buf.getvalue()


def _smaller_dpi(dpi: float, size: int) -> float | None:
    """The dpi to draw again at when a PNG of ``size`` bytes drawn at ``dpi`` is over the budget
    (bytes grow about with the pixel count); None when it is within it or already at MIN_DPI."""
    if size <= MAX_FIGURE_BYTES or dpi <= MIN_DPI:
        return None
    return max(MIN_DPI, 0.9 * dpi * (MAX_FIGURE_BYTES / size) ** 0.5)


def figure_png(fig, dpi: float = FIGURE_DPI) -> bytes:
    """The PNG a notebook embeds for matplotlib figure ``fig``: tight box, ``dpi``, palettised;
    drawn once more at a lower dpi if that is over MAX_FIGURE_BYTES (an image grid, say)."""
    from PIL import Image

    def draw(d):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=d, bbox_inches="tight", facecolor=fig.get_facecolor(),
                    metadata={"Software": None})
        buf.seek(0)
        return _palettised(Image.open(buf))

    data = draw(dpi)
    lower = _smaller_dpi(dpi, len(data))
    return data if lower is None else draw(lower)


def png_bytes(path, dpi: float = FIGURE_DPI) -> bytes:
    """A saved PNG downscaled from the dpi it was written at (its pHYs, else 200) to ``dpi``."""
    from PIL import Image
    src_im = Image.open(path)
    src = float((src_im.info.get("dpi") or (200, 200))[0]) or 200.0

    def scaled(d):
        if src <= d:
            return _palettised(src_im)
        s = d / src
        return _palettised(src_im.convert("RGB").resize(
            (max(1, round(src_im.width * s)), max(1, round(src_im.height * s))), Image.LANCZOS))

    data = scaled(dpi)
    lower = _smaller_dpi(min(dpi, src), len(data))
    return data if lower is None else scaled(lower)


def image(path, width: int | None = None, dpi: float = FIGURE_DPI):
    """``IPython.display.Image`` of the saved figure ``path``, downscaled (see ``png_bytes``)."""
    from IPython.display import Image
    return Image(data=png_bytes(path, dpi), format="png", width=width)


def install(shell=None) -> None:
    """Embed every matplotlib figure of this kernel through ``figure_png``; nothing outside an
    IPython shell (returns None either way: the bootstrap cell shows no value). Loads the backend first (a figure made and closed): the
    inline backend registers its own PNG formatter when it is loaded, and the last registration wins."""
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return
        shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    import matplotlib.pyplot as plt
    plt.close(plt.figure())  # loads (and so configures) the inline backend now, see above
    from matplotlib.figure import Figure
    formatters = shell.display_formatter.formatters
    formatters["image/png"].for_type(Figure, figure_png)
    for mime in ("image/svg+xml", "application/pdf", "image/jpeg"):  # only the one PNG per figure
        if mime in formatters:
            formatters[mime].pop(Figure, None)


def shown(path) -> str:
    """``path`` without this machine in it: relative to the repository root, else to the build
    root (written ``$CLIPMIS_BUILD/...``), else only its last two parts (``.../<parent>/<name>``)."""
    p = Path(os.path.abspath(path))
    root = Path(os.path.abspath(paths.ROOT))
    build = Path(os.path.abspath(paths.build_root()))
    if p.is_relative_to(root):
        return p.relative_to(root).as_posix() or "."
    if p.is_relative_to(build):
        rel = p.relative_to(build).as_posix()
        return "$CLIPMIS_BUILD" + (f"/{rel}" if rel != "." else "")
    return ".../" + "/".join(p.parts[-2:])
