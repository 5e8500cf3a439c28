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

For a reader who opens a notebook on Colab or Binder (``HOSTED`` in the bootstrap cell), two shared
cells after ``parameters`` (tools/nbcells.py) call:

* ``show_published(stage)`` -- this stage's published results from ``paper_figures/`` (tables,
  figures, ``claims.md``; ``PUBLISHED`` says which), the profile and commit that produced them
  (``MANIFEST.json``) and where the executed notebook of the stage is; computes nothing.
* ``recompute(RECOMPUTE)`` -- with ``RECOMPUTE = None`` stops "Run all" there without a traceback
  (``StopHere``); with a profile name returns it, and the notebook goes on with that profile.

Under papermill / Make neither cell calls anything (``HOSTED`` is False there).

Nothing here is imported by the pipeline; it needs matplotlib and Pillow only when it draws.
"""
from __future__ import annotations

import base64
import io
import json
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
    from PIL import Image  # optional: absent when the bootstrap cell imports lib.notebook before installing (tests/test_notebooks.py runs it with -S)
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
    from PIL import Image  # optional: absent when the bootstrap cell imports lib.notebook before installing (tests/test_notebooks.py runs it with -S)

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
    from PIL import Image  # optional: absent when the bootstrap cell imports lib.notebook before installing (tests/test_notebooks.py runs it with -S)
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
    from IPython.display import Image  # optional: IPython may be absent (the notebooks extra)
    return Image(data=png_bytes(path, dpi), format="png", width=width)


def install(shell=None) -> None:
    """Embed every matplotlib figure of this kernel through ``figure_png``; nothing outside an
    IPython shell (returns None either way: the bootstrap cell shows no value). Loads the backend first (a figure made and closed): the
    inline backend registers its own PNG formatter when it is loaded, and the last registration wins."""
    if shell is None:
        try:
            from IPython import get_ipython  # optional: IPython may be absent (the notebooks extra)
        except ImportError:
            return
        shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    import matplotlib.pyplot as plt  # optional: absent when the bootstrap cell imports lib.notebook before installing (tests/test_notebooks.py runs it with -S)
    plt.close(plt.figure())  # loads (and so configures) the inline backend now, see above
    from matplotlib.figure import Figure  # optional: absent when the bootstrap cell imports lib.notebook before installing (tests/test_notebooks.py runs it with -S)
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


# ------------------------------------------------------------------ hosted readers (Colab, Binder)
# What show_published shows for each stage, in order: (kind, name, caption). kind: "md" (a Markdown
# file of paper_figures/, rendered), "csv" (a table), "png" (a figure), "selected_lr" (the rate
# selected per (task, method) from lr_sweep.csv), "notebook" (the figures of the stage's executed
# notebook in paper_figures/notebooks/, from the cell whose source contains ``name``).
PUBLISHED = {
    "00_pretrain": (
        ("notebook", "plots.world_samples", "The world: test images of every task and domain (the first "
                                            "domain of each task is its ID domain)"),
        ("notebook", "plots.pretrain_curves", "Pretraining: contrastive loss and held-out retrieval"),
    ),
    "01_zero_shot": (
        ("md", "zero_shot_summary.md", "Zero-shot accuracy, ss, ACS, class ss and modality gap per task and domain"),
        ("csv", "world_check.csv", "World check: each task's zero-shot ID accuracy against its target range"),
        ("md", "manipulation_checks.md", "Manipulation checks, decided on zero-shot numbers before any fine-tuning"),
        ("notebook", "plots.zero_shot_overview", "Zero-shot measures per task and domain"),
    ),
    "02_finetune": (
        ("selected_lr", "lr_sweep.csv", "Learning rate selected per (task, method) on the ID validation "
                                        "accuracy of the sweep"),
        ("png", "lr_sweep.png", "Every sweep point"),
        ("md", "training_check.md", "Trained long enough: on each task, how many methods beat zero-shot on ID validation"),
    ),
    "03_evaluate": (
        ("md", "headline.md", "Headline: ID gain, DG gain and CF drop per method"),
        ("png", "method_bars.png", "Accuracy per method and schema"),
        ("md", "method_summary.md", "Every quantity per method"),
        ("md", "seed_noise.md", "Seed noise within a task beside the spread between tasks"),
        ("png", "sweep_tradeoff.png", "ID gain, DG gain and forgetting along the learning rate (every sweep point evaluated)"),
    ),
    "04_figures": (
        ("md", "headline.md", "Headline"),
        ("png", "tradeoff.png", "DG gain vs forgetting per method"),
        ("md", "claims.md", "The paper's claims on this data"),
        ("png", "method_bars.png", "Accuracy per method and schema"),
        ("png", "difficulty_vs_gain.png", "Which zero-shot measure tracks the gain"),
        ("png", "forgetting_vs_ss.png", "Forgetting vs the trained task's zero-shot ss"),
        ("png", "alignment_shift.png", "How far each method moves the embedding space"),
        ("png", "ablations.png", "Ablations"),
    ),
}
# what only some profiles publish (shown when there, named as "not published" otherwise): A-CLIP's
# ablations (profiles with grid.ablations: mini), the sweep-point trade-off (profiles that evaluate every
# sweep point), seed noise (profiles with several seeds on some task)
OPTIONAL = frozenset({"ablations.png", "sweep_tradeoff.png", "seed_noise.md"})
# what RECOMPUTE may name, with what it costs (docs/reproducibility.md has the measured times)
RECOMPUTE_PROFILES = {"smoke": "~3-6 min on 2 CPU cores", "study3": "the default, 32 tasks: ~31 min on 2 CPU cores",
                      "study4": "96 new tasks, the claims decided: ~38 min on 2 CPU cores",
                      "mini": "world v2, 8 tasks: ~30 min on 2 CPU cores",
                      "colab": "real CLIP, a T4 GPU, ~48 min estimated, data downloaded: docs/colab.md",
                      "paper": "a GPU and the data, docs/usage.md"}


def _manifest_line(root: Path) -> str:
    """Which run produced ``root`` (paper_figures/), from its MANIFEST.json."""
    try:
        made = json.loads((root / "MANIFEST.json").read_text())["produced_by"]
        git = made.get("git") or {}
        commit = (git.get("commit") or "unknown")[:12] + (" with uncommitted changes" if git.get("dirty") else "")
        return (f"profile **{made.get('profile', 'unknown')}**, commit `{commit}`, "
                f"{made.get('device', 'device unknown')} (`{shown(root / 'MANIFEST.json')}`)")
    except (OSError, ValueError, KeyError, TypeError):
        return f"profile and commit unknown: no readable `{shown(root / 'MANIFEST.json')}`"


def _executed_notebook(root: Path, stage: str) -> Path | None:
    """The executed notebook of ``stage`` in ``root``/notebooks (02: the first task's unit)."""
    found = sorted((root / "notebooks").glob(f"{stage}*.ipynb"))
    return found[0] if found else None


def _notebook_pngs(nb_path: Path | None, marker: str) -> list[bytes]:
    """The PNG outputs of the cells of executed notebook ``nb_path`` whose source contains ``marker``."""
    if nb_path is None:
        return []
    try:
        cells = json.loads(nb_path.read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return []
    out = []
    for c in cells:
        src = "".join(c.get("source", ""))
        if c.get("cell_type") == "code" and marker in src:
            for o in c.get("outputs", []):
                data = o.get("data", {}).get("image/png")
                if data:
                    out.append(base64.b64decode("".join(data) if isinstance(data, list) else data))
    return out


def _table(path: Path):
    """A CSV of paper_figures/ as a DataFrame, numbers rounded, empty cells blank."""
    import pandas as pd  # optional: absent when the bootstrap cell imports lib.notebook before installing (tests/test_notebooks.py runs it with -S)
    df = pd.read_csv(path).round(3)
    return df.astype(object).where(df.notna(), "")


def _selected_lr(path: Path):
    """Task x method table of the selected learning rate, from lr_sweep.csv."""
    import pandas as pd  # optional: absent when the bootstrap cell imports lib.notebook before installing (tests/test_notebooks.py runs it with -S)
    df = pd.read_csv(path)
    sel = df[df["selected"].astype(str) == "True"]
    table = sel.pivot_table(index="task", columns="method", values="lr", aggfunc="first")
    table = table.reindex(index=list(dict.fromkeys(sel["task"])), columns=list(dict.fromkeys(sel["method"])))
    return table.map(lambda v: "" if pd.isna(v) else f"{v:g}")


def show_published(stage: str, *, repo: str | None = None, ref: str | None = None, root=None,
                   display=None) -> dict:
    """Show what ``stage`` (a notebook name, ``"01_zero_shot"``) published in ``paper_figures/``
    (``root``): a heading naming the profile and commit that produced it, each item of
    ``PUBLISHED[stage]`` that exists (an absent one is named, not an error), where the executed
    notebook of the stage is (on GitHub / nbviewer at ``ref`` when ``repo`` and ``ref`` are given)
    and how to recompute. Computes nothing. Returns ``{"shown": [...], "missing": [...]}``."""
    from IPython.display import Image, Markdown  # optional: IPython may be absent (the notebooks extra)
    if display is None:
        from IPython.display import display  # optional: IPython may be absent (the notebooks extra)
    if stage not in PUBLISHED:
        raise ValueError(f"unknown stage {stage!r}; valid: {', '.join(PUBLISHED)}")
    root = Path(root or paths.PAPER_FIGURES)
    where = shown(root)
    nb_path = _executed_notebook(root, stage)
    shown_items, missing = [], []
    display(Markdown(f"## Published results of this stage\n\nRead from `{where}/` (nothing is computed "
                     f"here): {_manifest_line(root)}."))
    for kind, name, caption in PUBLISHED[stage]:
        if kind == "notebook":
            pngs = _notebook_pngs(nb_path, name)
            if not pngs:
                missing.append(name)
                display(Markdown(f"*{caption}: no figure from `{name}` in "
                                 f"{'`' + shown(nb_path) + '`' if nb_path else 'an executed notebook of this stage'}.*"))
                continue
            display(Markdown(f"**{caption}** (from the executed notebook `{shown(nb_path)}`)"))
            for data in pngs:
                display(Image(data=data, format="png"))
            shown_items.append(name)
            continue
        path = root / name
        if not path.is_file():
            missing.append(name)
            display(Markdown(f"*{caption}: `{where}/{name}` is not published.*"))
            continue
        display(Markdown(f"**{caption}** (`{where}/{name}`)"))
        if kind == "md":
            display(Markdown(path.read_text(encoding="utf-8")))
        elif kind == "csv":
            display(_table(path))
        elif kind == "selected_lr":
            display(_selected_lr(path))
        elif kind == "png":
            display(image(path, width=420 if name == "tradeoff.png" else None))
        else:
            raise ValueError(f"unknown kind {kind!r} in PUBLISHED[{stage!r}]")
        shown_items.append(name)
    if nb_path is None:
        missing.append(f"notebooks/{stage}.ipynb")
        text = f"No executed notebook of this stage in `{where}/notebooks/`."
    else:
        rel = nb_path.relative_to(root).as_posix()
        text = f"The executed notebook of this stage, every output in place: `{where}/{rel}`"
        if repo and ref:
            text += (f" ([GitHub](https://github.com/{repo}/blob/{ref}/paper_figures/{rel}), "
                     f"[nbviewer](https://nbviewer.org/github/{repo}/blob/{ref}/paper_figures/{rel}))")
        text += "."
    costs = ", ".join(f'`"{p}"` ({c})' for p, c in RECOMPUTE_PROFILES.items())
    display(Markdown(f"{text}\n\n**To recompute** this stage: set `RECOMPUTE` in the next cell to {costs}, "
                     f"then *Run all* again; the missing inputs of this stage are built first (Make). "
                     f"Left at `None`, *Run all* stops there."))
    return {"shown": shown_items, "missing": missing}


class StopHere(Exception):
    """Raised by :func:`recompute` to stop "Run all" after the published results. IPython shows what
    ``_render_traceback_`` returns instead of a traceback: nothing. The kernel still reports an error,
    so Jupyter and Colab run no further cell."""

    def _render_traceback_(self):
        return []


def recompute(choice: str | None) -> str:
    """The recompute cell on Colab / Binder: ``choice`` None stops here quietly (:class:`StopHere`,
    after one line saying how to go on); a profile name is checked and returned (the new ``profile``)."""
    if choice is None:
        print('Stopped after the published results. To recompute this stage set RECOMPUTE above '
              '(e.g. RECOMPUTE = "smoke") and Run all again.', flush=True)
        raise StopHere("stopped after the published results (RECOMPUTE is None)")
    from .config import check_profile_name  # optional: stdlib-only import path of the bootstrap cell (lib.config imports yaml)
    check_profile_name(choice)
    print(f"Recomputing on profile {choice!r} ({RECOMPUTE_PROFILES.get(choice, 'see docs/reproducibility.md')}): "
          f"missing inputs are built first.", flush=True)
    return choice
