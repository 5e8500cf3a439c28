"""Reliability of the DAG: determinism, resume after a hard kill, and the figures' manifest.

``test_determinism_and_resume`` (several minutes; part of ``make test``) works on two copies of
the repository (sources + .git, no venv, no builds; Make uses this repo's venv via ``VENV=``):

* A, the reference: the smoke DAG run uninterrupted. To keep CI time down, A starts from this
  repository's ``build/smoke`` when there is one (``make test`` has just made it with
  ``make smoke``; ``CLIPMIS_RELIABILITY_REFERENCE`` names another one) and Make brings it up to
  date; set ``CLIPMIS_RELIABILITY_FRESH=1`` to build A from nothing as well.
* B: ``make reproduce PROFILE=smoke JOBS=2`` killed with SIGKILL (the whole process tree, kernels
  included) in the middle of a fine-tuning notebook that trains several runs (the A-CLIP unit: one
  of its runs finished, the notebook not), then run again to completion.

It checks that B's rerun did not redo finished work, that no partial or temporary file counts as
done, and that A and B give byte-identical results (``finetune.csv`` without its timing columns).
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lib import config, manifest, paths
from lib.pipeline import grid

ROOT = paths.ROOT
VENV = ROOT / ".venv"
PROFILE = "smoke"
TIMING_COLUMNS = ("train_seconds", "peak_memory_mb")
KILL_AFTER_RUNS = 3
MAKE_TIMEOUT = 900


# ----------------------------------------------------------------------------- helpers
def copy_repo(dest: Path, build: Path | None = None) -> Path:
    """The working tree (mtimes kept, .git included) without venv, builds or temporary files."""
    ignore = shutil.ignore_patterns(".venv", "build", "__pycache__", ".pytest_cache", "*.tmp.ipynb",
                                    "*.failed.ipynb", "paper_figures.tmp", ".ipynb_checkpoints")
    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)
    if build is not None:
        shutil.copytree(build, dest / "build" / PROFILE, symlinks=True)
    return dest


def make_env() -> dict:
    drop = ("CLIPMIS_BUILD", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")  # builds go where Make expects them
    return {k: v for k, v in os.environ.items() if k not in drop}


def start_make(repo: Path, log: Path) -> subprocess.Popen:
    # PY= this interpreter: the copies never build or reinstall an environment
    cmd = ["make", "--no-print-directory", "reproduce", f"PROFILE={PROFILE}", f"PY={sys.executable}", "JOBS=2"]
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, cwd=repo, env=make_env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_make(proc: subprocess.Popen, log: Path, what: str) -> None:
    try:
        rc = proc.wait(timeout=MAKE_TIMEOUT)
    except subprocess.TimeoutExpired:
        kill_tree(proc, log.parent)
        raise
    assert rc == 0, f"{what}: make exited {rc}:\n{log.read_text()[-4000:]}"


def kill_tree(proc: subprocess.Popen, repo: Path) -> None:
    """SIGKILL make's process group, then every process it started (kernels run in their own
    sessions; they are found as descendants, or by a working directory inside ``repo``)."""
    import psutil
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    repo = str(repo.resolve())
    for _ in range(2):
        for p in psutil.process_iter(["pid"]):
            try:
                if p.pid != os.getpid() and (p.cwd() + "/").startswith(repo + "/"):
                    family.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        for p in family:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(family, timeout=30)
        time.sleep(1)
    proc.wait(timeout=30)


def targets(build: Path) -> list[Path]:
    """Every notebook Make produces for the profile (stage notebooks and one per fine-tuning unit)."""
    # the fine-tuning units: the targets of grid.mk's unit rules (lib.pipeline.stages' finetune_unit)
    units = [t.replace("$(B)/", "") for line in (build / "grid.mk").read_text().splitlines() if line.startswith("$(B)/runs/")
             for t in line.split(":")[0].rstrip("& ").split() if t.endswith("/02_finetune.ipynb")]
    assert units, "grid.mk lists no units"
    stage = [build / f"{n}.ipynb" for n in ("00_pretrain", "01_zero_shot", "03_evaluate", "04_figures")]
    return stage + [build / u for u in units]


def markers(build: Path) -> list[Path]:
    return sorted([*build.glob("runs/*/*/*/seed*/row.json"), *build.glob("runs/*/*/sweep/*/seed*/row.json")])


def notebook_problems(nb_path: Path) -> list[str]:
    if not nb_path.exists():
        return [f"{nb_path}: missing"]
    try:
        nb = json.loads(nb_path.read_text())
    except ValueError as exc:
        return [f"{nb_path}: not valid JSON ({exc})"]
    out = []
    pm = nb.get("metadata", {}).get("papermill", {})
    if pm.get("exception"):
        out.append(f"{nb_path}: papermill recorded an exception")
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] != "code":
            continue
        status = c.get("metadata", {}).get("papermill", {}).get("status")
        if status != "completed" or c.get("execution_count") is None:
            out.append(f"{nb_path}: code cell {i} not executed (status {status!r})")
        if any(o.get("output_type") == "error" for o in c.get("outputs", [])):
            out.append(f"{nb_path}: code cell {i} has an error output")
    return out


def temporaries(build: Path) -> list[str]:
    return sorted(p.relative_to(build).as_posix() for p in build.rglob("*")
                  if ".tmp" in p.name or p.name.endswith(".failed.ipynb"))


def csv_rows(path: Path, drop=()) -> list[list[str]]:
    """The CSV's cells as written (strings), without the columns in ``drop``."""
    rows = list(csv.reader(io.StringIO(path.read_text())))
    keep = [i for i, h in enumerate(rows[0]) if h not in drop]
    return [[r[i] for i in keep] for r in rows]


