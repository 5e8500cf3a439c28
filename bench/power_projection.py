"""How many tasks would decide each claim? A projection from a published run, for planning the next study.

Run from the repo root:  python bench/power_projection.py [<published folder>] [--tasks 32,48,64,96,128]
                         [--reps 200] [--seed 0] [--workers 2]
(default folder ``paper_figures/``; prints a Markdown table; study3: ~5 min on 2 cores).

What it does: for each number of tasks ``N``, ``--reps`` times, draw ``N`` of the run's trained tasks
with replacement (a task drawn twice enters twice, under two names: its zero-shot rows
``zero_shot_summary.csv``, its runs ``runs.csv`` and its gain points ``gain_points.csv``), compute the
tables the claims read (``lib.analysis.tables.claim_tables(..., full=False)``, as leave-one-task-out
does) and apply every registered claim's rule (``lib.analysis.claims``: the same tests, Holm families
and truth tables). The share of draws giving each verdict estimates, at ``N`` tasks like these, how
often a study would decide each claim (its power, for a decided verdict).

Read it as a plan, not a result:

* it is a plug-in estimate: the run's tasks stand for the population of tasks and their observed
  effects for the true ones (effects near zero project to "inconclusive" at any ``N``);
* a task drawn twice is an exact copy, so rank tests see ties real tasks would not have (the signed-rank
  and Spearman tests handle ties; their power may be somewhat off, most at small ``N``);
* the published tables round to 6 significant digits (``%.6g``), so a p-value at ``N`` = the run's own
  number of tasks can differ slightly from ``claims.csv`` (the verdicts there are the same);
* its Monte Carlo error: a share ``s`` over ``R`` draws has standard error ``sqrt(s (1 - s) / R)``
  (<= 3.5 points at 200 draws).

Not part of the study's pre-registered analysis and not a verdict: written after study3's results were
seen, to size the next one (docs/study.md says what it found).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from lib.analysis import claims as C  # noqa: E402
from lib.analysis import tables as T  # noqa: E402

VERDICTS = (C.HOLDS, C.FAILS, C.INCONCLUSIVE)
_DATA: dict = {}


def load(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three tables the claims are computed from: zero-shot points, run-level rows, gain points."""
    missing = [n for n in ("zero_shot_summary.csv", "runs.csv", "gain_points.csv") if not (folder / n).is_file()]
    if missing:
        raise SystemExit(f"error: {folder} lacks {', '.join(missing)}: give a published folder (paper_figures/) "
                         f"or a build's figures folder (build/<profile>/figures/)")
    return (pd.read_csv(folder / "zero_shot_summary.csv"), pd.read_csv(folder / "runs.csv"),
            pd.read_csv(folder / "gain_points.csv"))


def resample(zs: pd.DataFrame, runs: pd.DataFrame, pts: pd.DataFrame, picks) -> tuple:
    """The three tables for the tasks ``picks`` (with repeats): the k-th pick's rows under the name
    ``<task>~<k>``, so that every pick is a task of its own."""
    by = {name: dict(tuple(df.groupby(col, sort=False)))
          for name, df, col in (("zs", zs, "task"), ("runs", runs, "train_task"), ("pts", pts, "task"))}
    out = {"zs": [], "runs": [], "pts": []}
    for k, t in enumerate(picks):
        lab = f"{t}~{k}"
        out["zs"].append(by["zs"][t].assign(task=lab))
        out["runs"].append(by["runs"][t].assign(train_task=lab))
        out["pts"].append(by["pts"][t].assign(task=lab))
    return tuple(pd.concat(out[k], ignore_index=True) for k in ("zs", "runs", "pts"))


def verdicts(zs: pd.DataFrame, runs: pd.DataFrame, pts: pd.DataFrame) -> dict[str, str]:
    """Claim id -> verdict, from the tables the claims read."""
    return {v.id: v.verdict for v in C._verdicts(T.claim_tables(zs, runs, pts, full=False))}


