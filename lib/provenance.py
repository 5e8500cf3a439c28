"""What produced a result: params, seed, git commit (dirty or not), package versions, device."""
from __future__ import annotations

import platform
import subprocess
from functools import lru_cache

from . import paths


@lru_cache(maxsize=1)
def git_state() -> dict:
    def run(*args):
        try:
            return subprocess.run(["git", *args], cwd=paths.ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    commit = run("rev-parse", "HEAD") or "unknown"
    dirty = bool(run("status", "--porcelain", "--untracked-files=no", "--", "lib", "params", "notebooks"))
    return {"commit": commit, "dirty": dirty}


@lru_cache(maxsize=1)
def versions() -> dict:
    import importlib.metadata as md
    out = {"python": platform.python_version()}
    for pkg in ("torch", "torchvision", "open_clip_torch", "peft", "numpy", "scikit-learn", "pandas",
                "papermill"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def device_name() -> str:
    import torch
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def collect(profile_cfg: dict | None = None, **extra) -> dict:
    out = {"git": git_state(), "versions": versions(), "device": device_name()}
    if profile_cfg is not None:
        out["profile"] = profile_cfg.get("name")
    out.update(extra)
    return out