def first_difference(a: list, b: list) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"line {i}: {x} != {y}"
    return f"{len(a)} vs {len(b)} lines"


def mtimes(files) -> dict:
    return {str(f): f.stat().st_mtime_ns for f in files if f.exists()}


# ----------------------------------------------------------------------------- the slow test
@pytest.mark.slow
def test_determinism_and_resume(tmp_path_factory):
    t_start = time.monotonic()
    base = tmp_path_factory.mktemp("reliability")
    timings = {}

    # --- A: the uninterrupted reference
    reuse = Path(os.environ.get("CLIPMIS_RELIABILITY_REFERENCE", ROOT / "build" / PROFILE))
    fresh = os.environ.get("CLIPMIS_RELIABILITY_FRESH") == "1" or not (reuse / "04_figures.ipynb").exists()
    a = copy_repo(base / "A", None if fresh else reuse)
    t = time.monotonic()
    wait_make(start_make(a, base / "A.log"), base / "A.log", "copy A")
    timings["A"] = time.monotonic() - t

    # --- B: killed after a few fine-tuning runs, then resumed
    b = copy_repo(base / "B")
    bb = b / "build" / PROFILE
    t = time.monotonic()
    proc = start_make(b, base / "B.log")
    cfg = config.load_profile(PROFILE)
    unit = bb / "runs" / "objects"                    # every method's sweep and runs in one notebook
    n_unit = len(grid.units(cfg)["objects"])
    try:       # kill after a few runs of the unit: inside a sweep, before its selection is used
        while len(list(unit.glob("*/sweep/*/seed*/row.json"))) < 2:
            assert proc.poll() is None, f"make ended before the kill:\n{(base / 'B.log').read_text()[-4000:]}"
            assert time.monotonic() - t < MAKE_TIMEOUT, "no fine-tuning run finished in time"
            time.sleep(0.05)
    finally:
        kill_tree(proc, b)
    timings["B until kill"] = time.monotonic() - t

    all_runs = [bb / r.rel for r in grid.sweep_runs(cfg) + grid.runs(cfg)]
    done = [m.parent for m in markers(bb)]
    in_unit = [d for d in done if d.is_relative_to(unit)]
    assert 1 <= len(in_unit) < n_unit and not (unit / "02_finetune.ipynb").exists(), \
        "the kill did not land inside the objects notebook (between its first and last run)"
    assert len(done) < len(all_runs) and not (bb / "03_evaluate.ipynb").exists()
    kept = [d / n for d in done for n in ("trainable.safetensors", "meta.json", "row.json")]
    kept += [p for p in targets(bb) if p.exists()]          # finished notebooks (00_pretrain, some units)
    kept += [bb / "models" / "pretrained.safetensors"]
    before = mtimes(kept)
    assert all(str(d / "trainable.safetensors") in before for d in done), "a run with a marker has no state"
    left_at_kill = temporaries(bb)

    t = time.monotonic()
    with open(base / "B.log", "a") as log:
        log.write("\n===== rerun after SIGKILL =====\n")
    wait_make(start_make(b, base / "B.log"), base / "B.log", "copy B, rerun")
    timings["B rerun"] = time.monotonic() - t

    # finished work was not redone
    after = mtimes(kept)
    redone = sorted(k for k in before if after.get(k) != before[k])
    assert not redone, f"the rerun redid finished work: {redone}"
    # every target is a complete notebook and no temporary or failed file is left behind
    problems = [p for nb in targets(bb) for p in notebook_problems(nb)]
    assert not problems, problems
    left = [p for p in temporaries(bb) if "/.tmp-new-" not in f"/{p}"]   # staging dirs of killed writers
    assert not left, f"temporary files left after the rerun: {left} (at the kill: {left_at_kill})"

    # --- A and B agree
    ra, rb = a / "build" / PROFILE / "results", bb / "results"
    for name in ("zero_shot.csv", "evaluation.csv"):
        x, y = (ra / name).read_bytes(), (rb / name).read_bytes()
        assert x == y, f"{name} differs between A and B: " + first_difference(
            x.decode().splitlines(), y.decode().splitlines())
    x, y = csv_rows(ra / "finetune.csv", TIMING_COLUMNS), csv_rows(rb / "finetune.csv", TIMING_COLUMNS)
    assert set(TIMING_COLUMNS) <= set(csv_rows(ra / "finetune.csv")[0]) and not set(TIMING_COLUMNS) & set(x[0])
    assert x == y, "finetune.csv (without timings) differs between A and B: " + first_difference(x, y)
    from safetensors.torch import load_file
    for d in all_runs:      # same trained tensors
        rel = d.relative_to(bb)
        sa, sb = (load_file(str(x / rel / "trainable.safetensors")) for x in (a / "build" / PROFILE, bb))
        assert sa.keys() == sb.keys() and all(sa[k].equal(sb[k]) for k in sa), \
            f"trained state of {rel} differs between A and B"

    # --- the figures' manifest lists every file with its hash
    for build in (a / "build" / PROFILE, bb):
        fig = build / "figures"
        doc = manifest.read_manifest(fig)
        assert manifest.verify_manifest(fig) == [], manifest.verify_manifest(fig)
        assert {e["path"] for e in doc["files"]} == {p.relative_to(fig).as_posix() for p in fig.rglob("*")
                                                      if p.is_file() and p.name != manifest.MANIFEST_NAME}
        assert doc["produced_by"]["notebook"] == "04_figures" and doc["produced_by"]["profile"] == PROFILE
        assert set(doc["produced_by"]["inputs"]) == {"zero_shot.csv", "finetune.csv", "evaluation.csv", "lr_sweep.csv"}

    timings["total"] = time.monotonic() - t_start
    print("reliability timings (s):", {k: round(v) for k, v in timings.items()}, "| A reused build/smoke:",
          not fresh, "| temporaries at the kill:", left_at_kill)


