"""What a reader of the notebooks meets: no path of the machine that ran them, no progress bar frozen
in the static view, and executed notebooks small enough to open on GitHub (<= 500 kB each).

Scanned: the source notebooks (notebooks/), the published ones (paper_figures/notebooks/) and the
executed notebooks of the smoke build (``$CLIPMIS_BUILD/smoke``, which ``make test`` builds before it
runs pytest). An executed notebook carries the ``nbcells.format`` of the code that ran it
(tools/nbcells.py FORMAT, kept by papermill): one written by older code is skipped with the reason,
so the committed paper_figures/ notebooks are checked from the first ``make reproduce`` that
publishes them with this code on, and the smoke build's notebooks always.

Only what a reader sees is scanned for paths: cell sources, outputs and notebook metadata except
papermill's ``input_path`` / ``output_path`` (papermill records the paths it was given; the viewers
do not show them).
"""
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

from lib import paths

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import nbcells  # noqa: E402

MAX_BYTES = 500_000
# an absolute path of a machine: a Unix home/work/temp folder, or this machine's own folders
MACHINE_PREFIXES = ("/work/", "/root/", "/home/", "/tmp/", "/Users/", "/private/", "/var/folders/")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
FROZEN_BAR_RE = re.compile(r"\d+%\|")  # tqdm's bar: ' 0%|          | 0/32 [00:00<?, ?it/s]'


def _machine_re() -> re.Pattern:
    """An absolute path of a machine: a Unix home/work/temp folder, or one of this machine's own
    folders (the repository, the build root, home, temp), starting a word."""
    here = {str(ROOT), str(paths.build_root().resolve()), str(Path.home()), tempfile.gettempdir()}
    prefixes = sorted({*MACHINE_PREFIXES, *(p.rstrip("/") + "/" for p in here if len(p) > 1)})
    return re.compile(r"(?m)(?:^|[\s'\"(\[=:,])(?:" + "|".join(re.escape(p) for p in prefixes) + ")")


def machine_paths(text: str) -> list[str]:
    """Snippets of ``text`` that name an absolute path of this (or a developer's) machine."""
    return [text[max(0, m.start() - 30):m.end() + 40] for m in _machine_re().finditer(text)]


def _texts(nb) -> list[tuple[str, str]]:
    """(where, text) of everything a reader sees in ``nb``."""
    out = []
    meta = json.loads(json.dumps(nb.metadata))
    for key in ("input_path", "output_path"):
        meta.get("papermill", {}).pop(key, None)
    out.append(("notebook metadata", json.dumps(meta)))
    for i, c in enumerate(nb.cells):
        out.append((f"cell {i} source", c.source))
        for o in c.get("outputs", []):
            if o.get("output_type") == "stream":
                out.append((f"cell {i} {o.get('name')}", o.get("text", "")))
            elif o.get("output_type") == "error":
                out.append((f"cell {i} error", "\n".join(o.get("traceback", []))))
            else:
                for mime, v in o.get("data", {}).items():
                    if mime.startswith("text/") or mime.endswith("json"):
                        out.append((f"cell {i} {mime}", v if isinstance(v, str) else json.dumps(v)))
    return out


def problems(nb, size: int | None) -> list[str]:
    """Everything wrong with notebook ``nb`` for a reader (``size``: its bytes, None: unchecked)."""
    found = []
    for where, text in _texts(nb):
        found += [f"{where}: machine path in ...{h!r}..." for h in machine_paths(text)]
        if FROZEN_BAR_RE.search(text) or "\r" in text:
            found.append(f"{where}: a progress bar (frozen in the static view): {text[:80]!r}")
    if "widgets" in nb.metadata:
        found.append("notebook metadata holds widget state (a tqdm widget bar ran)")
    for i, c in enumerate(nb.cells):
        for o in c.get("outputs", []):
            if WIDGET_MIME in o.get("data", {}):
                found.append(f"cell {i}: a widget output ({o['data'].get('text/plain', '')[:60]!r})")
    if size is not None and size > MAX_BYTES:
        big = sorted(((len(json.dumps(c.get("outputs", []))), i) for i, c in enumerate(nb.cells)), reverse=True)[:3]
        found.append(f"{size / 1e3:.0f} kB > {MAX_BYTES / 1e3:.0f} kB (largest outputs: "
                     + ", ".join(f"cell {i} {n / 1e3:.0f} kB" for n, i in big) + ")")
    return found


def executed_notebooks() -> list[Path]:
    smoke = paths.build_root() / "smoke"
    return (sorted((ROOT / "paper_figures" / "notebooks").glob("*.ipynb"))
            + sorted(smoke.glob("0*.ipynb")) + sorted(smoke.glob("runs/*/02_finetune.ipynb")))


