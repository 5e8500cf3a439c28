"""Wall time of each stage of ``make reproduce`` and the fine-tuning overhead, read from its files.

    python bench/bench_stages.py [PROFILE] [--build DIR]

PROFILE defaults to $PROFILE, else ``study3``; DIR to $CLIPMIS_BUILD, else ``build/``. Only reads files:
papermill's ``metadata.papermill`` (start_time, end_time, duration) of the stage notebooks
(``00_pretrain``, ``01_zero_shot``, one ``02_finetune`` per (task, method) unit, ``03_evaluate``,
``04_figures``), ``train_seconds`` of every run (``results/finetune_timing.csv``) and of the
pretraining loop (``models/pretrained.json``), and the evaluation units' ``evaluation.timing.json``.

Fine-tuning overhead = 1 - (sum of the runs' in-loop training seconds) / (sum of the fine-tuning jobs'
wall times, each from its process's start to its exit: ``runs/<task>/02_finetune.job.json``, written by
:mod:`lib.pipeline.notebook_job`): what starting the process and the kernel, imports, loading data and
the model, drawing the notebooks' figures and writing results cost. (A build made before jobs existed:
the unit notebooks' durations, which leave out the papermill process's start, ~1.3 s each.)
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _time(s):
    try:
        return datetime.fromisoformat(s).timestamp() if s else None
    except ValueError:
        return None


def read_nb(path: Path) -> dict | None:
    try:
        pm = json.loads(path.read_text())["metadata"].get("papermill", {})
    except (OSError, ValueError, KeyError):
        return None
    if pm.get("exception"):
        return None
    return {"start": _time(pm.get("start_time")), "end": _time(pm.get("end_time")), "duration": pm.get("duration")}


def read_jsons(pdir: Path, pattern: str) -> list[dict]:
    """Every JSON file under ``pdir`` matching ``pattern`` (sorted), unreadable ones skipped."""
    out = []
    for f in sorted(pdir.glob(pattern)):
        try:
            out.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            pass
    return out


def hms(sec) -> str:
    if sec is None:
        return "-"
    return f"{sec:.1f} s" if sec < 60 else f"{sec:.0f} s ({sec / 60:.1f} min)"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("profile", nargs="?", default=os.environ.get("PROFILE", "study3"))
    ap.add_argument("--build", default=os.environ.get("CLIPMIS_BUILD", str(ROOT / "build")))
    a = ap.parse_args()
    pdir = Path(a.build) / a.profile
    print(f"Stages of `make reproduce PROFILE={a.profile}` read from {pdir}\n")
    if not pdir.exists():
        print("not run yet")
        return 0
    rows, spans = [], []

    def add(name, start, end, busy=None, note=""):
        wall = (end - start) if start and end else None
        rows.append((name, hms(wall), hms(busy), note))
        if start and end:
            spans.append((start, end))

    for name in ("00_pretrain", "01_zero_shot"):
        m = read_nb(pdir / f"{name}.ipynb")
        note = ""
        if name == "00_pretrain":
            try:
                p = json.loads((pdir / "models" / "pretrained.json").read_text())
                note = f"pretraining loop {hms(p.get('train_seconds'))}, {p.get('steps')} steps"
            except (OSError, ValueError):
                pass
        add(name, m and m["start"], m and m["end"], m and m["duration"], note)

    units = [read_nb(p) for p in sorted(pdir.glob("runs/*/02_finetune.ipynb"))]
    units = [u for u in units if u]
    train = 0.0
    tf = pdir / "results" / "finetune_timing.csv"
    n_runs = 0
    if tf.exists():
        with open(tf) as f:
            for r in csv.DictReader(f):
                if r.get("copy_of"):        # a study run reused from its sweep point: trained once
                    continue
                train += float(r["train_seconds"])
                n_runs += 1
    jobs = read_jsons(pdir, "runs/*/02_finetune.job.json")
    if jobs:   # fine-tuning jobs (lib.pipeline.notebook_job): each job's process, start to exit
        busy = sum(j["end"] - j["start"] for j in jobs)
        start, end = min(j["start"] for j in jobs), max(j["end"] for j in jobs)
        what = f"{len(jobs)} jobs ({len(units)} units: a notebook per task)"
    else:      # a build made before jobs: the notebooks' durations (without the papermill process's start)
        busy = sum(u["duration"] or 0 for u in units)
        start, end = min((u["start"] for u in units), default=None), max((u["end"] for u in units), default=None)
        what = f"{len(units)} units"
    overhead = 1 - train / busy if busy else None
    add("02_finetune", start, end, busy,
        f"{what}, {n_runs} runs trained (sweep points included); in-loop training {hms(train)}; "
        f"**overhead {overhead:.1%}** (target <= 10%)" if overhead is not None else "")

    ev = read_jsons(pdir, "runs/*/*/evaluation.timing.json")
    enc = [r for u in ev for r in u["runs"] if not r["cached"]]
    rate = (sum(r["images"] for r in enc) / sum(r["seconds"] for r in enc)) if enc else None
    add("evaluation units", min((u["start"] for u in ev), default=None), max((u["end"] for u in ev), default=None),
        sum(u["end"] - u["start"] for u in ev) if ev else None,
        f"{len(ev)} units; {rate:,.0f} images/s per evaluated run ({len(enc)} runs)" if rate else "")
    for name in ("03_evaluate", "04_figures"):
        m = read_nb(pdir / f"{name}.ipynb")
        add(name, m and m["start"], m and m["end"], m and m["duration"])

    print("| stage | wall | busy (sum over jobs) | notes |\n|---|---:|---:|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if spans:
        print(f"| **whole DAG** (first start to last end) | **{hms(max(e for _, e in spans) - min(s for s, _ in spans))}** | - | - |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
