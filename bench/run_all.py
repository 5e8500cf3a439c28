"""Run every benchmark script and print one combined markdown report (``make bench``).

    .venv/bin/python bench/run_all.py [silhouette] [embed] [finetune] [stages] [tests] [smoke]

Each script runs as its own subprocess (fresh interpreter, so one cannot warm or pollute another)
from the repo root with this interpreter; its stdout (markdown) goes into the report under a
heading, its stderr is dropped unless it fails. ``stages`` reads ``build/$PROFILE`` (default
study3). Names on the command line select scripts; the default is the first five (DEFAULT). Exit
status 1 if any script failed (the report still has the others). Takes a few minutes on 2 cores.

``smoke`` (bench/bench_smoke.py: ``make smoke`` from an empty build folder, wall time and peak memory
against issue #22's targets) is listed but not in the default set, so ``make bench`` does not take
~6 more minutes: run ``bench/run_all.py smoke`` (or name it with the others).
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPTS = {  # name -> (file, heading)
    "silhouette": ("bench_silhouette.py", "Silhouette score: `lib.metrics.silhouette_cosine` vs scikit-learn"),
    "embed": ("bench_embed.py", "Image-embedding throughput: `lib.evaluate.image_embeddings` vs a bare loop"),
    "finetune": ("bench_finetune.py", "Fine-tuning throughput per method"),
    "stages": ("bench_stages.py", "Stage times of `make reproduce`"),
    "tests": ("bench_tests.py", "Fast test tier: wall time of `pytest -m \"not slow\"`"),
    "smoke": ("bench_smoke.py", "`make smoke` from an empty build folder: wall time and peak memory"),
}
DEFAULT = ("silhouette", "embed", "finetune", "stages", "tests")  # `make bench`; smoke: by name only


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def torch_threads() -> str:
    """torch's default intra-op threads (asked in a child, so this process stays light)."""
    r = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads(), torch.__version__)"],
                       capture_output=True, text=True)
    return r.stdout.strip() or "?"


def main(argv: list[str]) -> int:
    names = argv or list(DEFAULT)
    unknown = [n for n in names if n not in SCRIPTS]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; valid: {', '.join(SCRIPTS)}", file=sys.stderr)
        return 2
    profile = os.environ.get("PROFILE", "study3")
    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = " (uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
    threads, _, torch_version = torch_threads().partition(" ")
    env = dict(os.environ, PROFILE=profile, PYTHONUNBUFFERED="1")
    nice = os.nice(0)

    print(f"# Benchmarks, {datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}\n")
    print(f"- machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch_version} with {threads} "
          f"intra-op threads by default (bench_embed and bench_finetune use BENCH_THREADS="
          f"{os.environ.get('BENCH_THREADS', '1')}), Python {platform.python_version()}")
    print(f"- git commit {commit}{dirty}")
    print(f"- load average at start {os.getloadavg()[0]:.1f}" + (f", run at nice {nice}" if nice else "")
          + ": other processes on the machine slow every number")
    print(f"- stages profile: {profile}")
    failed = []
    for name in names:
        script, heading = SCRIPTS[name]
        path = ROOT / "bench" / script
        print(f"\n## {heading}\n")
        if not path.exists():
            print(f"`bench/{script}` does not exist yet.")
            failed.append(name)
            continue
        args = [sys.executable, str(path)] + ([profile] if name == "stages" else [])
        t0 = time.perf_counter()
        r = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        out = r.stdout.strip()
        if out:
            print(out)
        if r.returncode != 0:
            failed.append(name)
            tail = "\n".join(r.stderr.strip().splitlines()[-15:])
            print(f"\n**FAILED** (`bench/{script}`, exit status {r.returncode}); end of its stderr:\n")
            print(f"```\n{tail}\n```")
        print(f"\n_`bench/{script}`: {dt:.0f} s_")
        sys.stdout.flush()
    if failed:
        print(f"\n**{len(failed)} benchmark(s) failed: {', '.join(failed)}**")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
