"""Contrastive pretraining of the embedded profile's small CLIP on the generated corpus.

open_clip's own model (built from the registered ``ClipMis-Tiny`` config) and its own
contrastive loss (``open_clip.ClipLoss``); AdamW with warmup + cosine schedule.  A held-out slice
of the corpus measures image->text and text->image retrieval R@1.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import open_clip
import torch

from . import models, provenance
from . import config
from .splits import ArrayImages, Split
from .schedule import lr_factor
from .progress import progress as tqdm
from .world import load_corpus


def validate(hp: dict) -> dict:
    """Check pretraining hyperparameters (no seed, no thread count) against the schema of
    ``params/00_pretrain.yaml`` (the one validator: :data:`lib.config.PRETRAIN_HP_SCHEMA`)."""
    return config.validate(dict(hp), config.PRETRAIN_HP_SCHEMA, "", "the pretraining hyperparameters",
                           merged=True)


def _tokenize(bundle, captions, bs=4096):
    return torch.cat([bundle.tokenizer(captions[i:i + bs]) for i in range(0, len(captions), bs)])


@torch.no_grad()
def retrieval_r1(model, images: torch.Tensor, tokens: torch.Tensor, bs: int = 500) -> dict:
    """R@1 over a held-out set: image->text and text->image (each item has one true partner)."""
    model.eval()
    fi = torch.cat([model.encode_image(images[i:i + bs], normalize=True) for i in range(0, len(images), bs)])
    ft = torch.cat([model.encode_text(tokens[i:i + bs], normalize=True) for i in range(0, len(tokens), bs)])
    sim = fi @ ft.T
    target = torch.arange(len(fi))
    # ties between identical captions count as correct: compare with the true pair's similarity
    i2t = (sim.max(dim=1).values <= sim[target, target] + 1e-6).float().mean().item()
    t2i = (sim.max(dim=0).values <= sim[target, target] + 1e-6).float().mean().item()
    return {"r1_image_to_text": i2t, "r1_text_to_image": t2i}


def pretrain(profile_cfg: dict, hp: dict, seed: int, out_path: Path, progress: bool = True) -> dict:
    """Train from scratch, save ``out_path`` (safetensors) and return the history and metrics (the
    stage writes them to ``<out>.json``)."""
    validate(hp)
    torch.manual_seed(seed)
    bundle = models.create(profile_cfg["model"]["name"], pretrained=None,
                           device=profile_cfg.get("device", "auto"), seed=seed)
    model = bundle.model
    corpus = load_corpus(profile_cfg)
    n = len(corpus["captions"])
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    hold, train_idx = perm[:hp["holdout"]], perm[hp["holdout"]:]
    tokens = _tokenize(bundle, corpus["captions"])
    ds = ArrayImages(Split("corpus", "all", "train", np.zeros(n, np.int64), [], [], images=corpus["images"]),
                     bundle.image_size, bundle.mean, bundle.std)
    hold_x, _ = ds.batch(hold)
    hold_t = tokens[hold]
    loss_fn = open_clip.ClipLoss()
    decay = [p for nme, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in nme]
    no_decay = [p for nme, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in nme)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": hp["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=hp["lr"], betas=(0.9, 0.98), eps=1e-6)
    bs = hp["batch_size"]
    steps_per_epoch = len(train_idx) // bs
    total = steps_per_epoch * hp["epochs"]

    def lr_at(step):
        return hp["lr"] * lr_factor(step, total, hp["warmup_steps"])

    history, evals = [], []
    t0 = time.time()
    step = 0
    bar = tqdm(total=total, desc="pretrain", disable=not progress)
    for epoch in range(hp["epochs"]):
        model.train()
        order = train_idx[np.random.default_rng(seed + 1000 + epoch).permutation(len(train_idx))]
        for s in range(steps_per_epoch):
            idx = order[s * bs:(s + 1) * bs]
            x, _ = ds.batch(idx)
            x, t = x.to(bundle.device), tokens[idx].to(bundle.device)
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            fi = model.encode_image(x, normalize=True)
            ft = model.encode_text(t, normalize=True)
            loss = loss_fn(fi, ft, model.logit_scale.exp())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"pretraining loss became {loss.item()} at step {step} (lr "
                                         f"{lr_at(step):.2e}); lower `lr` in params/00_pretrain.yaml")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            history.append({"step": step, "epoch": epoch, "loss": float(loss.item()), "lr": lr_at(step)})
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        r = retrieval_r1(model, hold_x.to(bundle.device), hold_t.to(bundle.device))
        evals.append({"epoch": epoch, **r})
    bar.close()
    seconds = time.time() - t0
    model.eval()
    models.save_checkpoint(model, out_path)
    return {"history": history, "evals": evals, "train_seconds": seconds, "n_train_pairs": int(len(train_idx)),
            "n_holdout": int(len(hold)), "steps": step, "hp": hp, "seed": seed,
            "model": profile_cfg["model"]["name"], "state_fingerprint": models.state_fingerprint(model),
            "checkpoint_bytes": Path(out_path).stat().st_size, "provenance": provenance.collect(profile_cfg)}
