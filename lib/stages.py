"""One function per notebook stage, so notebooks stay a few lines long.

Each stage validates its inputs first (cheap), then does the work, writes its results atomically
and returns what the notebook shows.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from . import config, models, paths, provenance
from .config import ConfigError
from .data import source_for


def setup(profile: str, seed: int = 0) -> dict:
    """Load the profile, seed everything, make torch deterministic."""
    import random

    import torch
    cfg = config.load_profile(profile)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if os.environ.get("CLIPMIS_THREADS"):
        torch.set_num_threads(int(os.environ["CLIPMIS_THREADS"]))
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return cfg


def checkpoint_path(cfg: dict) -> Path:
    return paths.models_dir(cfg["name"]) / "pretrained.safetensors"


def base_model(cfg: dict):
    """The profile's zero-shot model: the self-pretrained checkpoint or an open_clip tag."""
    m = cfg["model"]
    pretrained = m.get("pretrained", "self")
    if pretrained == "self":
        ck = checkpoint_path(cfg)
        if not ck.exists():
            raise FileNotFoundError(f"no pretrained checkpoint at {ck}: run the pretraining stage first "
                                    f"(make pretrain PROFILE={cfg['name']})")
        pretrained = str(ck)
    bundle = models.create(m["name"], pretrained=pretrained, device=cfg.get("device", "auto"))
    # Frozen: the base model is only encoded with (methods train their own copies), and frozen
    # weights take the same attention code path as the frozen parts of a fine-tuned classifier.
    bundle.model.requires_grad_(False)
    return bundle


# ----------------------------------------------------------------------------- 00 pretrain
def world_stage(cfg: dict, progress: bool = True):
    """Generate the embedded world (cached) and return a sample grid + corpus summary."""
    from . import world
    if cfg["data"].get("source", "embedded") != "embedded":
        return None
    world.generate(cfg, progress=progress)
    return world


def corpus_summary(cfg: dict) -> pd.DataFrame:
    from .world import load_corpus
    c = load_corpus(cfg)
    src = pd.Series(c["sources"]).str.split("/", expand=True)
    src.columns = ["task", "domain", "class"]
    return src.groupby(["task", "domain"]).size().rename("pairs").reset_index()


def pretrain_stage(cfg: dict, hp: dict, seed: int, progress: bool = True) -> dict:
    from . import pretrain
    if cfg["model"].get("pretrained", "self") != "self":
        return {"skipped": f"profile uses pretrained={cfg['model']['pretrained']!r}; nothing to pretrain"}
    pretrain.validate(hp)
    out = checkpoint_path(cfg)
    meta = out.with_suffix(".json")
    want = config.fingerprint({"hp": hp, "seed": seed, "world": cfg.get("world"), "model": cfg["model"],
                               "code": config.code_fingerprint("world", "pretrain", "models")})
    if out.exists() and meta.exists() and json.loads(meta.read_text()).get("request") == want:
        return json.loads(meta.read_text())
    world_stage(cfg, progress)
    info = pretrain.pretrain(cfg, hp, seed, out, progress=progress)
    info["request"] = want
    tmp = meta.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, meta)
    return info


# ----------------------------------------------------------------------------- 01 zero-shot
def zero_shot_stage(cfg: dict, batch_size: int, num_workers: int = 0, progress: bool = True) -> pd.DataFrame:
    from .evaluate import write_csv, zero_shot_table
    config.check_type("batch_size", batch_size, int, positive=True)
    source = source_for(cfg)
    source.check()
    bundle = base_model(cfg)
    df = zero_shot_table(bundle, source, cfg["name"], batch_size, num_workers, progress)
    prov = provenance.collect(cfg, model_state=df.attrs.get("model_state"), model=cfg["model"],
                              stage="01_zero_shot")
    write_csv(df, paths.results_dir(cfg["name"]) / "zero_shot.csv", prov)
    return df


# ----------------------------------------------------------------------------- 02 fine-tune
FINETUNE_RESULT_COLUMNS = ["task", "method", "variant", "seed", "trainable_params", "best_val_acc",
                           "best_epoch", "epochs", "lr", "options"]
FINETUNE_TIMING_COLUMNS = ["train_seconds", "peak_memory_mb"]


