"""The notebooks' shared cells, from this one source.

Every stage notebook in notebooks/ starts with a header (title, what the stage does, Colab and Binder
badges) and a bootstrap cell; right after its ``parameters`` cell come a "published" cell, a
"recompute" cell and (notebooks 01-04) an "upstream" cell. Those cells are written here; every other
cell lives only in its .ipynb.

Opened on Colab or Binder (``HOSTED``), "Run all" shows the stage's published results from
``paper_figures/`` (``lib.notebook.show_published``) and stops quietly at the recompute cell
(``RECOMPUTE = None``); with ``RECOMPUTE`` set to a profile it sets ``profile`` and goes on: the
upstream cell builds the missing inputs, then the stage runs. Under papermill / Make (not HOSTED)
the three cells do nothing, so the executed notebooks are the same apart from their empty cells.

    python tools/nbcells.py sync    # rewrite the shared cells of every notebook (outputs stripped)
    python tools/nbcells.py check   # exit 1 naming each notebook whose shared cells differ

A shared cell carries ``"nbcells": "<kind>"`` in its metadata and a fixed cell id. The bootstrap cell is
collapsed (``jupyter.source_hidden``) under a one-line note; it ends by calling ``lib.notebook.install()``
(figures embedded small). Each notebook's metadata ``nbcells.format`` is FORMAT: papermill keeps it in
the executed copies, so a test can tell notebooks published by older code (tests/test_published_notebooks.py).

Release rule (REF): the badges open, and the Colab bootstrap clones, the named release REF. To cut
a release: set REF to the new tag, run ``sync``, commit, and tag that commit REF; so a notebook
opened from a badge and the code it clones are the same commit.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat

REPO = "qtm-peft/clip-task-misalignment"   # where the artifact is published
REF = "v1.0"                                 # the release the badges open and Colab clones
FORMAT = 2   # what executed notebooks show (2: text progress, small figures, no machine paths); bump on change
NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"

# title and one-paragraph description of each notebook
NOTEBOOKS = {
    "00_pretrain": (
        '00 · The embedded world and the small CLIP',
        "Generates the offline world (the downstream tasks and an image-caption corpus) and pretrains the profile's small open_clip CLIP on it with open_clip's contrastive loss. Produces `build/<profile>/world/` and `build/<profile>/models/pretrained.safetensors` (+ `.json` with the loss curve and held-out retrieval R@1). On the `paper` profile the model is OpenAI's ViT-B/32 and this stage only checks that the data is in place."),
    "01_zero_shot": (
        '01 · Zero-shot difficulty of each task',
        'For every task and domain: zero-shot accuracy (`acc`) with class-prompt heads, the average cosine similarity (`acs`) of each image with its class prompt, the silhouette score of image vs text embeddings labelled by modality (`ss`, cosine distance), the class silhouette of the image embeddings (`class_ss`) and the modality gap. Writes `build/<profile>/results/zero_shot.csv`.'),
    "02_finetune": (
        '02 · Fine-tune one task with every method',
        "For one task, every PEFT method of the grid, in this one kernel: first the method's learning-rate sweep (seed 0 at each rate of `lr_grid` in `params/methods/<method>.yaml`), then the rate with the best ID validation accuracy (ties → the smaller rate; diverged runs are not eligible), then the other seeds — and, for A-CLIP, its ablation variants — at that rate. Logits = logit_scale · normalised image features @ normalised class-prompt features, cross-entropy, best-validation state kept. Each run writes `build/<profile>/runs/<task>/<method>/<variant>/seed<k>/` (a sweep point: `.../<method>/sweep/lr<rate>/seed0/`): trainable state, `meta.json`, and last the completion marker `row.json`; a run that is already complete is reused, so a killed notebook redoes only unfinished runs. Make runs this notebook once per task."),
    "03_evaluate": (
        '03 · DG / CF evaluation and alignment after fine-tuning',
        "Every fine-tuning run is evaluated by one job per task (`python -m lib.pipeline.evaluate <profile> <task> <method> ...`, one Make recipe per task for its (task, method) units): accuracy on the trained task's ID test (ID), on its shifted domains (DG) and on every other task (CF), each next to the zero-shot model on the same data; ACS, ss, class ss and the modality gap recomputed with the fine-tuned model. This notebook gathers those per-unit files into `build/<profile>/results/evaluation.csv` and shows them; the statistics are in `04_figures`."),
    "04_figures": (
        "04 · Figures and the paper's claims",
        "Reads the result tables of the profile (`build/<profile>/results/{zero_shot,finetune,evaluation}.csv`), "
        "computes every statistic once (`lib.analysis`: tasks as the sampling unit, exact signed-rank and "
        "permutation tests over tasks with the intervals that invert them, Holm within each claim, registered "
        "claim rules), writes the tables (CSV + Markdown), draws every figure "
        "(PNG + PDF) from those tables only and writes `claims.md`, all into `build/<profile>/figures/` "
        "(`lib.pipeline.publish`). The verdicts are computed, never written by hand."),
}
NO_UPSTREAM = {"00_pretrain"}   # the first stage reads nothing another stage writes
AFTER_PARAMETERS = ("published", "recompute", "upstream")  # the shared cells right after `parameters`, in order

BOOTSTRAP = '''\
# Bootstrap (shared cell, written by tools/nbcells.py). On Colab: fetch release REF of the project and
# install only what Colab lacks, keeping its torch / numpy / pandas / kernel. Elsewhere: only make
# `import lib` work (the repository this notebook runs in, else the installed package).
import importlib, importlib.util, os, subprocess, sys
from importlib import metadata
from pathlib import Path

REPO, REF = "{repo}", "{ref}"
ON_COLAB = "google.colab" in sys.modules
# published results first, recompute on request; never under Make (papermill inherits MAKELEVEL), where a
# Colab kernel would otherwise stop a `make reproduce` at the published results
HOSTED = (ON_COLAB or "BINDER_LAUNCH_HOST" in os.environ) and "MAKELEVEL" not in os.environ


def _project_root():
    starts = [Path.cwd()]  # the repository this notebook runs in comes first, then an installed `lib`
    if os.environ.get("JPY_SESSION_NAME"):  # the notebook's own path, under Jupyter
        starts.insert(0, Path(os.environ["JPY_SESSION_NAME"]).resolve().parent)
    for start in starts:
        for p in [start, *start.parents]:
            if (p / "lib" / "paths.py").exists() and (p / "notebooks").is_dir():
                return p
    spec = importlib.util.find_spec("lib")
    if spec and spec.origin and (Path(spec.origin).parent / "paths.py").exists():
        return None  # `import lib` works: the project is installed (pip install -e .)
    raise ModuleNotFoundError(
        "This notebook needs the project's `lib` package and cannot find it from "
        f"{{Path.cwd()}}. Run `pip install -e .` in the repository root, or start Jupyter / "
        "papermill from inside the repository (papermill: add `--cwd <repository>`).")


def _versions():
    importlib.invalidate_caches()
    return {{(d.metadata["Name"] or "").lower().replace("_", "-"): d.version
            for d in metadata.distributions()}}


if ON_COLAB:
    root = Path("/content") / REPO.split("/")[1]
    if not (root / "lib").exists():
        url = f"https://github.com/{{REPO}}"
        tag = subprocess.run(["git", "ls-remote", "--tags", "--refs", url, REF], capture_output=True, text=True)
        if tag.returncode == 0 and (tag.stdout or "").strip():
            subprocess.run(["git", "clone", "--depth", "1", "--branch", REF, url, str(root)], check=True)
        else:
            print(f"Release {{REF}} is not published on {{url}} (no such tag): cloning the default branch "
                  f"instead; its code may differ from the release this notebook names.")
            subprocess.run(["git", "clone", "--depth", "1", url, str(root)], check=True)
    if not (root / ".colab-installed").exists():
        before = _versions()
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r",
                        str(root / "requirements-colab.txt")], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", str(root)],
                       check=True)
        (root / ".colab-installed").write_text(REF)
        after, owners = _versions(), metadata.packages_distributions()
        loaded = {{d.lower().replace("_", "-") for m in list(sys.modules) if "." not in m
                  for d in owners.get(m, [])}}
        stale = sorted(f"{{n}} {{before[n]}} -> {{v}}" for n, v in after.items()
                       if n in loaded and before.get(n) not in (None, v))
        if stale:
            raise RuntimeError("RESTART NEEDED: pip changed packages this session had already "
                               "imported (" + "; ".join(stale) + "). Use Runtime > Restart session, "
                               "then run the notebook again from the top (nothing is reinstalled).")
    os.chdir(root)
    sys.path.insert(0, str(root))
else:
    root = _project_root()
    if root is not None and sys.path[:1] != [str(root)]:
        sys.path.insert(0, str(root))
import lib.notebook  # in a kernel: figures embedded as small PNGs (a no-op elsewhere)
lib.notebook.install()'''

BOOTSTRAP_NOTE = ("*Setup (the collapsed cell below): makes `import lib` work; on Colab it first fetches "
                  "release `{ref}` and installs what Colab lacks.*")

PUBLISHED = '''\
# Published results (shared cell, written by tools/nbcells.py): opened on Colab or Binder, show first
# what this stage published in paper_figures/ (nothing is computed); a no-op under papermill / Make.
if HOSTED:
    from lib.notebook import show_published
    show_published("{name}", repo=REPO, ref=REF)'''

RECOMPUTE = '''\
# Recompute (shared cell, written by tools/nbcells.py): on Colab or Binder "Run all" stops here, after
# the published results. To recompute this stage, set RECOMPUTE (it replaces `profile`) and Run all again.
RECOMPUTE = None  # "smoke" (~6 min CPU), "mini" (~30 min CPU) or "paper" (GPU + data): set it and run on
if HOSTED:
    from lib.notebook import recompute
    profile = recompute(RECOMPUTE)'''

UPSTREAM = '''\
# Upstream (shared cell, written by tools/nbcells.py): on Colab or Binder, once RECOMPUTE is set, build
# this stage's missing inputs on `profile` first (Make, with progress below); a no-op when they exist.
if HOSTED:
    from lib.pipeline.upstream import ensure_upstream
    ensure_upstream("{name}", profile)'''


def badges(name: str) -> str:
    colab = f"https://colab.research.google.com/github/{REPO}/blob/{REF}/notebooks/{name}.ipynb"
    binder = f"https://mybinder.org/v2/gh/{REPO}/{REF}?labpath=notebooks%2F{name}.ipynb"
    return (f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab}) "
            f"[![Binder](https://mybinder.org/badge_logo.svg)]({binder})")


def header(name: str) -> str:
    title, what = NOTEBOOKS[name]
    return (f"# {title}\n\n{what}\n\n{badges(name)}\n\n"
            "Run by `make reproduce` through papermill. The `parameters` cell only names the work (its "
            "defaults are the fast `smoke` profile); every other value comes from `params/` through "
            "`lib.config`. All logic lives in `lib/`. Opened from a "
            f"badge, the notebook runs release `{REF}`; on Colab the first run of the (collapsed) setup "
            "cell installs what Colab lacks. On Colab or Binder, *Run all* shows this stage's published "
            "results (`paper_figures/`) and stops; to recompute, set `RECOMPUTE` in the cell after them "
            "and *Run all* again (missing inputs of this stage are built first).")


def shared_cells(name: str) -> dict[str, nbformat.NotebookNode]:
    """``{kind: cell}`` of the shared cells of notebook ``name``."""
    if name not in NOTEBOOKS:
        raise KeyError(f"notebook {name!r} has no entry in tools/nbcells.py NOTEBOOKS "
                       f"(known: {', '.join(NOTEBOOKS)}); add its title and description there")
    cells = {"header": nbformat.v4.new_markdown_cell(header(name)),
             "bootstrap_note": nbformat.v4.new_markdown_cell(BOOTSTRAP_NOTE.format(ref=REF)),
             "bootstrap": nbformat.v4.new_code_cell(BOOTSTRAP.format(repo=REPO, ref=REF)),
             "published": nbformat.v4.new_code_cell(PUBLISHED.format(name=name)),
             "recompute": nbformat.v4.new_code_cell(RECOMPUTE)}
    if name not in NO_UPSTREAM:
        cells["upstream"] = nbformat.v4.new_code_cell(UPSTREAM.format(name=name))
    for kind, cell in cells.items():
        cell.metadata = nbformat.NotebookNode({"nbcells": kind})
        cell.id = f"nbcells-{kind.replace('_', '-')}"
    cells["bootstrap"].metadata["jupyter"] = nbformat.NotebookNode({"source_hidden": True})
    return cells


def _shown_metadata(cell) -> dict:
    """The metadata a shared cell is checked for (Jupyter may add other keys while one works)."""
    return {k: cell.get("metadata", {}).get(k) for k in ("nbcells", "jupyter")}


def _kind(cell) -> str | None:
    return cell.get("metadata", {}).get("nbcells")


def _parameters_index(cells) -> int:
    idx = [i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(idx) != 1:
        raise ValueError(f"expected exactly one cell tagged `parameters`, found {len(idx)}")
    return idx[0]


def synced(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """``nb`` with its shared cells rewritten and placed; every other cell as it was."""
    want = shared_cells(name)
    cells = list(nb.cells)
    # a notebook from before nbcells: its first two cells are the old header and bootstrap
    if not any(_kind(c) for c in cells):
        if (len(cells) >= 2 and cells[0].cell_type == "markdown" and cells[1].cell_type == "code"
                and "bootstrap" in "".join(cells[1].source).lower()):
            cells = cells[2:]
        else:
            raise ValueError("no shared cells and no old header + bootstrap cells to replace: add "
                             "the shared cells by hand (metadata \"nbcells\": \"header\" etc.)")
    cells = [c for c in cells if _kind(c) not in want]   # drop old shared cells (re-added below)
    stray = [_kind(c) for c in cells if _kind(c)]
    if stray:
        raise ValueError(f"unknown shared cell kinds {stray}: known are {', '.join(want)}")
    cells = [want["header"], want["bootstrap_note"], want["bootstrap"], *cells]
    p = _parameters_index(cells)  # after `parameters`: published results, recompute, upstream
    cells[p + 1:p + 1] = [want[k] for k in AFTER_PARAMETERS if k in want]
    out = nbformat.from_dict(dict(nb))
    out.cells = cells
    out.metadata["nbcells"] = nbformat.NotebookNode({"format": FORMAT})
    return out


def problems(path: Path) -> list[str]:
    """What differs from the shared source in notebook ``path`` (empty: in sync)."""
    nb = nbformat.read(path, as_version=4)
    name = path.stem
    try:
        want_nb = synced(nb, name)
    except (KeyError, ValueError) as e:
        return [f"{path.name}: {e}"]
    out = []
    if nb.metadata.get("nbcells") != want_nb.metadata["nbcells"]:
        out.append(f"{path.name}: notebook metadata nbcells should be {dict(want_nb.metadata['nbcells'])}")
    if len(want_nb.cells) != len(nb.cells):
        out.append(f"{path.name}: shared cells missing or duplicated "
                   f"({len(nb.cells)} cells, {len(want_nb.cells)} after sync)")
    for i, (have, want) in enumerate(zip(nb.cells, want_nb.cells)):
        if _kind(want) is None:
            continue
        kind = _kind(want)
        if _kind(have) != kind:
            out.append(f"{path.name}: cell {i} should be the shared {kind!r} cell")
        elif have.source != want.source:
            out.append(f"{path.name}: the {kind!r} cell differs from tools/nbcells.py")
        elif _shown_metadata(have) != _shown_metadata(want):
            out.append(f"{path.name}: the {kind!r} cell's metadata differs from tools/nbcells.py")
        elif have.get("outputs") or have.get("execution_count"):
            out.append(f"{path.name}: the {kind!r} cell has outputs")
    return out


def notebooks() -> list[Path]:
    return sorted(NB_DIR.glob("*.ipynb"))


def main(argv: list[str]) -> int:
    if argv not in (["sync"], ["check"]):
        print("usage: python tools/nbcells.py sync|check", file=sys.stderr)
        return 2
    if argv == ["sync"]:
        for path in notebooks():
            nb = nbformat.read(path, as_version=4)
            new = synced(nb, path.stem)
            if new != nb:
                nbformat.write(new, path)
                print("synced", path.name)
        return 0
    found = [p for path in notebooks() for p in problems(path)]
    for p in found:
        print(p, file=sys.stderr)
    if found:
        print("run `python tools/nbcells.py sync` to rewrite the shared cells", file=sys.stderr)
        return 1
    print(f"shared cells of {len(notebooks())} notebooks match tools/nbcells.py")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