def _id(p: Path) -> str:
    try:
        return p.relative_to(ROOT).as_posix()
    except ValueError:
        return "$CLIPMIS_BUILD/" + p.relative_to(paths.build_root()).as_posix()


# ------------------------------------------------------------------ the notebooks
@pytest.mark.parametrize("path", nbcells.notebooks(), ids=lambda p: p.name)
def test_source_notebook_is_clean(path):
    nb = nbformat.read(path, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells), f"{path.name}: committed with outputs"
    assert problems(nb, None) == []
    boot = next(c for c in nb.cells if c.metadata.get("nbcells") == "bootstrap")
    assert boot.metadata["jupyter"]["source_hidden"] is True


def _executed_or_none():
    found = [p for p in executed_notebooks() if not p.name.endswith((".tmp.ipynb", ".failed.ipynb"))]
    return found or [None]


@pytest.mark.parametrize("path", _executed_or_none(), ids=lambda p: _id(p) if p else "none")
def test_executed_notebook_is_what_a_reader_enjoys(path):
    if path is None:
        pytest.skip("no executed notebooks: neither paper_figures/notebooks/ nor a smoke build "
                    f"({paths.build_root() / 'smoke'}; `make smoke` makes one)")
    nb = nbformat.read(path, as_version=4)
    fmt = (nb.metadata.get("nbcells") or {}).get("format", 1)
    if fmt < nbcells.FORMAT:
        pytest.skip(f"{_id(path)} was executed by older code (notebook format {fmt} < "
                    f"{nbcells.FORMAT} of tools/nbcells.py); the next `make reproduce` / `make smoke` "
                    "regenerates it")
    assert problems(nb, path.stat().st_size) == []


# ------------------------------------------------------------------ the checker itself
def _nb(outputs, metadata=None):
    nb = nbformat.v4.new_notebook(metadata=metadata or {})
    c = nbformat.v4.new_code_cell("x = 1")
    c.outputs = [nbformat.from_dict(o) for o in outputs]
    nb.cells = [c]
    return nb


@pytest.mark.parametrize("output, what", [
    ({"output_type": "stream", "name": "stdout", "text": "Figures: /work/final3/build/mini/figures\n"}, "machine path"),
    ({"output_type": "stream", "name": "stderr", "text": "/root/.cache/x.py:3: UserWarning: y\n"}, "machine path"),
    ({"output_type": "execute_result", "execution_count": 1, "metadata": {},
      "data": {"text/plain": "PosixPath('/home/ana/repo/build')"}}, "machine path"),
    ({"output_type": "display_data", "metadata": {},
      "data": {WIDGET_MIME: {"model_id": "ab", "version_major": 2, "version_minor": 0},
               "text/plain": "world: corpus:   0%|          | 0/25 [00:00<?, ?it/s]"}}, "widget output"),
    ({"output_type": "stream", "name": "stderr", "text": "\rtrain:  40%|####      | 4/10"}, "progress bar"),
])
def test_checker_finds(output, what):
    assert any(what in p for p in problems(_nb([output]), None))


def test_checker_passes_text_progress_and_relative_paths():
    ok = [{"output_type": "stream", "name": "stdout",
           "text": "[00_pretrain] pretrain: 0/955 (0%)\n[00_pretrain] pretrain: 955/955 (100%) 2.8 it/s\n"},
          {"output_type": "stream", "name": "stdout",
           "text": "Figures: build/mini/figures; moved: $CLIPMIS_BUILD/mini/figures; runs in build/smoke/tmp/\n"}]
    assert problems(_nb(ok, {"papermill": {"output_path": "/tmp/b/04.ipynb"}}), 1000) == []
    assert any("kB >" in p for p in problems(_nb(ok), MAX_BYTES + 1))
    assert any("widget state" in p for p in problems(_nb(ok, {"widgets": {}}), None))


# ------------------------------------------------------------------ lib/notebook.py
def test_shown_paths_name_no_machine(monkeypatch, tmp_path):
    from lib import notebook
    monkeypatch.delenv("CLIPMIS_BUILD", raising=False)
    assert notebook.shown(paths.figures_dir("mini")) == "build/mini/figures"
    assert notebook.shown(paths.PAPER_FIGURES) == "paper_figures"
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path / "b"))
    assert notebook.shown(paths.figures_dir("mini")) == "$CLIPMIS_BUILD/mini/figures"
    assert notebook.shown(tmp_path / "elsewhere" / "x.csv") == ".../elsewhere/x.csv"


def _png_info(data: bytes):
    from PIL import Image
    im = Image.open(io.BytesIO(data))
    return im.mode, im.size


