"""The scale-out hooks: LAUNCH in front of every unit of work (a stand-in `srun` records its arguments
and runs the command), and parallel units spread over the visible GPUs."""
import os
import shutil
import stat
import subprocess
import sys

import pytest

from lib import paths
from lib.pipeline import common

SMOKE = paths.ROOT / "build" / "smoke"


@pytest.mark.slow
@pytest.mark.skipif(not (SMOKE / "04_figures.ipynb").exists() and not (SMOKE / "03_evaluate.ipynb").exists(),
                    reason="needs a finished smoke build (make smoke; make test makes it first)")
def test_launch_prefix_runs_every_unit_through_the_launcher(tmp_path):
    build = tmp_path / "build"
    shutil.copytree(SMOKE, build / "smoke", symlinks=True)
    for f in (build / "smoke").rglob("*"):   # newer than every source: only the deleted unit is out of date
        os.utime(f)
    unit = build / "smoke" / "runs" / "objects"
    (unit / "02_finetune.ipynb").unlink()
    (unit / "full" / "evaluation.csv").unlink()
    record = tmp_path / "srun.log"
    srun = tmp_path / "srun"
    srun.write_text(f'#!/usr/bin/env bash\n# stand-in srun: record the arguments, drop the options, run the rest\n'
                    f'echo "$*" >> {record}\n'
                    f'while [[ $# -gt 0 && "$1" == -* ]]; do case "$1" in -c|-n|-N) shift 2;; *) shift;; esac; done\n'
                    f'exec "$@"\n')
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CLIPMIS_BUILD")}
    out = subprocess.run(["make", "--no-print-directory", f"{build}/smoke/runs/objects/full/evaluation.csv",
                          "PROFILE=smoke", f"BUILD={build}", f"PY={sys.executable}",
                          f"LAUNCH={srun} --gres=gpu:1 -c 8"],
                         cwd=paths.ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    calls = record.read_text().splitlines()
    assert len(calls) == 2, calls
    assert calls[0].startswith("--gres=gpu:1 -c 8 ") and "-m papermill notebooks/02_finetune.ipynb" in calls[0]
    assert "-p task objects" in calls[0]
    assert calls[1].startswith("--gres=gpu:1 -c 8 ") and "-m lib.pipeline.evaluate smoke objects full" in calls[1]
    assert (unit / "02_finetune.ipynb").exists() and (unit / "full" / "evaluation.csv").exists()


def test_parallel_units_take_different_gpus(tmp_path, monkeypatch):
    import torch
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    got = []
    for _ in range(3):                      # three "processes": each forgets the lock it holds
        monkeypatch.setattr(common, "_gpu_lock", None)
        got.append(common.pick_gpu("p"))
        held = common._gpu_lock
        assert held is not None
        monkeypatch.setattr(common, "_keep", getattr(common, "_keep", []) + [held], raising=False)
    assert got == [0, 1, 2]
    monkeypatch.setattr(common, "_gpu_lock", None)
    assert common.pick_gpu("p") in (0, 1, 2)  # more units than GPUs: they share
    for fd, _ in common._keep:
        os.close(fd)


def test_one_visible_gpu_or_none_changes_nothing(monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert common.pick_gpu("p") is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert common.pick_gpu("p") is None
