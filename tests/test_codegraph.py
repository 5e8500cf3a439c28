"""The static import graph of lib/ (lib.pipeline.codegraph) and what is built on it: no import circle,
the code fingerprints of the fine-tuning runs and of the evaluation cache, and each stage's code
prerequisites in grid.mk. Every edit is made on a temporary copy of the repository."""
import ast
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from lib import paths
from lib.pipeline import codegraph, evaluate, finetune, grid, stages

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def lib_copy(tmp_path):
    """A copy of lib/ (what the closures read) under a temporary root."""
    shutil.copytree(ROOT / "lib", tmp_path / "lib", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def append_comment(root: Path, rel: str) -> None:
    f = root / rel
    f.write_text(f.read_text() + "\n# an edit that changes no behaviour\n")


# ----------------------------------------------------------------------------- the graph
def test_no_import_circle_in_lib():
    assert codegraph.cycles() == [], "import circles in lib/: " + "; ".join(" <-> ".join(c) for c in codegraph.cycles())


def test_graph_reads_every_kind_of_import(tmp_path):
    pkg = tmp_path / "lib"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .. import base\n")
    (pkg / "base.py").write_text("import os\n")
    (pkg / "top.py").write_text("from .sub import leaf\n\ndef f():\n    from . import lazy  # inside a function\n")
    (pkg / "lazy.py").write_text("import lib.far\n")
    (pkg / "far.py").write_text("from lib.sub.leaf import X\n")
    (pkg / "sub" / "leaf.py").write_text("from ..base import os\nX = 1\n")
    (pkg / "alone.py").write_text("")
    assert codegraph.imports("lib.top", tmp_path) == {"lib.sub.leaf", "lib.lazy"}
    assert codegraph.imports("lib.sub.leaf", tmp_path) == {"lib.base"}
    assert codegraph.closure("lib.top", root=tmp_path) == [
        "lib", "lib.base", "lib.far", "lib.lazy", "lib.sub", "lib.sub.leaf", "lib.top"]
    assert "lib/alone.py" not in codegraph.closure_files("lib.top", root=tmp_path)
    assert codegraph.cycles(tmp_path) == []
    (pkg / "base.py").write_text("from .top import f\n")
    assert codegraph.cycles(tmp_path) == [["lib.base", "lib.far", "lib.lazy", "lib.sub.leaf", "lib.top"]]


def test_closure_hash_is_stable_and_sees_any_edit(lib_copy):
    h = codegraph.closure_hash("lib.train", root=lib_copy)
    assert h == codegraph.closure_hash("lib.train", root=ROOT) and len(h) == 16
    assert codegraph.closure_hash("lib.train", root=lib_copy, length=None).startswith(h)
    append_comment(lib_copy, "lib/schedule.py")
    assert codegraph.closure_hash("lib.train", root=lib_copy) != h


# ----------------------------------------------------------------------------- fingerprints (issue #21, item 2)
def test_training_code_fingerprint_is_the_closure_of_lib_train():
    files = codegraph.closure_files(*finetune.CODE)
    assert {"lib/train.py", "lib/schedule.py", "lib/methods.py", "lib/models.py", "lib/splits.py"} <= set(files)
    assert not {"lib/plots.py", "lib/metrics.py", "lib/evaluate.py"} & set(files)
    assert not [f for f in files if f.startswith("lib/world/")]
    assert finetune.code_hash() == codegraph.closure_hash("lib.train")


def request_fingerprint(root):
    from lib import config
    from lib.paths import RunId
    run = RunId("objects", "lora", "default", 0)
    return config.fingerprint(finetune.request(run, {"lr": 1e-3}, {}, "base", finetune.code_hash(root)))


@pytest.mark.parametrize("rel, retrains, reevaluates", [
    ("lib/schedule.py", True, True),    # imported by lib/train.py: the runs train again (and evaluate)
    ("lib/metrics.py", False, True),    # imported by lib/evaluate.py: the cached rows are recomputed
    ("lib/plots.py", False, False),     # the figures only
])
def test_an_edit_changes_the_fingerprints_of_the_code_that_imports_it(lib_copy, rel, retrains, reevaluates):
    run0, eval0 = request_fingerprint(lib_copy), evaluate.code_hash(lib_copy)
    append_comment(lib_copy, rel)
    assert (request_fingerprint(lib_copy) != run0) is retrains
    assert (evaluate.code_hash(lib_copy) != eval0) is reevaluates


def test_the_evaluation_cache_key_holds_the_code_hash():
    import inspect
    src = inspect.getsource(evaluate.evaluate_run)
    assert '"code": code_hash()' in src and evaluate.EVAL_VERSION >= 5
    assert "lib/metrics.py" in codegraph.closure_files(*evaluate.EVAL_CODE)


# ----------------------------------------------------------------------------- Make's code prerequisites
def code_vars() -> dict:
    out = {}
    for line in grid.code_variables():
        name, _, files = line.partition(" := ")
        out[name] = files.split()
    return out


def test_grid_mk_holds_each_stages_code():
    v = code_vars()
    assert set(v) == {s.code_var for s in stages.STAGES} == {
        "CODE_PRETRAIN", "CODE_ZERO_SHOT", "CODE_FINETUNE_UNIT", "CODE_FINETUNE", "CODE_EVALUATE_UNIT",
        "CODE_EVALUATE", "CODE_FIGURES"}
    assert [k for k, fs in v.items() if "lib/plots.py" in fs] == ["CODE_FIGURES"]
    assert "lib/schedule.py" in v["CODE_FINETUNE_UNIT"] and "lib/metrics.py" in v["CODE_EVALUATE_UNIT"]
    assert "lib/metrics.py" in v["CODE_ZERO_SHOT"] and "lib/train.py" not in v["CODE_ZERO_SHOT"]
    for fs in v.values():
        assert fs == sorted(fs) and all((ROOT / f).is_file() for f in fs)
    text = grid.make_include("smoke")
    assert all(line in text.splitlines() for line in grid.code_variables())
    # every stage's rule is generated: each names its code; the Makefile holds no stage rule
    for k in v:
        assert f"$({k})" in text, k
    make = (ROOT / "Makefile").read_text()
    assert "CODE_BASE" not in make and "lib/analysis.py" not in make and "lib/schema.py" not in make
    assert re.findall(r"^\$\(B\)/\S+\s*&?:", make, re.M) == ["$(B)/grid.mk:"], "a stage rule is written in the Makefile"


def test_each_stages_products_and_code_are_declared_once():
    """Each product of a stage is named in lib/paths.py (or is the stage's own executed notebook) and
    is the target of exactly one generated rule; no other lib/ module spells a results table's name."""
    text = grid.make_include("smoke")
    for s in stages.STAGES:
        for p in s.products:
            assert p.endswith(".ipynb") or p in vars(paths).values(), p
            if not s.per:
                targets = [line for line in text.splitlines() if not line.startswith(("\t", "#")) and ":=" not in line
                           and f"$(B)/{p}" in re.split(r"\s*&?:\s", line)[0].split()]
                assert len(targets) == 1, (p, targets)
    # the stages' modules (lib/pipeline) read and write the results tables: by their lib.paths names only
    # (a published copy of the same name, e.g. paper_figures/lr_sweep.csv, is the figures stage's table)
    for f in (ROOT / "lib" / "pipeline").rglob("*.py"):
        strings = {n.value for n in ast.walk(ast.parse(f.read_text())) if isinstance(n, ast.Constant)}
        spelled = [t for t in stages.RESULT_TABLES if t in strings or f"results/{t}" in strings]
        assert not spelled, f"{f.relative_to(ROOT)} spells {spelled}: name it through lib.paths"


def notebook_lib_imports(nb: Path) -> set:
    mods = set()
    for cell in json.loads(nb.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        for line in "".join(cell["source"]).splitlines():
            m = re.match(r"\s*from (lib[\w.]*) import ([\w, ]+?)(?: as \w+)?\s*(?:#.*)?$", line)
            if m:
                for n in (x.strip() for x in m.group(2).split(",")):
                    sub = f"{m.group(1)}.{n}"
                    mods.add(sub if codegraph.module_file(sub) else m.group(1))
            m = re.match(r"\s*import (lib[\w.]*)", line)
            if m:
                mods.add(m.group(1))
    return mods


@pytest.mark.parametrize("nb", sorted(stages.NOTEBOOK_STAGE))
def test_each_notebooks_lib_imports_are_in_its_stages_code(nb):
    """What a notebook imports from lib is its stage's code (lib.plots, which only draws, excepted)."""
    got = notebook_lib_imports(ROOT / "notebooks" / f"{nb}.ipynb")
    assert got, nb
    code = set(codegraph.closure(*stages.of_notebook(nb).code))
    assert got - code - set(stages.DISPLAY_ONLY) == set()


@pytest.mark.slow
def test_an_edit_makes_only_the_stages_that_import_it_out_of_date(tmp_path):
    """make -n on a copy of the repository and a fake, complete smoke build: after an edit of
    lib/plots.py only 04_figures runs again; after lib/metrics.py the zero-shot stage, the evaluation
    units and what follows them, but not pretraining nor the fine-tuning units."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(".git", ".venv", "build", "__pycache__",
                                                              "paper_figures", ".pytest_cache"))
    env = {**os.environ, "CLIPMIS_BUILD": str(tmp_path / "b"), "HF_HUB_OFFLINE": "1"}
    mk = ["make", "--no-print-directory", "PROFILE=smoke", f"PY={os.sys.executable}"]
    B = tmp_path / "b" / "smoke"

    def make_grid_mk(when: float | None = None):
        gm = subprocess.run(mk + [f"{B}/grid.mk"], cwd=repo, env=env, capture_output=True, text=True, timeout=120)
        assert gm.returncode == 0 and (B / "grid.mk").exists(), gm.stderr
        if when is not None:
            os.utime(B / "grid.mk", (when, when))

    # every time stamp in the past: a prerequisite newer than the remade grid.mk would have Make
    # remake it again and again
    t = time.time() - 100_000
    for f in repo.rglob("*"):  # the sources older than the fake build
        os.utime(f, (t - 1000, t - 1000))
    make_grid_mk(t)
    text = (B / "grid.mk").read_text()
    # every target of every generated rule, in the order the rules come (the stages' order)
    targets = []
    for line in text.splitlines():
        if line.startswith("$(B)/") and ":=" not in line:
            targets += [x[len("$(B)/"):] for x in re.split(r"\s*&?:\s", line)[0].split()]
    evals = [x for x in targets if x.startswith("runs/") and x.endswith("/evaluation.csv")]
    assert evals and "04_figures.ipynb" in targets and "results/sweep_evaluation.csv" in targets

    def stale(edited: str, when: float) -> set:
        """What `make -n` would run after an edit of ``edited``, on a build made just before it."""
        for i, rel in enumerate(targets):  # each made after what it is made from
            (B / rel).parent.mkdir(parents=True, exist_ok=True)
            (B / rel).write_text("x")
            os.utime(B / rel, (when + i, when + i))
        append_comment(repo, edited)
        os.utime(repo / edited, (when + 500, when + 500))
        make_grid_mk()  # grid.mk depends on every lib/ file: Make remakes it first
        out = subprocess.run(mk + ["-n", f"{B}/04_figures.ipynb"], cwd=repo, env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        ran = set(re.findall(r"papermill notebooks/(\w+)\.ipynb", out.stdout))
        ran |= {f"evaluate {t} {m}" for ts, ms in re.findall(r"-m lib\.pipeline\.evaluate smoke ([\w ]+?) --methods ([\w ]+)",
                                                             out.stdout)
                for t in ts.split() for m in ms.split()}   # one job per tasks_per_job tasks, every method of them
        if re.search(r"-m lib\.pipeline\.notebook_job smoke ", out.stdout):   # a fine-tuning job (its notebooks)
            ran.add("02_finetune")
        ran |= {f"aggregate {x}" for x in re.findall(r"-m lib\.pipeline\.aggregate (\w+)", out.stdout)}
        return ran

    assert stale("lib/plots.py", t + 1000) == {"04_figures"}
    got = stale("lib/metrics.py", t + 3000)
    # (04_figures is not listed: GNU make 4.3's -n does not pass on that a grouped target (a b &: ...)
    # would be remade; a real run does)
    assert {"01_zero_shot", "aggregate finetune", "03_evaluate"} <= got
    assert len([x for x in got if x.startswith("evaluate ")]) == len(evals)
    assert "00_pretrain" not in got and "02_finetune" not in got
