"""`make smoke` (or `make reproduce`) from an empty build folder: wall time and peak memory, against
issue #22's targets.

    .venv/bin/python bench/bench_smoke.py [--goal smoke|reproduce] [--jobs N] [--python PY] [--build DIR] [--keep] [--log FILE]
    .venv/bin/python bench/bench_smoke.py --dry-run      # print the command, run nothing

``--goal reproduce`` measures the default profile's whole study (``make reproduce``, study3: ~30 min on
2 cores) the same way; ``--keep --build DIR`` keeps its results (e.g. to publish them).

Runs ``make smoke BUILD=<a new temporary folder> PY=<this interpreter> LOCK=none`` in the repository,
so every stage runs from nothing (world, pretraining, zero-shot, fine-tuning, evaluation, figures)
and ``build/`` is neither read nor written; Make's output goes to a log file, not to the report. The
folder is removed afterwards (``--keep`` keeps it). Then it prints a Markdown table:

* wall time of the whole command (``make smoke`` = the setup check + ``make reproduce PROFILE=smoke``
  with its closing summary and verify report);
* peak memory of the **largest single process**: ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``
  after Make exits -- the largest peak resident set of any one descendant that was waited for (a
  papermill kernel, an evaluation job), not of the processes together;
* peak memory of **all processes of the run together**: their proportional set sizes (PSS, from
  ``/proc/<pid>/smaps_rollup``; RSS where that is unreadable, e.g. macOS) summed every
  ``--interval`` seconds over Make's process tree (psutil) -- what the machine must hold at once
  while JOBS units run side by side; a spike shorter than the interval can be missed.

Targets (issue #22): ``make smoke`` <= 3 min, peak memory <= 4 GB (1 GB = 10^9 bytes), checked against
the larger of the two memory figures. Exit status 1 when Make fails (the table then says so and the
log's last lines follow). It takes as long as ``make smoke`` (~6 min on 2 cores), so ``make bench``
does not run it by default: ``bench/run_all.py smoke`` does.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_MIN = {"smoke": 3.0, "reproduce": 30.0}   # issue #22: make smoke <= 3 min; the default profile <= 30 min
TARGET_GB = 4.0    # issue #22: peak memory <= 4 GB
# inherited from a calling Make (`make bench`): the measured run must be a top-level `make smoke`
DROP_ENV = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "CLIPMIS_T0", "CLIPMIS_BUILD")


def command(build: Path, python: str, jobs: int | None, goal: str = "smoke") -> list[str]:
    cmd = ["make", "--no-print-directory", goal, f"BUILD={build}", f"PY={python}", "LOCK=none"]
    return cmd + ([f"JOBS={jobs}"] if jobs else [])


def _pss_bytes(pid: int) -> int | None:
    """The proportional set size of ``pid`` (Linux), None where it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class TreeSampler(threading.Thread):
    """Samples the summed memory of process ``pid`` and its descendants every ``interval`` s."""

    def __init__(self, pid: int, interval: float):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak, self.samples, self.kind = 0, 0, "PSS"
        self.available = True
        self._done = threading.Event()

    def total(self) -> int:
        import psutil
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for p in procs:
            size = _pss_bytes(p.pid)
            if size is None:
                try:
                    size = p.memory_info().rss
                    self.kind = "PSS, RSS where PSS is unreadable"
                except psutil.Error:  # ended between listing and reading
                    size = 0
            total += size
        return total

    def run(self):
        try:
            import psutil  # noqa: F401  (ipykernel's dependency: present wherever the notebooks run)
        except ImportError:
            self.available = False
            return
        while not self._done.is_set():
            self.peak = max(self.peak, self.total())
            self.samples += 1
            self._done.wait(self.interval)

    def stop(self):
        self._done.set()
        self.join()


