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
    # a fine-tuning job (its tasks' notebooks in one kernel), then an evaluation job
    assert calls[0].startswith("--gres=gpu:1 -c 8 ") and calls[0].endswith("-m lib.pipeline.notebook_job smoke objects")
    assert calls[1].startswith("--gres=gpu:1 -c 8 ") and "-m lib.pipeline.evaluate smoke objects --methods full" in calls[1]
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


# ----------------------------------------------------------------------------- threads, GPU locks per host
def test_threads_come_from_the_unit_process_not_the_make_host(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    assert common.available_cpus({}) == 6                                   # the process's affinity
    assert common.available_cpus({"SLURM_CPUS_PER_TASK": "8"}) == 8         # srun -c 8
    assert common.unit_threads({"SLURM_CPUS_PER_TASK": "8", "CLIPMIS_UNITS_PER_HOST": "1"}) == 8
    assert common.unit_threads({"CLIPMIS_UNITS_PER_HOST": "2"}) == 3        # make -j2 on this host
    assert common.unit_threads({"CLIPMIS_UNITS_PER_HOST": "16"}) == 1       # never 0
    assert common.unit_threads({"CLIPMIS_THREADS": "5", "SLURM_CPUS_PER_TASK": "8"}) == 5   # explicit wins
    assert common.unit_threads({"SLURM_CPUS_PER_TASK": "junk", "CLIPMIS_UNITS_PER_HOST": "x"}) == 6


def test_gpu_lock_files_name_the_host(tmp_path, monkeypatch):
    import socket

    import torch
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(socket, "gethostname", lambda: "node17.cluster")
    monkeypatch.setattr(common, "_gpu_lock", None)
    assert common.pick_gpu("p") == 0
    fd, _ = common._gpu_lock
    try:
        assert (tmp_path / ".p.node17.gpu0.lock").exists()
        monkeypatch.setattr(socket, "gethostname", lambda: "node18")   # another node: its GPU 0 is free
        monkeypatch.setattr(common, "_gpu_lock", None)
        assert common.pick_gpu("p") == 0
        os.close(common._gpu_lock[0])
    finally:
        os.close(fd)
        monkeypatch.setattr(common, "_gpu_lock", None)


# ----------------------------------------------------------------------------- make commands -> SLURM arrays
def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CLIPMIS_BUILD")}
    env.update(extra)
    return env


@pytest.mark.slow  # subprocess: make commands of every profile (fast tier: issue #21 item 9)
def test_make_commands_prints_only_commands_phase_by_phase():
    from lib.pipeline import launch
    r = subprocess.run(["make", "commands", "PROFILE=smoke", f"PY={sys.executable}"], cwd=paths.ROOT,
                       env=_clean_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    phases = launch.phases("smoke", sys.executable)
    assert lines == [c for cs in phases.values() for c in cs], "make commands printed more than the commands"
    assert "make" not in lines[0] and "papermill notebooks/00_pretrain.ipynb" in lines[0]
    assert "notebooks/01_zero_shot.ipynb" in lines[1]           # the zero-shot stage evaluation needs
    assert lines[-1].startswith("make --no-print-directory figures PROFILE=smoke")
    one = subprocess.run(["make", "commands", "PROFILE=smoke", f"PY={sys.executable}", "PHASE=finetune"],
                         cwd=paths.ROOT, env=_clean_env(), capture_output=True, text=True, timeout=600)
    assert one.returncode == 0 and one.stdout.splitlines() == phases["finetune"], one.stderr[-2000:]


def _stand_in(path, body):
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.mark.slow  # subprocess: runs make and the chain (fast tier: issue #21 item 9)
def test_slurm_chain_runs_every_line_once_in_phase_order(tmp_path, monkeypatch):
    """One array job per phase, each after the previous one (afterok); a stand-in sbatch records its
    arguments and runs the array's tasks at once (SLURM_ARRAY_TASK_ID=1..N), each line through a
    stand-in srun; the commands' python and make are recorders, so every line is run exactly as printed."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    _stand_in(bin_dir / "sbatch", f'''
echo "sbatch $*" >> {log}
n=0; wrap=""
for a in "$@"; do
  case "$a" in --array=1-*) n="${{a#--array=1-}}";; --wrap=*) wrap="${{a#--wrap=}}";; esac
done
id=$(( $(grep -c '^sbatch ' {log}) + 100 ))
for i in $(seq 1 "$n"); do SLURM_ARRAY_TASK_ID=$i bash -c "$wrap" || exit 1; done
echo "$id"
''')
    _stand_in(bin_dir / "srun", f'echo "srun $*" >> {log}\nexec "$@"\n')
    _stand_in(bin_dir / "make", f'echo "make $*" >> {log}\n')
    _stand_in(bin_dir / "fakepy", f'echo "python $*" >> {log}\n'
                                  'for a in "$@"; do case "$a" in *.tmp.ipynb) touch "$a";; esac; done\n')
    build = tmp_path / "build"
    env = _clean_env(PATH=f"{bin_dir}:{os.environ['PATH']}", CLIPMIS_BUILD=str(build))
    r = subprocess.run([sys.executable, "-m", "lib.pipeline.launch", "smoke", "--slurm", "--python", "fakepy",
                        "--dir", str(tmp_path / "slurm"), "--sbatch", "--gres=gpu:1 -c 8"],
                       cwd=paths.ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    calls = log.read_text().splitlines()
    sb = [c for c in calls if c.startswith("sbatch ")]
    assert len(sb) == 5
    assert "--dependency" not in sb[0] and "--array=1-1" in sb[0] and "--gres=gpu:1 -c 8" in sb[0]
    for k in range(1, 5):
        assert f"--dependency=afterok:{100 + k}" in sb[k], sb[k]
    assert "--array=1-2 " in sb[2] and "--array=1-2 " in sb[3]   # 2 fine-tuning units, 2 evaluation jobs (one per task)
    ran = [c for c in calls if c.startswith(("python ", "make "))]
    assert len([c for c in calls if c.startswith("srun ")]) == len(ran) == 1 + 1 + 2 + 2 + 1
    order = [c.split(" -m ")[1].split()[0:2] if " -m " in c else ["make", "figures"] for c in ran]
    assert order[0] == ["papermill", "notebooks/00_pretrain.ipynb"] and order[1] == ["papermill", "notebooks/01_zero_shot.ipynb"]
    assert [o[1] for o in order[2:4]] == ["notebooks/02_finetune.ipynb"] * 2
    assert all(o[0] == "lib.pipeline.evaluate" for o in order[4:6]) and order[6] == ["make", "figures"]
    assert (build / "smoke" / "00_pretrain.ipynb").exists() and (build / "smoke" / "runs" / "objects" / "02_finetune.ipynb").exists()
    assert not list(build.rglob("*.tmp.ipynb"))
    from lib.pipeline import (
        launch,  # the phase files hold exactly `make commands PHASE=...`'s lines
    )
    monkeypatch.setenv("CLIPMIS_BUILD", str(build))   # as the chain ran (under make, the test inherits another)
    phases = launch.phases("smoke", "fakepy")
    files = sorted((tmp_path / "slurm").glob("*.txt"))
    assert [f.name for f in files] == [f"{k}_{p}.txt" for k, p in enumerate(launch.PHASES, 1)]
    assert [f.read_text().splitlines() for f in files] == list(phases.values())


def test_slurm_dry_run_submits_nothing(tmp_path):
    import io as _io

    from lib.pipeline import launch
    out = _io.StringIO()
    jobs = launch.submit("smoke", "python", tmp_path, dry_run=True, out=out)
    assert jobs == [f"DRY{k}" for k in range(1, 6)]
    printed = out.getvalue().splitlines()
    assert len(printed) == 5 and all(p.startswith("sbatch --parsable") for p in printed)
    assert "--dependency=afterok:DRY1" in printed[1]
