"""Encode once, then measure: zero-shot difficulty and post-fine-tuning DG / CF evaluation.

Embeddings of each (model state, dataset split, preprocessing) are computed once and cached under
``build/<profile>/cache/`` with a content-hashed key; every table is computed from them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from . import io, metrics, models, paths, schema
from .config import ConfigError
from .splits import DatasetSource, Split, iterate
from .progress import progress as progress_bar


# ----------------------------------------------------------------------------- encoders
def encode_images(encoder, x: torch.Tensor) -> torch.Tensor:
    """Normalised image features of an open_clip CLIP or a fine-tuned classifier."""
    return encoder.encode_image(x, normalize=True)


@torch.no_grad()
def text_embeddings(encoder, bundle, classnames, templates) -> np.ndarray:
    """Class-prompt embeddings (templates averaged, normalised), (n_classes, dim)."""
    encoder.eval()
    tokens = models.prompt_tokens(bundle, classnames, templates)
    return models.class_text_features(encoder, tokens, len(classnames), len(templates)).float().cpu().numpy()


def _cache_key(state_fp: str, split: Split, bundle, kind: str, extra: str = "") -> str:
    pre = f"{bundle.name}|{bundle.image_size}|{bundle.mean}|{bundle.std}|{bundle.preprocess}"
    blob = "|".join([kind, state_fp, split.fingerprint, pre, extra])
    return io.sha256_hex(blob, length=24)  # 24: the length of the cache files already on disk


@torch.no_grad()
def _encode(fn, bundle, split: Split, batch_size: int, num_workers: int, show: bool) -> list[torch.Tensor]:
    amp = bundle.device.type == "cuda"
    out = []
    it = iterate(split, bundle, batch_size, num_workers=num_workers)
    n_batches = (len(split) + batch_size - 1) // batch_size
    for x, _ in progress_bar(it, total=n_batches, desc=f"encode {split.task}/{split.domain}",
                             disable=not show, leave=False):
        with torch.autocast("cuda", enabled=amp):
            out.append(fn(x).float().cpu())
    return out


@torch.no_grad()
def image_embeddings(encoder, bundle, split: Split, state_fp: str, profile: str,
                     batch_size: int = 256, num_workers: int = 0, progress: bool = False) -> np.ndarray:
    """Normalised image embeddings of a split, cached by (model state, split, preprocessing).

    A cache file that cannot be read or has the wrong length is recomputed."""
    f = paths.cache_dir(profile) / f"{_cache_key(state_fp, split, bundle, 'img')}.npy"
    cached = io.load_npy(f, len(split)) if f.exists() else None
    if cached is not None:
        return cached
    encoder.eval()
    feats = _encode(lambda x: encode_images(encoder, x), bundle, split, batch_size, num_workers, progress)
    out = torch.nn.functional.normalize(torch.cat(feats), dim=-1).numpy()
    io.save_npy(f, out)
    return out


@torch.no_grad()
def raw_image_features(model, bundle, split: Split, state_fp: str, profile: str, batch_size: int = 256,
                       num_workers: int = 0) -> list[torch.Tensor]:
    """The un-normalised image features of an open_clip CLIP, per batch of ``batch_size`` (cached).

    Methods whose image tower stays frozen (CLIP-Adapter) map these base features instead of
    re-encoding the images (the same batches, so the same numbers)."""
    f = paths.cache_dir(profile) / f"{_cache_key(state_fp, split, bundle, 'raw', str(batch_size))}.npy"
    cached = io.load_npy(f, len(split)) if f.exists() else None
    if cached is None:
        model.eval()
        cached = torch.cat(_encode(lambda x: model.encode_image(x), bundle, split, batch_size,
                                   num_workers, False)).numpy()
        io.save_npy(f, cached)
    return list(torch.from_numpy(cached).to(bundle.device).split(batch_size))


def image_tower(classifier) -> str:
    """How a fine-tuned classifier's image features relate to its base model's:
    ``"base"`` (identical: nothing on the image side trains), ``"adapter"`` (a trained map of the
    frozen base features) or ``"changed"``."""
    visual_trains = any(p.requires_grad for p in classifier.clip.visual.parameters())
    if visual_trains:
        return "changed"
    return "adapter" if classifier.image_adapter is not None else "base"


# ----------------------------------------------------------------------------- measures
MEASURES = tuple(schema.MEASURE_RANGES)  # ("acc", "acs", "ss", "class_ss", "modality_gap", "iimm")


def measures(img: np.ndarray, txt: np.ndarray, labels: np.ndarray) -> dict:
    """Every per-(model, data) measure of alignment and accuracy (names as in every table)."""
    return {
        "acc": metrics.zero_shot_accuracy(img, txt, labels),
        "acs": metrics.average_cosine_similarity(img, txt, labels),
        "ss": metrics.modality_silhouette(img, txt),
        "class_ss": metrics.class_silhouette(img, labels),
        "modality_gap": metrics.modality_gap(img, txt),
        "iimm": metrics.iimm(img, txt, labels),
    }


def predictions(img, txt) -> np.ndarray:
    """Predicted class of every image: argmax_c cos(img_i, txt_c), computed exactly as
    :func:`lib.metrics.zero_shot_accuracy` does (float64 unit rows, the same row chunks, ties to the
    lowest class index), so ``mean(predictions(img, txt) == labels)`` is that accuracy."""
    im = metrics._as_2d(img, "image_emb")
    tn = metrics._normalize64(metrics._as_2d(txt, "text_emb"))
    out = np.empty(im.shape[0], dtype=np.intp)
    for start, c in metrics._iter_chunks([im], metrics._chunk_rows(im.shape[1], tn.shape[0])):
        out[start:start + c.shape[0]] = np.argmax(c @ tn.T, axis=1)
    return out


def flips(pred_zero_shot: np.ndarray, pred_finetuned: np.ndarray, labels) -> dict:
    """``n_lost``: images the zero-shot model got right and the fine-tuned one wrong; ``n_won``: the
    reverse (the discordant pairs of an exact McNemar test of fine-tuned vs zero-shot)."""
    lab = np.asarray(labels).reshape(-1)
    zs, ft = pred_zero_shot == lab, pred_finetuned == lab
    return {"n_lost": int(np.sum(zs & ~ft)), "n_won": int(np.sum(~zs & ft)),
            "n_correct_zero_shot": int(zs.sum()), "n_correct_finetuned": int(ft.sum())}


def eval_splits(source: DatasetSource, train_task: str | None = None,
                panel: list[str] | None = None) -> list[tuple[str, str, str]]:
    """(task, domain, split) of the test splits a run is evaluated on. Without a ``panel`` (or with
    no ``train_task``: the zero-shot stage) every test split of the profile: each task's ID test and
    shifted domains. With a forgetting ``panel`` (``forgetting_panel`` in params/03_evaluate.yaml, study
    v3), a run of ``train_task`` is evaluated on its own task's domains and on the ID test split of
    each panel task, so evaluation grows linearly with the number of tasks, not with its square."""
    tasks = source.tasks()
    if panel is None or train_task is None:
        return [(name, d, "test") for name, spec in tasks.items() for d in spec.domains]
    unknown = [t for t in [train_task, *panel] if t not in tasks]
    if unknown:
        raise ConfigError(f"forgetting_panel / the run name unknown task(s) {unknown}; valid: {', '.join(tasks)}")
    out = [(train_task, d, "test") for d in tasks[train_task].domains]
    return out + [(t, tasks[t].id_domain, "test") for t in panel if t != train_task]


def zero_shot_table(bundle, source: DatasetSource, profile: str, batch_size: int = 256,
                    num_workers: int = 0, progress: bool = True) -> pd.DataFrame:
    state_fp = models.state_fingerprint(bundle.model)
    rows = []
    text_cache: dict[tuple, np.ndarray] = {}  # by (task, classnames, templates): a domain may hold a subset
    for task, domain, split in progress_bar(eval_splits(source), desc="zero-shot", disable=not progress):
        s = source.load(task, domain, split)
        img = image_embeddings(bundle.model, bundle, s, state_fp, profile, batch_size, num_workers)
        tkey = (task, tuple(s.classnames), tuple(s.templates))
        if tkey not in text_cache:
            text_cache[tkey] = text_embeddings(bundle.model, bundle, s.classnames, s.templates)
        spec = source.task(task)
        rows.append({"task": task, "domain": domain, "split": split,
                     "domain_kind": "ID" if domain == spec.id_domain else "OOD",
                     "n_images": len(s), "n_classes": s.n_classes, "chance": 1.0 / s.n_classes,
                     **measures(img, text_cache[tkey], s.labels),
                     "data_fingerprint": s.fingerprint})
    df = pd.DataFrame(rows)
    df.attrs["model_state"] = state_fp
    return df


# ----------------------------------------------------------------------------- after fine-tuning
# train_task, method, variant, seed, eval_task, eval_domain, schema, n_images, <measure>_zero_shot,
# <measure>_finetuned for each measure, n_lost, n_won (lib.schema.EVALUATION: types and ranges)
EVAL_COLUMNS = schema.EVALUATION.names


def schema_of(train_task: str, eval_task: str, eval_domain: str, id_domain: str) -> str:
    """ID (the trained task's ID test), DG (its shifted domains) or CF (any other task)."""
    if eval_task != train_task:
        return "CF"
    return "ID" if eval_domain == id_domain else "DG"


@torch.no_grad()
def run_measures(clf, base, source: DatasetSource, splits, profile: str, run_tag: str,
                 base_state: str, batch_size: int = 256, num_workers: int = 0) -> dict:
    """Every measure of a fine-tuned classifier on each (task, domain, split) of ``splits``, and its
    flips against the base (zero-shot) model on the same images (:func:`flips`: ``n_lost``,
    ``n_won``, and both models' numbers of correct images).

    Image features are re-encoded only when the run changed the image tower (see
    :func:`image_tower`); otherwise the base model's cached features are reused. The base model's
    predictions come from its cached image embeddings (made by the zero-shot stage) and its class
    text embeddings (once per task)."""
    clf.eval()
    tower = image_tower(clf)
    out, text_cache, base_text = {}, {}, {}
    for task, domain, split in splits:
        s = source.load(task, domain, split)
        base_img = image_embeddings(base.model, base, s, base_state, profile, batch_size, num_workers)
        # the prompts of this split's classes (a domain may hold a subset of its task's classes, e.g.
        # ImageNet-R's 200): keyed by the class list, not the task
        tkey = (task, tuple(s.classnames), tuple(s.templates))
        if tkey not in base_text:
            base_text[tkey] = text_embeddings(base.model, base, s.classnames, s.templates)
        if tower == "base":
            img = base_img
        elif tower == "adapter":
            raw = raw_image_features(base.model, base, s, base_state, profile, batch_size, num_workers)
            img = torch.nn.functional.normalize(torch.cat([clf.adapt_image(r).float().cpu() for r in raw]),
                                                dim=-1).numpy()
        else:
            img = image_embeddings(clf, base, s, run_tag, profile, batch_size, num_workers)
        if tkey not in text_cache:
            text_cache[tkey] = text_embeddings(clf, base, s.classnames, s.templates)
        m = measures(img, text_cache[tkey], s.labels)
        m.update(flips(predictions(base_img, base_text[tkey]), predictions(img, text_cache[tkey]), s.labels))
        out[(task, domain)] = (len(s), m)
    return out