def _one(job: tuple[int, int, int]) -> tuple[int, dict[str, str]]:
    n, seed, rep = job
    zs, runs, pts, tasks = _DATA["zs"], _DATA["runs"], _DATA["pts"], _DATA["tasks"]
    rng = np.random.default_rng([seed, n, rep])       # each draw its own stream: any worker, any order
    return n, verdicts(*resample(zs, runs, pts, rng.choice(tasks, size=n, replace=True)))


def project(folder: Path, ns: list[int], reps: int, seed: int, workers: int) -> tuple[pd.DataFrame, int]:
    """One row per (claim, N): the share of draws with each verdict; and the run's number of tasks."""
    zs, runs, pts = load(folder)
    tasks = np.array(sorted(runs["train_task"].unique()))
    _DATA.update(zs=zs, runs=runs, pts=pts, tasks=tasks)
    observed = verdicts(zs, runs, pts)
    counts = {(cid, n): dict.fromkeys(VERDICTS, 0) for cid in observed for n in ns}
    jobs = [(n, seed, r) for n in ns for r in range(reps)]
    t0 = time.perf_counter()
    pool = mp.get_context("fork").Pool(workers) if workers > 1 else None
    try:
        results = pool.imap(_one, jobs, chunksize=4) if pool else map(_one, jobs)
        for i, (n, vs) in enumerate(results, 1):
            for cid, v in vs.items():
                counts[(cid, n)][v if v in VERDICTS else C.INCONCLUSIVE] += 1
            if i % reps == 0:
                print(f"[power] {i}/{len(jobs)} draws ({n} tasks done), {time.perf_counter() - t0:.0f} s",
                      file=sys.stderr, flush=True)
    finally:
        if pool:
            pool.close()
            pool.join()
    rows = [dict(claim=cid, observed=observed[cid], n_tasks=n, reps=reps,
                 **{v: c[v] / reps for v in VERDICTS}) for (cid, n), c in counts.items()]
    return pd.DataFrame(rows), len(tasks)


def markdown(df: pd.DataFrame, n_run: int) -> str:
    ns = sorted(df["n_tasks"].unique())
    head = ("| claim | verdict at the run's " + str(n_run) + " tasks | "
            + " | ".join(f"{n} tasks: holds / does not hold" for n in ns) + " |")
    lines = [head, "|---|---|" + "---|" * len(ns)]
    for cid, g in df.groupby("claim", sort=False):
        g = g.set_index("n_tasks")
        cells = [f"{100 * g.loc[n, C.HOLDS]:.0f}% / {100 * g.loc[n, C.FAILS]:.0f}%" for n in ns]
        lines.append(f"| {cid} | {g['observed'].iloc[0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", nargs="?", default=str(REPO_ROOT / "paper_figures"))
    ap.add_argument("--tasks", default="32,48,64,96,128", help="numbers of tasks, comma-separated")
    ap.add_argument("--reps", type=int, default=200, help="draws per number of tasks")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    try:
        ns = [int(x) for x in a.tasks.split(",")]
    except ValueError:
        ap.error(f"--tasks {a.tasks!r}: give whole numbers separated by commas, e.g. 32,64,128")
    if any(n < C.MIN_TASKS for n in ns) or a.reps < 1 or a.workers < 1:
        ap.error(f"--tasks each >= {C.MIN_TASKS} (the claims' MIN_TASKS), --reps and --workers >= 1")
    df, n_run = project(Path(a.folder), ns, a.reps, a.seed, a.workers)
    print(f"Projected verdicts, {a.reps} draws of N tasks with replacement from the {n_run} tasks of "
          f"{a.folder} per N (seed {a.seed}); the share of draws that decide each claim either way "
          f"(the rest: inconclusive). A plan for the next study, not a result (bench/power_projection.py).\n")
    print(markdown(df, n_run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
