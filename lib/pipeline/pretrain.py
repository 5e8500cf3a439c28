"""Stage 00: the embedded world and the self-pretrained CLIP (``notebooks/00_pretrain.ipynb``)."""
from __future__ import annotations

import pandas as pd

from .. import config, paths, pretrain, world
from ..io import read_json, write_json
from ..world import load_corpus

STAGE = "00_pretrain"


def world_stage(cfg: dict, progress: bool = True):
    """Generate the embedded world (cached); None for profiles with real data."""
    if cfg["data"].get("source", "embedded") != "embedded":
        return None
    world.generate(cfg, progress=progress)
    return world


def corpus_summary(cfg: dict) -> pd.DataFrame:
    c = load_corpus(cfg)
    src = pd.Series(c["sources"]).str.split("/", expand=True)
    src.columns = ["task", "domain", "class"]
    return src.groupby(["task", "domain"]).size().rename("pairs").reset_index()


def pretrain_stage(cfg: dict, progress: bool = True) -> dict:
    """Pretrain the profile's CLIP (or reuse the checkpoint made by the same request)."""
    if cfg["model"].get("pretrained", "self") != "self":
        return {"skipped": f"profile uses pretrained={cfg['model']['pretrained']!r}; nothing to pretrain"}
    params = config.stage_params(STAGE, cfg["name"])
    seed = params.pop("seed")
    params.pop("threads", None)  # how many threads, not how to train: set by common.setup
    hp = pretrain.validate(params)
    out = paths.checkpoint(cfg["name"])
    meta_f = out.with_suffix(".json")
    want = config.fingerprint({"hp": hp, "seed": seed, "world": cfg.get("world"), "model": cfg["model"],
                               "code": config.code_fingerprint(*world.CODE_MODULES, "pretrain", "models")})
    meta = read_json(meta_f)
    if out.exists() and meta and meta.get("request") == want and _checkpoint_ok(out, meta):
        return meta
    world_stage(cfg, progress)
    info = pretrain.pretrain(cfg, hp, seed, out, progress=progress)
    info["request"] = want
    write_json(meta_f, info)
    return info


def _checkpoint_ok(path, meta: dict) -> bool:
    """The checkpoint on disk is the one its metadata describes (size recorded at save time)."""
    size = meta.get("checkpoint_bytes")
    return size is None or path.stat().st_size == size