def resolve_method(method: str, variant: str, options: dict, variants: dict) -> dict:
    """Options of one (method, variant): the method's options overlaid with the variant's."""
    from .methods import METHODS
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    if not isinstance(options, dict) or not isinstance(variants, dict):
        raise ConfigError("parameters 'options' and 'variants' must be mappings")
    if variant == "default":
        return dict(options)
    if variant not in variants:
        valid = ", ".join(["default", *variants])
        raise ConfigError(f"unknown variant {variant!r} of method {method!r}; valid variants: {valid}")
    return {**options, **(variants[variant] or {})}


def finetune_stage(cfg: dict, task: str, method: str, variant: str, seed: int, hp: dict,
                   options: dict, variants: dict, progress: bool = True) -> dict:
    """Fine-tune one (task, method, variant, seed), or reuse the finished run with the same request.

    Writes ``build/<profile>/runs/<task>/<method>-<variant>/seed<k>/`` with ``trainable.safetensors``,
    ``meta.json`` (params, seed, history, provenance) and ``row.json`` (its finetune.csv row).
    """
    from . import methods, train
    train.resolve_hp(hp)  # every hyperparameter (type, range, unknown keys), before any work
    config.check_type("seed", seed, int, nonneg=True)
    opts = resolve_method(method, variant, options, variants)
    methods.validate_options(method, opts) if hasattr(methods, "validate_options") else None
    source = source_for(cfg)
    spec = source.task(task)  # an unknown task name fails before the data check
    source.check()
    base_ck = checkpoint_path(cfg) if cfg["model"].get("pretrained", "self") == "self" else None
    base_fp = json.loads(base_ck.with_suffix(".json").read_text())["state_fingerprint"] if base_ck else cfg["model"]
    request = {"task": task, "method": method, "variant": variant, "seed": seed, "hp": hp,
               "options": opts, "base_model": base_fp,
               "code": config.code_fingerprint("methods", "train", "models", "data")}
    want = config.fingerprint(request)
    rdir = paths.run_dir(cfg["name"], task, method, variant, seed)
    row_f = rdir / "row.json"
    if row_f.exists():
        row = json.loads(row_f.read_text())
        if row.get("request_fingerprint") == want and (rdir / "trainable.safetensors").exists():
            row["reused"] = True
            return row
    bundle = base_model(cfg)
    train_split = source.load(task, spec.id_domain, "train")
    val_split = source.load(task, spec.id_domain, "val")
    res = train.finetune(bundle, method, opts, train_split, val_split, hp, seed, progress=progress)
    row = {"task": task, "method": method, "variant": variant, "seed": seed,
           "trainable_params": int(res.trainable_params), "best_val_acc": float(res.best_val_acc),
           "best_epoch": int(res.best_epoch), "epochs": hp["epochs"], "lr": hp["lr"],
           "options": json.dumps(opts, sort_keys=True),
           "train_seconds": float(res.train_seconds), "peak_memory_mb": float(res.peak_memory_mb),
           "request_fingerprint": want}
    meta = {"request": request, "request_fingerprint": want, "history": res.history,
            "method": method, "options": opts, "variant": variant, "task": task, "seed": seed,
            "trainable_params": int(res.trainable_params), "data": {"train": train_split.fingerprint,
                                                                    "val": val_split.fingerprint},
            "provenance": provenance.collect(cfg, stage="02_finetune")}
    paths.ensure(rdir)
    # write the new run completely under temporary names first: a failure up to here keeps the old
    # result; then drop the old row (the completion marker), move the files in, the new row last
    staged = Path(tempfile.mkdtemp(prefix=".tmp-new-", dir=rdir))
    try:
        train.save_run(res, staged, meta)
        (staged / "row.json").write_text(json.dumps(row, indent=1))
        if row_f.exists():
            row_f.unlink()
        for name in (train.STATE_FILE, train.META_FILE, "row.json"):
            os.replace(staged / name, rdir / name)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    row["reused"] = False
    return row


def collect_rows(profile: str, name: str = "row.json") -> pd.DataFrame:
    rows = [json.loads(f.read_text()) for f in sorted(paths.runs_dir(profile).glob(f"*/*/seed*/{name}"))]
    return pd.DataFrame(rows)