# ----------------------------------------------------------------------------- manifest (fast)
def test_manifest_lists_every_file_with_hashes(tmp_path):
    import hashlib
    fig = tmp_path / "figures"
    (fig / "sub").mkdir(parents=True)
    (fig / "a.png").write_bytes(b"\x89PNG fake")
    (fig / "claims.md").write_text("# claims\n")
    (fig / "sub" / "t.csv").write_text("x\n1\n")
    (fig / "b.csv.tmp").write_text("partial")          # temporary files are not part of the output
    produced = {"notebook": "04_figures", "profile": "unit", "git": {"commit": "abc", "dirty": True},
                "versions": {"torch": "x"}, "inputs": {"zero_shot.csv": "0123"}}
    out = manifest.write_manifest(fig, produced)
    doc = json.loads(out.read_text())
    assert out.name == "MANIFEST.json" and doc["produced_by"] == produced
    assert [e["path"] for e in doc["files"]] == ["a.png", "claims.md", "sub/t.csv"]
    for e in doc["files"]:
        blob = (fig / e["path"]).read_bytes()
        assert e["sha256"] == hashlib.sha256(blob).hexdigest() and e["size"] == len(blob)
    assert manifest.verify_manifest(fig) == []
    (fig / "a.png").write_bytes(b"\x89PNG changed")
    (fig / "new.pdf").write_bytes(b"%PDF")
    (fig / "claims.md").unlink()
    assert manifest.verify_manifest(fig) == ["not listed in the manifest: new.pdf",
                                             "listed but missing: claims.md", "size differs: a.png (12 != 9)"]


