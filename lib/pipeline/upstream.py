"""Build a stage's missing inputs, for a notebook opened on its own (Colab, Binder).

A notebook opened from a badge starts on a machine where no earlier stage has run. Right after its
``parameters`` cell it calls ``ensure_upstream("<notebook or stage>", profile)``: when an input of
the stage is missing under ``build/<profile>/`` this runs the upstream stages through Make, the same
DAG ``make reproduce`` runs (``make <targets> PROFILE=<profile> PY=<this python>``), printing Make's
lines as they come; when every input is there it does nothing. Under Make itself it never runs Make
again (Make owns the DAG there).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .. import config, paths
from . import stages as S
from .grid import evaluation_units, runs

# stage -> the Make entry point that builds it (a unit stage: the one that gathers its units)
STAGES = {s.name: s.make_entry for s in S.STAGES}
NOTEBOOK_STAGE = S.NOTEBOOK_STAGE


def stage_name(stage: str) -> str:
    """``"02_finetune"``, ``"figures"`` or ``"zero-shot"`` -> the stage's name (``"finetune_unit"``,
    ``"figures"``, ``"zero_shot"``)."""
    key = str(stage).strip().replace("-", "_")
    key = NOTEBOOK_STAGE.get(key, key)
    if key not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; valid: {', '.join(STAGES)} "
                         f"or a notebook name ({', '.join(NOTEBOOK_STAGE)})")
    return key


def stage_outputs(stage: str, profile: str) -> list[Path]:
    """The files whose presence shows that ``stage`` ran for ``profile`` (its declared ``done``
    product; a unit stage: every unit's). Empty: the stage leaves nothing later stages read, i.e.
    pretraining on a profile that uses a published model."""
    s = S.stage(stage_name(stage))
    cfg = config.load_profile(profile)
    if s.name == "pretrain" and cfg.get("model", {}).get("pretrained", "self") != "self":
        return []
    if not s.per:
        return [paths.product(profile, s.done_product)]
    units = evaluation_units(runs(cfg, validate=False))
    keys = dict.fromkeys(k[:len(s.per)] for k in units)
    return [paths.product(profile, s.done_product, **dict(zip(s.per, k))) for k in keys]


def stage_output(stage: str, profile: str) -> Path | None:
    """The first of :func:`stage_outputs` (None when there is none)."""
    out = stage_outputs(stage, profile)
    return out[0] if out else None


def missing_inputs(stage: str, profile: str) -> dict[str, Path]:
    """``{upstream stage: its (first) missing output}`` for the stages ``stage`` needs on ``profile``
    (:attr:`lib.pipeline.stages.Stage.needs`)."""
    config.load_profile(profile)  # unknown profile: a clear error before anything else
    out = {}
    for up in S.stage(stage_name(stage)).needs:
        miss = [f for f in stage_outputs(up, profile) if not f.exists()]
        if miss:
            out[up] = miss[0]
    return out


def make_command(targets: list[str], profile: str) -> list[str]:
    return ["make", *targets, f"PROFILE={profile}", f"PY={sys.executable}"]


def ensure_upstream(stage: str, profile: str, *, root: Path | None = None, out=None) -> list[str]:
    """Run the upstream stages of ``stage`` on ``profile`` when their outputs are missing.

    Returns the Make targets it ran (empty: every input was there, or this runs under Make).
    Raises with the command and what to do when Make fails or leaves an input missing."""
    out = out or sys.stdout
    missing = missing_inputs(stage, profile)
    if not missing:
        return []
    if "MAKELEVEL" in os.environ:  # Make runs this notebook: the DAG is Make's job, not ours
        return []
    root = Path(root or paths.ROOT)
    if not (root / "Makefile").exists():
        raise FileNotFoundError(
            f"{stage_name(stage)} needs {', '.join(str(p) for p in missing.values())}, and building it "
            f"needs the project's Makefile, which is not at {root}: work from a clone of the repository "
            f"(`pip install -e .` there)")
    if shutil.which("make") is None:
        raise FileNotFoundError("building the missing inputs needs GNU make: install it "
                                "(apt-get install make, or conda install make)")
    targets = list(dict.fromkeys(STAGES[s] for s in missing))
    cmd = make_command(targets, profile)
    rel = {s: os.path.relpath(p, root) for s, p in missing.items()}
    print(f"Inputs of {stage_name(stage)} missing on profile {profile!r}: "
          + "; ".join(f"{p} (from {s})" for s, p in rel.items()), file=out, flush=True)
    print(f"Running the upstream stages: {' '.join(cmd)}   (in {root}; minutes on the smoke profile, "
          f"longer on others: docs/reproducibility.md)", file=out, flush=True)
    started = time.time()
    tail: list[str] = []
    with subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as proc:
        for line in proc.stdout:
            print(line, end="", file=out, flush=True)
            tail = (tail + [line.rstrip()])[-20:]
        rc = proc.wait()
    if rc != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {rc}) after {time.time() - started:.0f} s; "
                           f"its last lines:\n" + "\n".join(tail) +
                           "\nFix what they name, then run this cell again (finished stages are kept).")
    still = missing_inputs(stage, profile)
    if still:
        raise RuntimeError(
            f"`{' '.join(cmd)}` succeeded but {', '.join(str(p) for p in still.values())} is still missing: "
            f"Make believes those stages are current (their executed notebooks exist in "
            f"{paths.profile_dir(profile)}). Remove that folder (`make clean-profile PROFILE={profile}`) "
            f"and run this cell again.")
    print(f"Upstream stages done in {time.time() - started:.0f} s.", file=out, flush=True)
    return targets
