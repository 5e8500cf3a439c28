"""End-to-end time of each stage of ``make reproduce``, read from the executed notebooks.

    .venv/bin/python bench/bench_stages.py [PROFILE] [--build DIR]

PROFILE defaults to $PROFILE, else ``mini``; DIR to $CLIPMIS_BUILD, else ``build/``. Only reads
files: papermill's ``metadata.papermill`` (start_time, end_time, duration) of
``build/<profile>/{00_pretrain,01_zero_shot,03_evaluate,04_figures}.ipynb`` and of every run's
``runs/<task>/<method>-<variant>/seed<s>/02_finetune.ipynb``, plus ``train_seconds`` of
``models/pretrained.json``. A stage without its notebook is "not run yet"; one whose papermill
``.tmp.ipynb`` exists is "running" and one with a ``.failed.ipynb`` "failed". Prints markdown.

Notebook durations include kernel start-up (~1-2 s each). Make runs JOBS fine-tuning notebooks at
once, so the fine-tuning phase's wall span (first start to last end) is below the sum of its runs.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# each stage's prerequisites in the Makefile's DAG
DEPS = {"01_zero_shot": ["00_pretrain"], "02_finetune": ["00_pretrain"],
        "03_evaluate": ["01_zero_shot", "02_finetune"], "04_figures": ["03_evaluate"]}


def _time(s: str | None) -> datetime | None:
    if not s:
        return None
    try:
        return datetime.fromisoformat(s)
    except ValueError:
        return None


def read_nb(path: Path) -> dict | None:
    """papermill metadata of an executed notebook (None if unreadable, e.g. mid-write)."""
    try:
        pm = json.loads(path.read_text())["metadata"].get("papermill", {})
    except (OSError, ValueError, KeyError):
        return None
    return {"start": _time(pm.get("start_time")), "end": _time(pm.get("end_time")),
            "duration": pm.get("duration"), "exception": pm.get("exception"),
            "parameters": pm.get("parameters") or {}}


def status(nb: Path) -> tuple[str, dict | None]:
    """('done' | 'failed' | 'running' | 'not run yet', metadata)."""
    tmp, failed = nb.with_name(nb.name + ".tmp.ipynb"), nb.with_name(nb.name + ".failed.ipynb")
    if nb.exists():
        m = read_nb(nb)
        if m is None:
            return "unreadable", None
        return ("failed" if m["exception"] else "done"), m
    if tmp.exists():
        return "running", read_nb(tmp)
    if failed.exists():
        return "failed", read_nb(failed)
    return "not run yet", None


def _hms(sec: float | None) -> str:
    if sec is None:
        return "-"
    if sec < 60:
        return f"{sec:.1f} s"
    if sec < 3600:
        return f"{sec:.0f} s ({sec / 60:.1f} min)"
    return f"{sec:.0f} s ({sec / 3600:.2f} h)"


def _clock(t: datetime | None) -> str:
    return t.astimezone(timezone.utc).strftime("%m-%d %H:%M:%S") if t else "-"


def _state_note(st: str, m: dict | None) -> str:
    if st == "running" and m and m["start"]:
        ago = (datetime.now(timezone.utc) - m["start"]).total_seconds()
        return f"running (started {ago / 60:.0f} min ago)"
    return st


def expected_runs(pdir: Path) -> int | None:
    """Number of runs in the profile's grid (from the generated ``grid.mk``)."""
    g = pdir / "grid.mk"
    if not g.exists():
        return None
    return len(re.findall(r"/02_finetune\.ipynb \\$", g.read_text(), flags=re.M))


