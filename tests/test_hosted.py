"""A reader who opens a notebook on Colab or Binder (``HOSTED``) sees the published results first and
recomputes only on request: the shared "published" and "recompute" cells (tools/nbcells.py) and what
they call in lib/notebook.py. Fast: the cells' sources run with ``exec`` in a namespace that holds what
the bootstrap cell sets; one slow test runs them in a real kernel.

Under papermill / Make (``HOSTED`` False) both cells must do nothing, so every executed notebook keeps
its outputs (the two cells' outputs are empty).
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lib import notebook, paths
from lib.config import ConfigError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import nbcells  # noqa: E402

# what the issue asks each stage to show first (a subset of notebook.PUBLISHED: the rest may change)
MUST_SHOW = {
    "00_pretrain": {"plots.world_samples", "plots.pretrain_curves"},
    "01_zero_shot": {"zero_shot_summary.md", "world_check.csv"},
    "02_finetune": {"lr_sweep.csv", "lr_sweep.png"},
    "03_evaluate": {"headline.md", "method_summary.md"},
    "04_figures": {"claims.md", "headline.md", "tradeoff.png"},
}


def cell(name: str, kind: str) -> str:
    return nbcells.shared_cells(name)[kind].source


def shown_types(objs) -> list[str]:
    return [type(o).__name__ for o in objs]


def markdown_text(objs) -> str:
    return "\n".join(o.data for o in objs if type(o).__name__ == "Markdown")


# ------------------------------------------------------------------ show_published on paper_figures/
@pytest.mark.parametrize("stage", list(nbcells.NOTEBOOKS))
def test_show_published_shows_the_stage_results_of_paper_figures(stage):
    assert set(notebook.PUBLISHED) == set(nbcells.NOTEBOOKS)
    got = []
    res = notebook.show_published(stage, repo=nbcells.REPO, ref=nbcells.REF, display=got.append)
    assert set(res["missing"]) <= notebook.OPTIONAL, res       # the published profile may lack only these
    assert res["shown"] == [name for _, name, _ in notebook.PUBLISHED[stage] if name not in res["missing"]]
    assert MUST_SHOW[stage] <= set(res["shown"])
    text = markdown_text(got)
    made = json.loads((paths.PAPER_FIGURES / "MANIFEST.json").read_text())["produced_by"]
    assert f"profile **{made['profile']}**" in text and made["git"]["commit"][:12] in text
    executed = sorted((paths.PAPER_FIGURES / "notebooks").glob(f"{stage}*.ipynb"))[0].name
    assert f"`paper_figures/notebooks/{executed}`" in text
    assert f"https://github.com/{nbcells.REPO}/blob/{nbcells.REF}/paper_figures/notebooks/{executed}" in text
    assert "set `RECOMPUTE`" in text and '`"smoke"`' in text and '`"paper"`' in text
    figures = sum(k in ("png", "notebook") and n not in res["missing"] for k, n, _ in notebook.PUBLISHED[stage])
    assert shown_types(got).count("Image") >= figures  # a notebook item may hold several figures
    for kind, name, _ in notebook.PUBLISHED[stage]:
        if name in res["missing"]:
            assert f"`paper_figures/{name}` is not published" in text
        elif kind == "md":  # rendered as it is published
            assert any(getattr(o, "data", None) == (paths.PAPER_FIGURES / name).read_text() for o in got)
        if kind in ("csv", "selected_lr"):
            assert "DataFrame" in shown_types(got)
    assert "/work/" not in text and str(ROOT) not in text  # no path of this machine


def test_selected_learning_rates_match_the_sweep():
    got = []
    notebook.show_published("02_finetune", display=got.append)
    table = next(o for o in got if type(o).__name__ == "DataFrame")
    import pandas as pd
    sweep = pd.read_csv(paths.PAPER_FIGURES / "lr_sweep.csv")
    sel = sweep[sweep["selected"]]
    assert table.shape == (sel["task"].nunique(), sel["method"].nunique())
    row = sel.iloc[0]
    assert table.loc[row["task"], row["method"]] == f"{row['lr']:g}"


def test_missing_items_are_named_not_raised(tmp_path):
    root = tmp_path / "paper_figures"
    root.mkdir()
    shutil.copy(paths.PAPER_FIGURES / "headline.md", root)
    got = []
    res = notebook.show_published("04_figures", root=root, display=got.append)
    assert res["shown"] == ["headline.md"]
    assert {"tradeoff.png", "claims.md", "notebooks/04_figures.ipynb"} <= set(res["missing"])
    text = markdown_text(got)
    assert "tradeoff.png` is not published" in text and "profile and commit unknown" in text
    assert "No executed notebook of this stage" in text and "set `RECOMPUTE`" in text
    (root / "MANIFEST.json").write_text("{not json")
    assert "profile and commit unknown" in markdown_text(_show("01_zero_shot", root))
    # an executed notebook without the figure cell: the figure is named as missing
    (root / "notebooks").mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]),
                   root / "notebooks" / "00_pretrain.ipynb")
    got = []
    res = notebook.show_published("00_pretrain", root=root, display=got.append)
    assert res["shown"] == [] and res["missing"] == ["plots.world_samples", "plots.pretrain_curves"]
    assert "no figure from `plots.world_samples`" in markdown_text(got)


def _show(stage, root):
    got = []
    notebook.show_published(stage, root=root, display=got.append)
    return got


def test_unknown_stage():
    with pytest.raises(ValueError, match="unknown stage"):
        notebook.show_published("05_new", display=lambda o: None)


# ------------------------------------------------------------------ the shared cells, run with exec
@pytest.fixture
def displayed(monkeypatch):
    """What the cells pass to IPython's display (the default of show_published)."""
    import IPython.display
    got = []
    monkeypatch.setattr(IPython.display, "display", got.append)
    return got