def aggregate_finetune(profile: str) -> Path:
    """Rebuild results/finetune.csv (+ finetune_timing.csv) from the per-run rows of the grid."""
    from .evaluate import write_csv
    from .grid import runs
    cfg = config.load_profile(profile)
    rows = []
    missing = []
    for r in runs(cfg):
        f = paths.runs_dir(profile) / r.rel.removeprefix("runs/") / "row.json"
        if not f.exists():
            missing.append(r.rel)
            continue
        rows.append(json.loads(f.read_text()))
    if missing:
        raise FileNotFoundError(f"{len(missing)} fine-tuning runs have no result yet (e.g. {missing[0]}); "
                                f"run `make finetune PROFILE={profile}`")
    df = pd.DataFrame(rows).sort_values(["task", "method", "variant", "seed"]).reset_index(drop=True)
    res = paths.results_dir(profile)
    prov = provenance.collect(cfg, stage="aggregate_finetune", runs=len(df))
    write_csv(df[FINETUNE_RESULT_COLUMNS + FINETUNE_TIMING_COLUMNS], res / "finetune.csv", prov)
    write_csv(df[["task", "method", "variant", "seed"] + FINETUNE_TIMING_COLUMNS], res / "finetune_timing.csv")
    return res / "finetune.csv"


# ----------------------------------------------------------------------------- 03 evaluate
def evaluate_stage(cfg: dict, batch_size: int, num_workers: int = 0, progress: bool = True) -> pd.DataFrame:
    """Evaluate every run of the grid on ID, DG and CF data; writes results/evaluation.csv."""
    from tqdm.auto import tqdm

    from .evaluate import EVAL_COLUMNS, evaluate_run, write_csv
    from .grid import runs
    config.check_type("batch_size", batch_size, int, positive=True)
    profile = cfg["name"]
    zs_f = paths.results_dir(profile) / "zero_shot.csv"
    if not zs_f.exists():
        raise FileNotFoundError(f"{zs_f} is missing: run the zero-shot stage first (make zero-shot PROFILE={profile})")
    zs = pd.read_csv(zs_f)
    zs_rows = {(r.task, r.domain): r._asdict() for r in zs.itertuples(index=False)}
    source = source_for(cfg)
    source.check()
    grid = runs(cfg)
    missing = [r.rel for r in grid if not (paths.profile_dir(profile) / r.rel / "row.json").exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} runs are not finished (e.g. {missing[0]}): make finetune PROFILE={profile}")
    base = base_model(cfg)
    rows = []
    for r in tqdm(grid, desc="evaluate runs", disable=not progress):
        rows += evaluate_run(paths.profile_dir(profile) / r.rel, base, source, zs_rows, profile,
                             batch_size, num_workers)
    df = pd.DataFrame(rows)[EVAL_COLUMNS]
    # a CSV read back has no attrs: take the zero-shot model's state from that stage's provenance
    zs_prov = zs_f.with_name(zs_f.name + ".provenance.json")
    zs_model = json.loads(zs_prov.read_text()).get("model_state") if zs_prov.exists() else None
    prov = provenance.collect(cfg, stage="03_evaluate", runs=len(grid), zero_shot_model=zs_model)
    write_csv(df, paths.results_dir(profile) / "evaluation.csv", prov)
    return df


def run_meta(cfg: dict, task: str, method: str, variant: str, seed: int) -> dict:
    return json.loads((paths.run_dir(cfg["name"], task, method, variant, seed) / "meta.json").read_text())


def param_table_cached(profile: str, model_name: str = "ViT-B-32-quickgelu") -> pd.DataFrame:
    """The methods' trainable-parameter table at real scale (computed once, then read from disk)."""
    from .methods import param_table
    f = paths.cache_dir(profile) / f"param_table_{model_name}.csv"
    if f.exists():
        return pd.read_csv(f)
    df = param_table(model_name)
    paths.ensure(f.parent)
    tmp = f.with_name(f"{f.name}.{uuid.uuid4().hex}.tmp")  # unique: concurrent runs share the cache (make -j)
    df.to_csv(tmp, index=False)
    os.replace(tmp, f)
    return df
