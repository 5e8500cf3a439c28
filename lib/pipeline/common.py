"""What every stage does first: load the profile, seed, set threads, load the base model."""
from __future__ import annotations

import os
import random

import numpy as np

from .. import config, models, paths
from ..io import read_json


def seed_everything(seed: int) -> None:
    import torch
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(profile: str, seed: int = 0, label: str | None = None) -> dict:
    """Load the profile, seed everything, set threads, make torch deterministic.

    Threads: ``CLIPMIS_THREADS`` (the Makefile sets cores / jobs) or every core; one inter-op
    thread, so parallel jobs never oversubscribe the machine.
    """
    import torch
    cfg = config.load_profile(profile)
    seed_everything(seed)
    threads = int(os.environ.get("CLIPMIS_THREADS") or 0) or (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process (a second setup() in one kernel)
        pass
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if label:
        from .. import progress
        progress.set_label(label)
    return cfg


def base_model(cfg: dict):
    """The profile's zero-shot model: the self-pretrained checkpoint or an open_clip tag."""
    m = cfg["model"]
    pretrained = m.get("pretrained", "self")
    if pretrained == "self":
        ck = paths.checkpoint(cfg["name"])
        if not ck.exists() or read_json(ck.with_suffix(".json")) is None:
            raise FileNotFoundError(f"no complete pretrained checkpoint at {ck}: run the pretraining stage "
                                    f"first (make pretrain PROFILE={cfg['name']})")
        pretrained = str(ck)
    bundle = models.create(m["name"], pretrained=pretrained, device=cfg.get("device", "auto"))
    # Frozen: the base model is only encoded with (methods train their own copies), and frozen
    # weights take the same attention code path as the frozen parts of a fine-tuned classifier.
    bundle.model.requires_grad_(False)
    return bundle


def base_fingerprint(cfg: dict):
    """What identifies the base model in a run's request: the checkpoint's recorded state hash."""
    if cfg["model"].get("pretrained", "self") != "self":
        return cfg["model"]
    meta = read_json(paths.checkpoint(cfg["name"]).with_suffix(".json"))
    if not meta or "state_fingerprint" not in meta:
        raise FileNotFoundError(f"{paths.checkpoint(cfg['name']).with_suffix('.json')} is missing or damaged: "
                                f"rerun the pretraining stage (make pretrain PROFILE={cfg['name']})")
    return meta["state_fingerprint"]