def run_key(nb: Path, m: dict | None, runs_root: Path) -> tuple[str, str, str]:
    """(task, method, variant) from papermill parameters, else from the path."""
    p = (m or {}).get("parameters", {})
    rel = nb.relative_to(runs_root).parts            # task, method-variant, seed<s>, file
    mv = rel[1]
    method, _, variant = mv.rpartition("-") if "-" in mv else (mv, "", "default")
    return (str(p.get("task", rel[0])), str(p.get("method", method)), str(p.get("variant", variant)))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("profile", nargs="?", default=os.environ.get("PROFILE", "mini"))
    ap.add_argument("--build", default=os.environ.get("CLIPMIS_BUILD", str(ROOT / "build")))
    a = ap.parse_args()
    pdir = Path(a.build) / a.profile
    print(f"Stages of `make reproduce PROFILE={a.profile}`, from the executed notebooks in "
          f"{pdir if not pdir.is_relative_to(ROOT) else pdir.relative_to(ROOT)}/ (papermill "
          f"durations; kernel start-up included)\n")
    if not pdir.exists():
        print(f"| stage | status |\n|---|---|\n| all | not run yet (no {pdir}) |")
        return 0

    rows, spans, notes = [], [], []
    total = 0.0

    def stage_row(name: str):
        nonlocal total
        st, m = status(pdir / f"{name}.ipynb")
        d = m["duration"] if (m and st == "done") else None
        if d is not None:
            total += d
            spans.append((name, m["start"], m["end"]))
        rows.append(f"| {name} | {_state_note(st, m)} | {1 if st == 'done' else 0} | {_hms(d)} | - | "
                    f"{_clock(m['start'] if m else None)} | {_clock(m['end'] if m and st == 'done' else None)} |")

    stage_row("00_pretrain")
    pj = pdir / "models" / "pretrained.json"
    if pj.exists():
        try:
            p = json.loads(pj.read_text())
            hp = p.get("hp", {})
            rows.append(f"| &nbsp;&nbsp;pretraining loop (`train_seconds`; {p.get('n_train_pairs', '?'):,} pairs, "
                        f"{hp.get('epochs', '?')} epochs, {p.get('steps', '?')} steps) | done | - | "
                        f"{_hms(p.get('train_seconds'))} | - | - | - |")
        except (OSError, ValueError, TypeError):
            rows.append("| &nbsp;&nbsp;pretraining loop | unreadable pretrained.json | - | - | - | - | - |")
    else:
        rows.append("| &nbsp;&nbsp;pretraining loop (`train_seconds`) | not run yet | - | - | - | - | - |")
    stage_row("01_zero_shot")

    # fine-tuning runs
    runs_root = pdir / "runs"
    done: dict[tuple[str, str], list[float]] = {}
    starts, ends, n_running, n_failed, ft_sum = [], [], 0, 0, 0.0
    if runs_root.exists():
        nbs = sorted({p.with_name("02_finetune.ipynb") for p in runs_root.glob("*/*/*/02_finetune.ipynb*")})
        for nb in nbs:
            st, m = status(nb)
            if st != "done":
                n_running += st == "running"
                n_failed += st in ("failed", "unreadable")
                continue
            _, method, variant = run_key(nb, m, runs_root)
            done.setdefault((method, variant), []).append(m["duration"] or 0.0)
            ft_sum += m["duration"] or 0.0
            starts.append(m["start"])
            ends.append(m["end"])
    n_done = sum(len(v) for v in done.values())
    n_exp = expected_runs(pdir)
    if n_done or n_running or n_failed:
        state = "done" if (n_exp is None or n_done >= n_exp) and not n_running else "partial"
        extra = ", ".join(x for x in [f"{n_running} running" if n_running else "",
                                      f"{n_failed} failed" if n_failed else ""] if x)
        state += f" ({extra})" if extra else ""
    else:
        state = "not run yet"
    count = f"{n_done}" + (f" / {n_exp}" if n_exp is not None else "")
    t0 = min((s for s in starts if s), default=None)
    t1 = max((e for e in ends if e), default=None)
    rows.append(f"| 02_finetune, all runs (sum) | {state} | {count} | {_hms(ft_sum) if n_done else '-'} | "
                f"{_hms(ft_sum / n_done) if n_done else '-'} | {_clock(t0)} | {_clock(t1)} |")
    if t0 and t1:
        wall = (t1 - t0).total_seconds()
        rows.append(f"| &nbsp;&nbsp;02_finetune wall span (first start to last end) | - | - | {_hms(wall)} | "
                    f"- | - | - |")
        spans.append(("02_finetune", t0, t1))
    total += ft_sum
    for (method, variant), ds in sorted(done.items()):
        label = method if variant == "default" else f"{method} ({variant})"
        rows.append(f"| &nbsp;&nbsp;{label} | done | {len(ds)} | {_hms(sum(ds))} | "
                    f"{_hms(statistics.mean(ds))} | - | - |")

    stage_row("03_evaluate")
    stage_row("04_figures")

    print("| stage | status | runs | time | mean per run | start (UTC) | end (UTC) |")
    print("|---|---|---:|---:|---:|---|---|")
    for r in rows:
        print(r)
    if spans:
        first = min(s for _, s, _ in spans if s)
        last = max(e for _, _, e in spans if e)
        print(f"| **total** (sum of notebook times) | - | - | **{_hms(total)}** | - | {_clock(first)} | "
              f"{_clock(last)} |")
        print(f"| **wall clock** (first start to last end) | - | - | **{_hms((last - first).total_seconds())}** "
              f"| - | - | - |")
    # a stage that started before a stage it depends on (Make's DAG) ended comes from another
    # make invocation (01_zero_shot and 02_finetune both only need 00_pretrain: they may overlap)
    by = {n: (s, e) for n, s, e in spans}
    for stage, deps in DEPS.items():
        for dep in deps:
            if stage in by and dep in by and by[stage][0] and by[dep][1] and by[stage][0] < by[dep][1]:
                notes.append(f"{stage} started before {dep} ended: these notebooks come from "
                             f"different `make` invocations, so the wall clock is not one run's")
    for n in notes:
        print(f"\nNote: {n}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
