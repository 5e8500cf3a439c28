"""Encode once, then measure: zero-shot difficulty and post-fine-tuning DG / CF evaluation.

Embeddings of each (model state, dataset split, preprocessing) are computed once and cached under
``build/<profile>/cache/`` with a content-hashed key; every table is computed from them.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import metrics, models, paths
from .data import DatasetSource, Split, iterate


# ----------------------------------------------------------------------------- encoders
def _is_classifier(m) -> bool:
    return hasattr(m, "trainable_state")


def encode_images(encoder, x: torch.Tensor) -> torch.Tensor:
    if _is_classifier(encoder):
        return encoder.encode_image(x)
    return encoder.encode_image(x, normalize=True)


def encode_tokens(encoder, tokens: torch.Tensor) -> torch.Tensor:
    if _is_classifier(encoder):
        return encoder.encode_text(tokens)
    return encoder.encode_text(tokens, normalize=True)


@torch.no_grad()
def text_embeddings(encoder, bundle, classnames, templates) -> np.ndarray:
    """Class-prompt embeddings (templates averaged, normalised), (n_classes, dim)."""
    encoder.eval()
    tokens = models.tokenize(bundle, models.prompts_for(classnames, templates))
    f = encode_tokens(encoder, tokens).view(len(classnames), len(templates), -1).mean(1)
    return torch.nn.functional.normalize(f, dim=-1).float().cpu().numpy()


def _cache_key(state_fp: str, split: Split, bundle, kind: str, extra: str = "") -> str:
    pre = f"{bundle.name}|{bundle.image_size}|{bundle.mean}|{bundle.std}|{bundle.preprocess}"
    blob = "|".join([kind, state_fp, split.fingerprint, pre, extra])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


@torch.no_grad()
def image_embeddings(encoder, bundle, split: Split, state_fp: str, profile: str,
                     batch_size: int = 256, num_workers: int = 0, progress: bool = False) -> np.ndarray:
    """Normalised image embeddings of a split, cached by (model state, split, preprocessing)."""
    from tqdm.auto import tqdm
    key = _cache_key(state_fp, split, bundle, "img")
    f = paths.cache_dir(profile) / f"{key}.npy"
    if f.exists():
        return np.load(f)
    encoder.eval()
    feats = []
    amp = bundle.device.type == "cuda"
    it = iterate(split, bundle, batch_size, num_workers=num_workers)
    n_batches = (len(split) + batch_size - 1) // batch_size
    for x, _ in tqdm(it, total=n_batches, desc=f"encode {split.task}/{split.domain}", disable=not progress, leave=False):
        with torch.autocast("cuda", enabled=amp):
            feats.append(encode_images(encoder, x).float().cpu())
    out = torch.nn.functional.normalize(torch.cat(feats), dim=-1).numpy()
    paths.ensure(f.parent)
    tmp = f.with_name(f.name + ".tmp.npy")
    np.save(tmp, out)
    os.replace(tmp, f)
    return out


# ----------------------------------------------------------------------------- measures
def measures(img: np.ndarray, txt: np.ndarray, labels: np.ndarray) -> dict:
    """Every per-(model, data) measure of alignment and accuracy."""
    return {
        "zero_shot_acc": metrics.zero_shot_accuracy(img, txt, labels),
        "acs": metrics.average_cosine_similarity(img, txt, labels),
        "silhouette": metrics.modality_silhouette(img, txt),
        "class_silhouette": metrics.class_silhouette(img, labels),
        "modality_gap": metrics.modality_gap(img, txt),
    }


def eval_splits(source: DatasetSource) -> list[tuple[str, str, str]]:
    """(task, domain, split) of every test split of the profile: ID test and shifted domains."""
    out = []
    for name, spec in source.tasks().items():
        out += [(name, d, "test") for d in spec.domains]
    return out


def zero_shot_table(bundle, source: DatasetSource, profile: str, batch_size: int = 256,
                    num_workers: int = 0, progress: bool = True) -> pd.DataFrame:
    from tqdm.auto import tqdm
    state_fp = models.state_fingerprint(bundle.model)
    rows = []
    text_cache: dict[str, np.ndarray] = {}
    for task, domain, split in tqdm(eval_splits(source), desc="zero-shot", disable=not progress):
        s = source.load(task, domain, split)
        img = image_embeddings(bundle.model, bundle, s, state_fp, profile, batch_size, num_workers)
        if task not in text_cache:
            text_cache[task] = text_embeddings(bundle.model, bundle, s.classnames, s.templates)
        spec = source.task(task)
        rows.append({"task": task, "domain": domain, "split": split,
                     "domain_kind": "ID" if domain == spec.id_domain else "OOD",
                     "n_images": len(s), "n_classes": s.n_classes, "chance": 1.0 / s.n_classes,
                     **measures(img, text_cache[task], s.labels),
                     "data_fingerprint": s.fingerprint})
    df = pd.DataFrame(rows)
    df.attrs["model_state"] = state_fp
    return df


def write_csv(df: pd.DataFrame, path: Path, provenance: dict | None = None) -> Path:
    """Atomic CSV write, with a ``.provenance.json`` beside it."""
    path = Path(path)
    paths.ensure(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, index=False, float_format="%.6g")
    os.replace(tmp, path)
    if provenance is not None:
        ptmp = path.with_name(path.name + ".provenance.json.tmp")
        ptmp.write_text(json.dumps(provenance, indent=1, default=str))
        os.replace(ptmp, path.with_name(path.name + ".provenance.json"))
    return path


# ----------------------------------------------------------------------------- after fine-tuning
EVAL_VERSION = 1
EVAL_COLUMNS = ["train_task", "method", "variant", "seed", "eval_task", "eval_domain", "schema",
                "n_images", "acc_zero_shot", "acc_finetuned", "acs_zero_shot", "acs_finetuned",
                "silhouette_zero_shot", "silhouette_finetuned", "class_silhouette_zero_shot",
                "class_silhouette_finetuned", "modality_gap_zero_shot", "modality_gap_finetuned"]


def schema_of(train_task: str, eval_task: str, eval_domain: str, id_domain: str) -> str:
    if eval_task != train_task:
        return "CF"
    return "ID" if eval_domain == id_domain else "DG"


def _file_hash(p: Path) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()[:16]


def evaluate_run(run_dir: Path, base, source: DatasetSource, zs_rows: dict, profile: str,
                 batch_size: int = 256, num_workers: int = 0) -> list[dict]:
    """Rows of evaluation.csv for one run (cached in ``<run_dir>/eval.json``)."""
    from . import train
    meta = json.loads((Path(run_dir) / "meta.json").read_text())
    state_fp = _file_hash(Path(run_dir) / "trainable.safetensors")
    splits = eval_splits(source)
    key = {"version": EVAL_VERSION, "state": state_fp, "request": meta.get("request_fingerprint"),
           "data": {f"{t}/{d}": zs_rows[(t, d)]["data_fingerprint"] for t, d, _ in splits}}
    cache = Path(run_dir) / "eval.json"
    if cache.exists():
        c = json.loads(cache.read_text())
        if c.get("key") == key:
            return c["rows"]
    clf = train.load_run(base, run_dir)  # builds a copy: the base model is never modified
    clf.eval()
    rows = []
    text_cache = {}
    for task, domain, split in splits:
        s = source.load(task, domain, split)
        img = image_embeddings(clf, base, s, f"run:{state_fp}:{meta.get('request_fingerprint')}",
                               profile, batch_size, num_workers)
        if task not in text_cache:
            text_cache[task] = text_embeddings(clf, base, s.classnames, s.templates)
        m = measures(img, text_cache[task], s.labels)
        z = zs_rows[(task, domain)]
        rows.append({"train_task": meta["task"], "method": meta["method"], "variant": meta["variant"],
                     "seed": meta["seed"], "eval_task": task, "eval_domain": domain,
                     "schema": schema_of(meta["task"], task, domain, source.task(task).id_domain),
                     "n_images": len(s),
                     "acc_zero_shot": z["zero_shot_acc"], "acc_finetuned": m["zero_shot_acc"],
                     "acs_zero_shot": z["acs"], "acs_finetuned": m["acs"],
                     "silhouette_zero_shot": z["silhouette"], "silhouette_finetuned": m["silhouette"],
                     "class_silhouette_zero_shot": z["class_silhouette"],
                     "class_silhouette_finetuned": m["class_silhouette"],
                     "modality_gap_zero_shot": z["modality_gap"], "modality_gap_finetuned": m["modality_gap"]})
    tmp = cache.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"key": key, "rows": rows}, indent=1))
    os.replace(tmp, cache)
    # image embeddings of a fine-tuned model are not reused by any other stage: keep the cache small
    return rows
