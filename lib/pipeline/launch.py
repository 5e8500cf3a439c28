"""The study's work as shell commands, phase by phase, for a scheduler (SLURM arrays, submitit, ...).

    python -m lib.pipeline.launch <profile> --commands [--phase PHASE] [--python PY]
    python -m lib.pipeline.launch <profile> --slurm [--python PY] [--dir DIR] [--sbatch "OPTIONS"] [--dry-run]

Phases, in dependency order (each needs every command of the phases before it to have succeeded):

1. ``pretrain``  -- ``00_pretrain`` (the world and the checkpoint of the embedded profiles);
2. ``zero-shot`` -- ``01_zero_shot`` (``results/zero_shot.csv``, which evaluation reads);
3. ``finetune``  -- one ``02_finetune`` notebook per task (independent of each other);
4. ``evaluate``  -- one ``lib.pipeline.evaluate`` job per task, every method of it (independent of each other);
5. ``figures``   -- ``make figures``: aggregates the units (they are found done), ``03_evaluate``, ``04_figures``.

``--commands`` prints only commands, one per line (every phase in order, or one ``--phase``): line k of
a phase's output is array task k. Each command is self-contained, runs from the repository root, and
writes its notebook to a temporary name first, moved into place only when it ran through.

``--slurm`` writes each phase's lines to ``DIR/<k>_<phase>.txt`` (default ``build/<profile>/slurm/``) and
submits one array job per phase, each with ``--dependency=afterok:<the previous phase's job>``, so a
phase starts only when every task of the previous one succeeded; a failed task stops the chain
(``squeue`` shows the rest as ``DependencyNeverSatisfied``). ``--dry-run`` prints the ``sbatch`` calls.
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

from .. import config, paths
from . import grid
from .grid import notebook_command as _notebook

PHASES = ("pretrain", "zero-shot", "finetune", "evaluate", "figures")


def phases(profile: str, python: str = "python") -> "OrderedDict[str, list[str]]":
    """Every phase's commands (see the module's docstring), the whole configuration checked first."""
    config.check_all(profile)
    cfg = config.load_profile(profile)
    q = shlex.quote
    py = " ".join(q(w) for w in shlex.split(python)) or "python"
    b = paths.profile_dir(profile)
    out: "OrderedDict[str, list[str]]" = OrderedDict((p, []) for p in PHASES)
    out["pretrain"].append(_notebook(py, "00_pretrain", b / "00_pretrain.ipynb", profile, "pretrain"))
    out["zero-shot"].append(_notebook(py, "01_zero_shot", b / "01_zero_shot.ipynb", profile, "zero-shot"))
    out["finetune"], out["evaluate"] = grid.unit_commands(cfg, py)
    out["figures"].append(f"make --no-print-directory figures PROFILE={q(profile)} "
                          f"PY={q(' '.join(shlex.split(python)) or 'python')}")
    return out


def wrap(file: Path, root: Path = paths.ROOT) -> str:
    """The batch script of one array task: line ``$SLURM_ARRAY_TASK_ID`` of ``file``, run by ``srun``."""
    return (f"cd {shlex.quote(str(root))} && "
            f"srun bash -c \"$(sed -n ${{SLURM_ARRAY_TASK_ID}}p {shlex.quote(str(file))})\"")


def submit(profile: str, python: str, folder: Path, sbatch: str = "", dry_run: bool = False,
           out=sys.stdout) -> list[str]:
    """Write each phase's lines to ``folder`` and submit one array job per phase, chained with
    ``--dependency=afterok``. Returns the job ids (``DRY<k>`` in a dry run)."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs: list[str] = []
    for k, (phase, lines) in enumerate(phases(profile, python).items(), 1):
        f = folder / f"{k}_{phase}.txt"
        f.write_text("\n".join(lines) + "\n")
        cmd = ["sbatch", "--parsable", f"--job-name=clipmis-{profile}-{phase}", f"--array=1-{len(lines)}",
               f"--output={folder}/{k}_{phase}-%A_%a.log"]
        if jobs:
            cmd.append(f"--dependency=afterok:{jobs[-1]}")
        cmd += [*shlex.split(sbatch), f"--wrap={wrap(f)}"]
        if dry_run:
            print(shlex.join(cmd), file=out)
            jobs.append(f"DRY{k}")
            continue
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except FileNotFoundError as exc:
            raise FileNotFoundError("sbatch is not on PATH: run this on a SLURM login node, or use "
                                    "--commands and your own scheduler") from exc
        if r.returncode != 0:
            raise RuntimeError(f"sbatch failed for phase {phase} (exit {r.returncode}): {r.stderr.strip()}")
        job = r.stdout.strip().split(";")[0]   # --parsable: "<jobid>[;<cluster>]"
        jobs.append(job)
        print(f"phase {k} {phase}: job {job}, {len(lines)} task(s)"
              + (f", after job {jobs[-2]} succeeds" if len(jobs) > 1 else ""), file=out)
    return jobs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lib.pipeline.launch", description=__doc__.split("\n")[0])
    ap.add_argument("profile")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--commands", action="store_true", help="print the commands, one per line")
    mode.add_argument("--slurm", action="store_true", help="submit one array job per phase, chained (afterok)")
    ap.add_argument("--phase", choices=PHASES, help="with --commands: only this phase's commands")
    ap.add_argument("--python", default="python", help="interpreter named in the commands (default: python)")
    ap.add_argument("--dir", type=Path, help="with --slurm: where the phase files and logs go "
                                             "(default build/<profile>/slurm/)")
    ap.add_argument("--sbatch", default="", help='with --slurm: options for every sbatch call, e.g. "--gres=gpu:1 -c 8"')
    ap.add_argument("--dry-run", action="store_true", help="with --slurm: print the sbatch calls, submit nothing")
    a = ap.parse_args(argv)
    try:
        config.check_profile_name(a.profile)
        if a.commands:
            ph = phases(a.profile, a.python)
            lines = ph[a.phase] if a.phase else [c for cs in ph.values() for c in cs]
            sys.stdout.write("".join(line + "\n" for line in lines))
        else:
            submit(a.profile, a.python, a.dir or paths.profile_dir(a.profile) / "slurm", a.sbatch, a.dry_run)
    except (config.ConfigError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