def namespace(hosted: bool, profile="smoke") -> dict:
    """What the bootstrap cell and the parameters cell leave for the cells after them."""
    return {"HOSTED": hosted, "ON_COLAB": False, "REPO": nbcells.REPO, "REF": nbcells.REF, "profile": profile}


def with_recompute(source: str, value) -> str:
    assert source.count("RECOMPUTE = None") == 1
    return source.replace("RECOMPUTE = None", f"RECOMPUTE = {value!r}")


@pytest.mark.parametrize("name", list(nbcells.NOTEBOOKS))
def test_hosted_run_all_shows_the_published_results_and_stops_quietly(name, displayed, capsys):
    ns = namespace(True)
    exec(cell(name, "published"), ns)
    assert "Image" in shown_types(displayed) or "DataFrame" in shown_types(displayed)
    with pytest.raises(notebook.StopHere) as stop:
        exec(cell(name, "recompute"), ns)
    assert stop.value._render_traceback_() == []  # IPython shows this instead of a traceback: nothing
    assert ns["profile"] == "smoke" and ns["RECOMPUTE"] is None
    assert 'set RECOMPUTE above (e.g. RECOMPUTE = "smoke") and Run all again' in capsys.readouterr().out


@pytest.mark.parametrize("choice, profile", [("smoke", "smoke"), ("mini", "smoke"), ("paper", "smoke"),
                                             ("smoke", "mini")])
def test_hosted_recompute_sets_the_profile_and_goes_on(choice, profile, capsys):
    ns = namespace(True, profile)
    exec(with_recompute(cell("01_zero_shot", "recompute"), choice), ns)
    assert ns["profile"] == choice
    assert f"Recomputing on profile {choice!r}" in capsys.readouterr().out


def test_hosted_recompute_refuses_an_unknown_profile():
    ns = namespace(True)
    with pytest.raises(ConfigError, match="unknown profile 'smok'.*valid profiles"):
        exec(with_recompute(cell("02_finetune", "recompute"), "smok"), ns)
    assert ns["profile"] == "smoke"


