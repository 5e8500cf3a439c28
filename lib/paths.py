"""Where things live. Every stage writes under ``build/<profile>/``; nothing else is written."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARAMS = ROOT / "params"
NOTEBOOKS = ROOT / "notebooks"
PAPER_FIGURES = ROOT / "paper_figures"


def build_root() -> Path:
    """Root of all generated files (override with CLIPMIS_BUILD, e.g. for tests)."""
    return Path(os.environ.get("CLIPMIS_BUILD", ROOT / "build"))


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


def run_dir(profile: str, task: str, method: str, variant: str, seed: int) -> Path:
    return runs_dir(profile) / task / f"{method}-{variant}" / f"seed{seed}"


def ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
