"""Where things live. Every stage writes under ``build/<profile>/``; nothing else is written.

``CLIPMIS_BUILD`` moves the build root (the Makefile exports it, so Make and Python always agree).
A fine-tuning run's identity, folder and completion marker are :class:`RunId`'s alone.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARAMS = ROOT / "params"
NOTEBOOKS = ROOT / "notebooks"
PAPER_FIGURES = ROOT / "paper_figures"


def build_root() -> Path:
    """Root of all generated files (override with CLIPMIS_BUILD, e.g. for tests)."""
    return Path(os.environ.get("CLIPMIS_BUILD") or ROOT / "build")


def profile_dir(profile: str) -> Path:
    return build_root() / profile


def world_dir(profile: str) -> Path:
    return profile_dir(profile) / "world"


def models_dir(profile: str) -> Path:
    return profile_dir(profile) / "models"


def results_dir(profile: str) -> Path:
    return profile_dir(profile) / "results"


def runs_dir(profile: str) -> Path:
    return profile_dir(profile) / "runs"


def cache_dir(profile: str) -> Path:
    return profile_dir(profile) / "cache"


def figures_dir(profile: str) -> Path:
    return profile_dir(profile) / "figures"


# The products of the stages, relative to build/<profile>/, named once (lib.pipeline.stages declares
# which stage makes which; every reader and writer takes the path from here through product()).
# {task} and {method}: a product of one unit.
CHECKPOINT = "models/pretrained.safetensors"
ZERO_SHOT_CSV = "results/zero_shot.csv"
FINETUNE_CSV = "results/finetune.csv"
LR_SWEEP_CSV = "results/lr_sweep.csv"
FINETUNE_TIMING_CSV = "results/finetune_timing.csv"
EVALUATION_CSV = "results/evaluation.csv"
UNIT_NOTEBOOK = "runs/{task}/02_finetune.ipynb"
UNIT_JOB_TIMING = "runs/{task}/02_finetune.job.json"   # a fine-tuning job's tasks, start and end (its first task's)
UNIT_EVAL_CSV = "runs/{task}/{method}/evaluation.csv"
UNIT_SWEEP_EVAL_CSV = "runs/{task}/{method}/sweep_evaluation.csv"
SWEEP_EVALUATION_CSV = "results/sweep_evaluation.csv"
CLAIMS_MD = "figures/claims.md"


def name(rel: str) -> str:
    """A product's file name (``results/zero_shot.csv`` -> ``zero_shot.csv``)."""
    return rel.rsplit("/", 1)[-1]


def product(profile: str, rel: str, **unit: str) -> Path:
    """A stage's product (one of the constants above) in ``profile``'s build folder."""
    return profile_dir(profile) / rel.format(**unit)


def checkpoint(profile: str) -> Path:
    """The self-pretrained CLIP of an embedded profile (its ``.json`` beside it holds the history)."""
    return product(profile, CHECKPOINT)


def unit_notebook(profile: str, task: str) -> Path:
    """The executed fine-tuning notebook of one task's unit (every method, sweep and seeds)."""
    return product(profile, UNIT_NOTEBOOK, task=task)


def unit_eval_csv(profile: str, task: str, method: str) -> Path:
    """The evaluation rows of every run of one (task, method) unit."""
    return product(profile, UNIT_EVAL_CSV, task=task, method=method)


def unit_eval_timing(profile: str, task: str, method: str) -> Path:
    """When one (task, method) unit's evaluation started and ended, and each run's images/s."""
    return unit_eval_csv(profile, task, method).with_suffix(".timing.json")


@dataclass(frozen=True, order=True)
class RunId:
    """One fine-tuning run. Its folder is ``runs/<task>/<method>/<variant>/seed<k>/``; it is complete
    exactly when its marker ``row.json`` exists and parses (written last, atomically).

    ``lr`` is None for a run of the study (trained at the learning rate selected for its (task,
    method)); a learning-rate sweep point has its rate, and its folder is
    ``runs/<task>/<method>/sweep/lr<lr>/seed<k>/`` (``lib.pipeline.finetune`` selects the rate)."""
    task: str
    method: str
    variant: str
    seed: int
    lr: float | None = None

    MARKER = "row.json"
    STATE = "trainable.safetensors"
    META = "meta.json"

    @property
    def rel(self) -> str:
        if self.lr is not None:
            return f"runs/{self.task}/{self.method}/sweep/lr{self.lr:g}/seed{self.seed}"
        return f"runs/{self.task}/{self.method}/{self.variant}/seed{self.seed}"

    @property
    def label(self) -> str:
        v = "" if self.variant == "default" else f"[{self.variant}]"
        at = "" if self.lr is None else f"@lr={self.lr:g}"
        return f"{self.task}/{self.method}{v}{at}/seed{self.seed}"

    @property
    def is_sweep(self) -> bool:
        return self.lr is not None

    def dir(self, profile: str) -> Path:
        return profile_dir(profile) / self.rel

    def marker(self, profile: str) -> Path:
        return self.dir(profile) / self.MARKER


def ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