def test_figures_are_embedded_small(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from lib import notebook
    fig, ax = plt.subplots(figsize=(8, 4), dpi=110)
    rng = np.random.default_rng(0)
    for k in range(6):
        ax.plot(rng.normal(size=200).cumsum(), alpha=0.6, label=f"run {k}")
    ax.imshow(np.linspace(0, 1, 32 * 64).reshape(32, 64), extent=(0, 60, -5, 5), cmap="viridis")
    ax.legend()
    small = notebook.figure_png(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")  # what the inline backend embeds
    saved = tmp_path / "f.png"
    fig.savefig(saved, dpi=200, bbox_inches="tight")
    plt.close(fig)
    mode, (w, _) = _png_info(small)
    assert mode == "P" and w < 8 * notebook.FIGURE_DPI * 1.05
    assert len(small) < len(buf.getvalue()) / 2
    mode, (w2, _) = _png_info(notebook.png_bytes(saved))
    assert mode == "P" and abs(w2 - w) <= 0.05 * w  # a 200-dpi file shown at FIGURE_DPI
    img = notebook.image(saved, width=420)
    assert img.format == "png" and img.width == 420 and img.data[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_image_grid_over_the_budget_is_drawn_again_smaller():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from lib import notebook
    fig, ax = plt.subplots(figsize=(8, 8), dpi=110)
    ax.imshow(np.random.default_rng(0).integers(0, 255, (160, 160, 3)).astype("uint8"), interpolation="nearest")
    data = notebook.figure_png(fig)
    plt.close(fig)
    assert len(data) < 1.3 * notebook.MAX_FIGURE_BYTES
    assert _png_info(data)[1][0] < 8 * notebook.FIGURE_DPI * 0.9  # drawn below FIGURE_DPI
    assert notebook._smaller_dpi(90, notebook.MAX_FIGURE_BYTES) is None
    assert notebook._smaller_dpi(notebook.MIN_DPI, 10 * notebook.MAX_FIGURE_BYTES) is None
    assert notebook._smaller_dpi(120, 4 * notebook.MAX_FIGURE_BYTES) == pytest.approx(0.9 * 120 / 2)
    assert notebook._smaller_dpi(90, 4 * notebook.MAX_FIGURE_BYTES) == notebook.MIN_DPI


def test_install_replaces_the_png_formatter_and_is_a_noop_without_ipython():
    from matplotlib.figure import Figure
    from lib import notebook

    class Formatter:
        def __init__(self):
            self.types = {}

        def for_type(self, typ, func):
            self.types[typ] = func

        def pop(self, typ, default=None):
            return self.types.pop(typ, default)

    class Shell:
        class display_formatter:
            formatters = {"image/png": Formatter(), "image/svg+xml": Formatter()}

    shell = Shell()
    shell.display_formatter.formatters["image/svg+xml"].for_type(Figure, str)
    notebook.install(shell)
    assert shell.display_formatter.formatters["image/png"].types[Figure] is notebook.figure_png
    assert Figure not in shell.display_formatter.formatters["image/svg+xml"].types
    assert notebook.install() is None  # plain pytest: no IPython shell, nothing to do


@pytest.mark.slow
def test_a_kernel_under_papermill_prints_progress_lines_and_embeds_small_figures(tmp_path):
    """The shared bootstrap in a real kernel run by papermill: progress of lib (and of the world
    generation's loops) as text lines, a matplotlib figure as a palettised PNG, no widget."""
    pytest.importorskip("papermill")
    nb = nbformat.read(ROOT / "notebooks" / "01_zero_shot.ipynb", as_version=4)
    boot = next(c for c in nb.cells if c.metadata.get("nbcells") == "bootstrap")
    body = nbformat.v4.new_code_cell(
        "import matplotlib.pyplot as plt\n"
        "from lib.progress import progress\n"
        "for _ in progress(range(3), desc='demo', every_s=0): pass\n"
        "fig, ax = plt.subplots(figsize=(6, 3)); ax.plot([0, 1], [1, 0]);")
    nb.cells = [boot, body]
    src, dst = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, src)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MAKELEVEL", "JPY_SESSION_NAME",
                                                            "CLIPMIS_PROGRESS", "MPLBACKEND")}
    r = subprocess.run([sys.executable, "-m", "papermill", str(src), str(dst), "-k", "python3",
                        "--no-progress-bar", "--cwd", str(ROOT / "notebooks")], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    out = nbformat.read(dst, as_version=4)
    text = "".join(o.get("text", "") for o in out.cells[1].outputs)
    assert "demo: 0/3 (0%)" in text and "demo: 3/3 (100%)" in text
    pngs = [o["data"]["image/png"] for o in out.cells[1].outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 1 and not out.cells[0].outputs  # the bootstrap shows nothing
    import base64
    assert _png_info(base64.b64decode(pngs[0]))[0] == "P"
    assert problems(out, dst.stat().st_size) == []