def maxrss_bytes() -> int:
    """Largest peak resident set of any waited-for descendant (Linux reports KiB, macOS bytes)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**yes**" if ok else "**no**")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default=sys.executable, help="interpreter for PY= (default: this one)")
    ap.add_argument("--goal", choices=tuple(TARGET_MIN), default="smoke", help="the make goal (smoke)")
    ap.add_argument("--jobs", type=int, default=None, help="JOBS= (default: the Makefile's, 2)")
    ap.add_argument("--build", type=Path, default=None,
                    help="build folder to use (absent or empty; default: a new temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the build folder afterwards")
    ap.add_argument("--log", type=Path, default=None, help="Make's output (default: a temporary file, kept)")
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between memory samples (0.5)")
    ap.add_argument("--dry-run", action="store_true", help="print the command and run nothing")
    args = ap.parse_args(argv)

    if args.build is not None and args.build.exists() and any(args.build.iterdir()):
        print(f"error: --build {args.build} is not empty: Make would reuse what is there and the time "
              "would not be that of a run from nothing", file=sys.stderr)
        return 2
    if args.dry_run:
        build = args.build or Path(tempfile.gettempdir()) / "clipmis_smoke_XXXX"
        print(f"would run in {ROOT}, without {', '.join(DROP_ENV)} in its environment:")
        print("    " + shlex.join(command(build.resolve(), args.python, args.jobs, args.goal)))
        print(f"and report wall time and peak memory against the targets <= {TARGET_MIN[args.goal]:g} min, "
              f"<= {TARGET_GB:g} GB")
        return 0
    if shutil.which("make") is None:
        print("error: no `make` on PATH", file=sys.stderr)
        return 2

    made_build = args.build is None
    build = (args.build or Path(tempfile.mkdtemp(prefix="clipmis_smoke_"))).resolve()
    build.mkdir(parents=True, exist_ok=True)
    if args.log is None:
        fd, log_name = tempfile.mkstemp(prefix="bench_smoke_", suffix=".log")
        os.close(fd)
        log = Path(log_name)
    else:
        log = args.log
    cmd = command(build, args.python, args.jobs, args.goal)
    env = {k: v for k, v in os.environ.items() if k not in DROP_ENV}
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        sampler = TreeSampler(proc.pid, args.interval)
        sampler.start()
        rc = proc.wait()
        sampler.stop()
    wall = time.perf_counter() - t0
    largest = maxrss_bytes()
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if made_build and not args.keep:
        shutil.rmtree(build, ignore_errors=True)

    tree = sampler.peak if sampler.available and sampler.samples else None
    peak = max(largest, tree or 0)
    py = Path(args.python)
    py = py.relative_to(ROOT) if py.is_absolute() and py.is_relative_to(ROOT) else py
    shown_cmd = " ".join(command(Path("<tmp>") if made_build else build, str(py), args.jobs, args.goal))
    print(f"`{shown_cmd}` in the repository, from an empty build folder; "
          f"{os.cpu_count()} cores ({platform.machine()}), load average {load0:.1f} at the start and "
          f"{load1:.1f} at the end (other processes slow it). Make's output: `{log}`.\n")
    print("| measure | value | target (issue #22) | met |")
    print("|---|---|---|---|")
    status = "" if rc == 0 else f" (**make failed, exit {rc}**)"
    print(f"| wall time of `make {args.goal}`{status} | {wall / 60:.1f} min ({wall:.0f} s) | <= {TARGET_MIN[args.goal]:g} min "
          f"| {met(wall <= TARGET_MIN[args.goal] * 60 if rc == 0 else None)} |")
    print(f"| peak memory, largest single process (`getrusage(RUSAGE_CHILDREN).ru_maxrss`) | {gb(largest)} "
          f"| <= {TARGET_GB:g} GB | {met(largest <= TARGET_GB * 1e9)} |")
    if tree is None:
        print(f"| peak memory, all processes together | n/a (psutil missing) | <= {TARGET_GB:g} GB | n/a |")
    else:
        print(f"| peak memory, all processes together ({sampler.kind} summed every {args.interval:g} s, "
              f"{sampler.samples} samples) | {gb(tree)} | <= {TARGET_GB:g} GB | {met(tree <= TARGET_GB * 1e9)} |")
    print(f"\nPeak memory against the target: {gb(peak)} (the larger of the two).")
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        print(f"\n`make {args.goal}` failed (exit {rc}); the last lines of its output:\n\n```\n{tail}\n```")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