def test_figures_notebook_flow_writes_manifest(tmp_path, monkeypatch):
    """The 04_figures save step (claims.md last) finalises the folder with MANIFEST.json; publishing
    copies it, and it still verifies there."""
    import pandas as pd

    from lib import analysis, provenance
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path / "build"))
    res = paths.ensure(paths.results_dir("unit"))
    for n in analysis.RESULT_FILES:
        (res / f"{n}.csv").write_text(f"col\n{n}\n")
    fig = paths.ensure(paths.figures_dir("unit"))
    (fig / "method_bars.png").write_bytes(b"png")
    (fig / "method_bars.pdf").write_bytes(b"pdf")
    from lib.analysis import claims as C
    claims = pd.DataFrame([{**{c: "" for c in C.COLUMNS}, "id": "1", "claim": "c", "verdict": "inconclusive",
                            "near_threshold": True, "loto_flips": 0, "family_size": 0, "n_tasks": 0}])
    prov = provenance.collect({"name": "unit"}, inputs=analysis.input_fingerprints("unit"))
    analysis.write_claims_md(claims, fig / "claims.md", "unit", prov)
    doc = manifest.read_manifest(fig)
    assert [e["path"] for e in doc["files"]] == ["claims.md", "method_bars.pdf", "method_bars.png"]
    assert manifest.verify_manifest(fig) == []
    pb = doc["produced_by"]
    assert pb["notebook"] == "04_figures" and pb["profile"] == "unit"
    assert set(pb["git"]) == {"commit", "dirty"} and "torch" in pb["versions"]
    assert pb["inputs"] == analysis.input_fingerprints("unit") and len(pb["inputs"]) == 3
    from lib.pipeline.publish import copy_figures
    dest = copy_figures("unit", tmp_path / "paper_figures")
    assert manifest.verify_manifest(dest) == [] and (dest / "MANIFEST.json").exists()


# ----------------------------------------------------------------------------- a reader's tree stays clean
def _git_status(repo: Path) -> list[str]:
    r = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo, capture_output=True,
                       text=True, check=True)
    return sorted(r.stdout.splitlines())


@pytest.mark.slow
def test_reproduce_leaves_git_status_clean_and_publish_is_the_only_writer(tmp_path):
    """`make reproduce` writes only build/ (ignored): `git status` of a repository copy is the same
    before and after, even when the figures stage runs again; `make publish` then rewrites
    paper_figures/ and the README block. Reuses the smoke build that `make test` makes first
    (CLIPMIS_RELIABILITY_REFERENCE names another)."""
    reuse = Path(os.environ.get("CLIPMIS_RELIABILITY_REFERENCE", ROOT / "build" / PROFILE))
    if not (reuse / "04_figures.ipynb").exists():
        pytest.skip("needs a finished smoke build (make smoke; make test makes it first)")
    repo = copy_repo(tmp_path / "repo", reuse)
    before = _git_status(repo)
    (repo / "build" / PROFILE / "04_figures.ipynb").unlink()    # the figures stage runs again
    log = tmp_path / "reproduce.log"
    wait_make(start_make(repo, log), log, "make reproduce")
    assert (repo / "build" / PROFILE / "04_figures.ipynb").exists()
    assert _git_status(repo) == before, "make reproduce changed tracked or unignored files"
    out = log.read_text()
    assert "Headline" in out and ("Not compared with" in out or "verify smoke" in out), out[-3000:]
    r = subprocess.run(["make", "--no-print-directory", "publish", f"PROFILE={PROFILE}", f"PY={sys.executable}"],
                       cwd=repo, env=make_env(), capture_output=True, text=True, timeout=MAKE_TIMEOUT, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    changed = set(_git_status(repo)) - set(before)
    assert any("paper_figures/" in c for c in changed) and any(c.endswith(" README.md") for c in changed), changed
