"""The declared pipeline: every stage of the study, once.

A stage names what runs it (a notebook executed by papermill, or a module), the stages whose products
it reads, its products (paths under ``build/<profile>/``; ``{task}`` and ``{method}`` for a stage
that runs once per unit), its parameter file (``params/<params>.yaml``) and its code (entry modules:
the stage's code is their import closure inside ``lib/``, :mod:`lib.pipeline.codegraph`). Everything
else reads this table:

* ``python -m lib.pipeline.grid <profile> --make`` writes every Make rule from it (grid.mk: each
  stage's code ``CODE_<NAME>``, its target ``STAGE_<name>``, its prerequisites, its recipe); the
  Makefile keeps the entry points, the environment and the lock;
* :mod:`lib.pipeline.upstream` builds a notebook's missing inputs from ``needs`` and ``done``;
* :mod:`lib.pipeline.verify` and :mod:`lib.paths` name the result tables from ``products``;
* :data:`lib.config.STAGES` (the stage parameter files) is :data:`PARAM_STAGES`.

Data only: nothing but :mod:`lib.paths` (which names the products) is imported here.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import paths as P


@dataclass(frozen=True)
class Stage:
    name: str
    """Identifier; ``make <name with '-' for '_'>`` is its entry point where it has one."""
    notebook: str | None
    """``notebooks/<notebook>.ipynb`` runs it (papermill), or None: ``module`` runs it."""
    module: str | None
    """``python -m <module> <args>`` runs it (no notebook)."""
    needs: tuple[str, ...]
    """The stages whose products it reads (Make prerequisites; the upstream checks)."""
    products: tuple[str, ...]
    """What it writes, under build/<profile>/; the Make targets (one recipe makes them all)."""
    code: tuple[str, ...]
    """Entry modules: the stage's code is their import closure inside lib/."""
    params: str | None = None
    """``params/<params>.yaml`` (and the profile's overlay) feeds it."""
    per: tuple[str, ...] = ()
    """``("task",)``: one unit per task of the grid; ``("task", "method")``: per (task, method)."""
    job: tuple[str, ...] | None = None
    """The unit keys one job covers (one Make recipe, one process, all its units' products): a prefix
    of ``per``; default ``per`` (one job per unit)."""
    grouped: bool = False
    """A per-task stage whose jobs take ``tasks_per_job`` tasks each (its parameter file; default 1), dealt
    by :func:`lib.pipeline.grid.task_jobs`: one process for all their units."""
    done: str | None = None
    """The product whose presence shows that the stage ran (default: its first product)."""
    label: str | None = None
    """The label of its log lines (default: its name)."""
    after: tuple[str, ...] = ()
    """Stages that must finish before it starts though it reads nothing of theirs: Make's order-only
    prerequisites (``| ...``), scheduling only: their products changing does not rerun it."""
    entry: str | None = None
    """``make <entry>`` builds it (under the lock); default: the name with '-' for '_'. A unit stage's is
    the entry point of the stage that gathers its units."""

    @property
    def target(self) -> str:
        """The product Make builds the stage by (and later stages name as a prerequisite)."""
        return self.products[0]

    @property
    def done_product(self) -> str:
        return self.done or self.products[0]

    @property
    def make_entry(self) -> str:
        return self.entry or self.name.replace("_", "-")

    @property
    def job_keys(self) -> tuple[str, ...]:
        return self.per if self.job is None else self.job

    @property
    def code_var(self) -> str:
        return f"CODE_{self.name.upper()}"