@pytest.mark.parametrize("name", list(nbcells.NOTEBOOKS))
@pytest.mark.parametrize("recompute", [None, "mini"])
def test_under_papermill_the_cells_do_nothing(name, recompute, displayed, capsys, monkeypatch):
    """Not HOSTED (papermill, Make, a local Jupyter): no display, no output, no stop, ``profile`` kept,
    and the upstream cell does not build anything."""
    from lib.pipeline import upstream
    monkeypatch.setattr(upstream, "ensure_upstream", lambda *a, **k: pytest.fail("upstream ran"))
    ns = namespace(False, "mini")
    for kind in nbcells.AFTER_PARAMETERS:
        if kind in nbcells.shared_cells(name):
            src = cell(name, kind)
            exec(with_recompute(src, recompute) if kind == "recompute" else src, ns)
    assert displayed == [] and capsys.readouterr() == ("", "")
    assert ns["profile"] == "mini"


# ------------------------------------------------------------------ the notebooks
@pytest.mark.parametrize("path", nbcells.notebooks(), ids=lambda p: p.stem)
def test_published_and_recompute_cells_follow_the_one_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    params = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    kinds = [c.metadata.get("nbcells") for c in nb.cells]
    after = ["published", "recompute"] + ([] if path.stem in nbcells.NO_UPSTREAM else ["upstream"])
    assert kinds[params[0] + 1:params[0] + 1 + len(after)] == after
    assert all(kinds.count(k) == 1 for k in after)
    assert f'show_published("{path.stem}", repo=REPO, ref=REF)' in nb.cells[params[0] + 1].source
    assert "RECOMPUTE = None" in nb.cells[params[0] + 2].source
    assert nbcells.problems(path) == []


# ------------------------------------------------------------------ IPython: no traceback, run-all stops
IPYTHON_SIM = r'''
import json, sys
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.user_ns.update(HOSTED=True, profile="smoke")
res = shell.run_cell(sys.argv[1])
print("RESULT", json.dumps({"error": type(res.error_in_exec).__name__, "success": res.success}))
'''


def test_in_ipython_the_stop_shows_no_traceback():
    """IPython (the kernel of Jupyter, Binder and Colab) renders StopHere through _render_traceback_:
    the cell fails (so "Run all" runs nothing after it) and prints only the one line of recompute()."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", IPYTHON_SIM, cell("01_zero_shot", "recompute")], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out, result = r.stdout.split("RESULT ")
    assert json.loads(result) == {"error": "StopHere", "success": False}
    assert "Traceback" not in r.stdout + r.stderr and "StopHere" not in out + r.stderr
    assert out.strip() == ('Stopped after the published results. To recompute this stage set RECOMPUTE above '
                           '(e.g. RECOMPUTE = "smoke") and Run all again.')


@pytest.mark.slow  # starts a kernel
def test_a_kernel_on_binder_shows_the_published_results_and_runs_nothing_after_the_stop(monkeypatch):
    """The notebook's first cells in a real kernel with BINDER_LAUNCH_HOST set, as "Run all" runs them
    (nbclient stops at the first error, like Jupyter): published results shown, the recompute cell's
    error has an empty traceback, the cell after it never ran."""
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(ROOT / "notebooks" / "04_figures.ipynb", as_version=4)
    p = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])][0]
    nb.cells = nb.cells[2:p + 3] + [nbformat.v4.new_code_cell("print('RAN ON')")]
    monkeypatch.setenv("BINDER_LAUNCH_HOST", "https://mybinder.org/")
    for k in ("PYTHONPATH", "JPY_SESSION_NAME", "MAKELEVEL"):
        monkeypatch.delenv(k, raising=False)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=300,
                                     resources={"metadata": {"path": str(ROOT / "notebooks")}})
    with pytest.raises(nbclient.exceptions.CellExecutionError):
        client.execute()
    published, stop, after = nb.cells[-3:]
    assert published.metadata["nbcells"] == "published"
    mimes = [m for o in published.outputs for m in o.get("data", {})]
    assert "image/png" in mimes and "text/markdown" in mimes
    errors = [o for o in stop.outputs if o.output_type == "error"]
    assert len(errors) == 1 and errors[0].traceback == [] and errors[0].ename == "StopHere"
    assert "Stopped after the published results" in "".join(o.get("text", "") for o in stop.outputs)
    assert not after.outputs and after.get("execution_count") is None
