"""A fine-tuning job: the ``02_finetune`` notebook of each of its tasks, executed by papermill in ONE kernel.

    python -m lib.pipeline.notebook_job <profile> <task> [<task> ...]

For each task in turn it does what ``make``'s papermill recipe does for one notebook: parameters
``profile`` and ``task``, the cells' output in the log (every line labelled ``[finetune <task>]``;
papermill's ``Executing Cell n`` lines only with ``LOG_CELLS=1``), the executed notebook written to
``<target>.tmp.ipynb`` and moved onto ``build/<profile>/runs/<task>/02_finetune.ipynb`` when it ran
through; when a cell fails it is kept as ``<target>.failed.ipynb``, the job stops there and exits 1
(the tasks before it keep their notebooks, and every run a notebook finished is kept by its marker).

Why one kernel: on 2 cores a kernel's start, its imports (torch, open_clip, peft: ~5 s) and its exit
(~1.8 s with torch loaded) cost ~8 s per notebook, 13% of study3's fine-tuning; a job of
``tasks_per_job`` tasks (:func:`lib.pipeline.grid.task_jobs`) pays them once. Between two notebooks
the kernel's namespace is emptied (``%reset -f``) and its garbage collected, so a notebook starts
from what a fresh kernel would hold except the modules already imported; each notebook's setup cell
seeds and sets the threads again (:func:`lib.pipeline.common.setup`), and a run's result depends only
on its request (its seed, its data, its code). The execution counts of a later notebook continue
those of the one before (one kernel).

At the end the kernel is stopped at once (its results are on disk, each written atomically by the
cell that made it), and ``02_finetune.job.json`` beside the first task's notebook records the job's
tasks and its wall-clock start (this process's, before its imports) and end, which
``bench/bench_stages.py`` sums into the fine-tuning overhead.

Why hand-written: papermill's command line starts one kernel per notebook; its Python API takes a
kernel manager (``km``) and nbclient leaves a kernel it did not start running, so this module only
starts one, passes it to each execution, empties it in between and stops it.
"""
from __future__ import annotations

import time

STARTED = time.time()  # the job's start: before the imports of papermill and nbclient (~1.3 s)

import logging  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402

from .. import config, paths  # noqa: E402
from ..io import write_json  # noqa: E402
from .grid import units  # noqa: E402

NOTEBOOK = "02_finetune"
_CELL_LINE = re.compile(r"^(Executing|Ending) Cell [0-9]*-*$")   # papermill's, per cell
_LABELLED = re.compile(r"^\[[^]]+\] ")
_RESET = "get_ipython().run_line_magic('reset', '-f')\nimport gc\ngc.collect()\n"


class _LogLines(logging.Handler):
    """papermill's log (the cells' output) to stderr, a line at a time, each labelled with the
    notebook's unit unless it is labelled already; empty lines dropped, and papermill's per-cell
    lines unless ``show_cells`` (the Makefile's LOG_FILTER, for a job's several notebooks)."""

    def __init__(self, show_cells: bool):
        super().__init__(logging.INFO)
        self.show_cells, self.label = show_cells, NOTEBOOK

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a message that cannot be formatted is not worth a failed job
            return
        for line in text.splitlines():
            if not line.strip() or (not self.show_cells and _CELL_LINE.match(line)):
                continue
            sys.stderr.write((line if _LABELLED.match(line) else f"[{self.label}] {line}") + "\n")
        sys.stderr.flush()


def job_timing(profile: str, tasks: list[str]):
    """The job's timing file: beside the notebook of its first task."""
    return paths.product(profile, paths.UNIT_JOB_TIMING, task=tasks[0])


def _empty_kernel(km) -> None:
    """Empty the kernel's namespace and collect its garbage (between two notebooks)."""
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        reply = kc.execute_interactive(_RESET, store_history=False, timeout=300, output_hook=lambda msg: None)
        if reply["content"].get("status") != "ok":
            raise RuntimeError(f"could not empty the kernel between two notebooks: {reply['content']}")
    finally:
        kc.stop_channels()


def run(profile: str, tasks: list[str], show_cells: bool = False, notebook: str = f"notebooks/{NOTEBOOK}.ipynb") -> int:
    """Execute ``notebook`` (parameters ``profile`` and ``task``) for every task of ``tasks`` in one
    kernel, each into its unit's notebook; 0, or 1 at the first failure."""
    import papermill  # start-up: papermill and nbclient ~1.3 s, not paid by a refused command
    from jupyter_client.manager import KernelManager  # start-up: with papermill's

    handler = _LogLines(show_cells)
    log = logging.getLogger("papermill")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    km = KernelManager(kernel_name="python3")
    try:
        for task in tasks:
            out = paths.unit_notebook(profile, task)
            tmp, failed = out.with_name(out.name + ".tmp.ipynb"), out.with_name(out.name + ".failed.ipynb")
            out.parent.mkdir(parents=True, exist_ok=True)
            handler.label = f"finetune {task}"
            if km.has_kernel:
                _empty_kernel(km)
            try:
                papermill.execute_notebook(notebook, str(tmp),
                                           parameters={"profile": profile, "task": task}, kernel_name="python3",
                                           progress_bar=False, log_output=True, cwd=".", km=km)
            except Exception as exc:   # a failed cell (PapermillExecutionError), a dead kernel, ...
                if tmp.exists():
                    os.replace(tmp, failed)
                print(f"[finetune {task}] FAILED ({type(exc).__name__}): see {failed}", file=sys.stderr)
                return 1
            os.replace(tmp, out)
    finally:
        if km.has_kernel:
            km.shutdown_kernel(now=True)
        log.removeHandler(handler)
    write_json(job_timing(profile, tasks), {"tasks": tasks, "start": STARTED, "end": time.time()})
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        print("usage: python -m lib.pipeline.notebook_job <profile> <task> [<task> ...]", file=sys.stderr)
        return 2
    profile, *tasks = argv
    try:
        config.check_profile_name(profile)
        for t in tasks:
            config.check_name(t, "task", key="a <task> argument")
        valid = list(units(config.load_profile(profile), validate=False))
        unknown = [t for t in tasks if t not in valid]
        if unknown:
            raise config.ConfigError(f"{', '.join(map(repr, unknown))} not a fine-tuning unit (task) of profile "
                                     f"{profile!r}; valid: {', '.join(valid)}")
        if len(set(tasks)) < len(tasks):
            raise config.ConfigError(f"a task is named twice in {tasks}")
    except config.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    os.chdir(paths.ROOT)   # papermill --cwd . : the notebook runs in the repository root
    return run(profile, tasks, show_cells=os.environ.get("LOG_CELLS") == "1")


if __name__ == "__main__":
    sys.exit(main())