# Every stage in the order it runs. Evaluation writes one product pair per (task, method) but runs one
# job per task (all its methods in one process: the base model, the data checks and the zero-shot
# accuracies of the sweep points are loaded once; on 2 cores a process's start-up, ~4 s of imports,
# was 46% of the 160 per-(task, method) processes of study v3's evaluation). Fine-tuning and evaluation
# are grouped: a job runs ``tasks_per_job`` tasks (params/<profile>/02_finetune.yaml, 03_evaluate.yaml;
# default 1) in one process: a fine-tuning job executes each task's notebook in one Jupyter kernel
# (lib.pipeline.notebook_job), an evaluation job evaluates its tasks one after the other.
# Fine-tuning starts after zero-shot (``after``: order only, it reads nothing of it): zero-shot's 2 fixed
# threads beside a 1-thread fine-tuning job are 3 threads on study3's 2 cores, and its spinning threads
# then ran 5-10x slower (study3: 84 s instead of ~9 s alone; bench/bench_stages.py), a core lost for it.
# lib.plots and lib.notebook are imported by the notebooks of the stages before figures only to draw and show (DISPLAY_ONLY): no result depends on them, so they are
# the figures stage's code and no other's (an edit to lib/plots.py re-runs the figures only).
STAGES: tuple[Stage, ...] = (
    Stage("pretrain", "00_pretrain", None, (), ("00_pretrain.ipynb",),
          ("lib.pipeline.pretrain", "lib.pipeline.common", "lib.data", "lib.world"),
          params="00_pretrain", done=P.CHECKPOINT),
    Stage("zero_shot", "01_zero_shot", None, ("pretrain",), (P.ZERO_SHOT_CSV, "01_zero_shot.ipynb"),
          ("lib.pipeline.zero_shot", "lib.pipeline.common", "lib.pipeline.upstream"),
          params="01_zero_shot", label="zero-shot"),
    Stage("finetune_unit", "02_finetune", None, ("pretrain",), (P.UNIT_NOTEBOOK,),
          ("lib.pipeline.finetune", "lib.pipeline.common", "lib.pipeline.upstream", "lib.pipeline.grid",
           "lib.pipeline.notebook_job"),
          params="02_finetune", per=("task",), grouped=True, label="finetune {task}", entry="finetune",
          after=("zero_shot",)),
    Stage("finetune", None, "lib.pipeline.aggregate finetune", ("finetune_unit", "pretrain"),
          (P.FINETUNE_CSV, P.LR_SWEEP_CSV, P.FINETUNE_TIMING_CSV),
          ("lib.pipeline.aggregate", "lib.pipeline.common", "lib.pipeline.upstream")),
    Stage("evaluate_unit", None, "lib.pipeline.evaluate", ("finetune_unit", "zero_shot"),
          (P.UNIT_EVAL_CSV, P.UNIT_SWEEP_EVAL_CSV), ("lib.pipeline.evaluate", "lib.pipeline.grid"),
          params="03_evaluate", per=("task", "method"), job=("task",), grouped=True, entry="evaluate"),
    Stage("evaluate", "03_evaluate", None, ("evaluate_unit", "finetune", "zero_shot"), (P.EVALUATION_CSV, P.SWEEP_EVALUATION_CSV, "03_evaluate.ipynb"),
          ("lib.pipeline.aggregate", "lib.pipeline.common", "lib.pipeline.upstream")),
    Stage("figures", "04_figures", None, ("zero_shot", "finetune", "evaluate"), ("04_figures.ipynb",),
          ("lib.pipeline.publish", "lib.analysis", "lib.analysis.tables", "lib.paths", "lib.pipeline.upstream",
           "lib.plots"),
          params="04_figures", done=P.CLAIMS_MD),
)
BY_NAME = {s.name: s for s in STAGES}
DISPLAY_ONLY = ("lib.plots", "lib.notebook")  # imported by notebooks 00-03 only to draw (see STAGES)
# the stages' parameter files, in order (lib.config.STAGES: the files params/<stage>.yaml may hold)
PARAM_STAGES = tuple(s.params for s in STAGES if s.params)
# the result tables of the study (build/<profile>/results/<file>): what the stages produce in results/
RESULT_TABLES = tuple(p.split("/", 1)[1] for s in STAGES for p in s.products if p.startswith("results/"))
# the notebook a stage executes is itself a product: <build>/<notebook>.ipynb (per unit: in the unit's folder)
# notebook -> the stage it runs
NOTEBOOK_STAGE = {s.notebook: s.name for s in STAGES if s.notebook}


def stage(name: str) -> Stage:
    return BY_NAME[name]


def of_notebook(notebook: str) -> Stage:
    """The stage a notebook runs (02_finetune: the per-task unit)."""
    return next(s for s in STAGES if s.notebook == notebook)
