"""One fine-tuning recipe for every method, run saving and loading (``docs/methods.md``).

Recipe: logits = ``logit_scale.exp() * normalize(image features) @ normalize(class-prompt
features)^T`` (the class-prompt head of :func:`lib.models.class_text_features`), cross-entropy,
SGD with momentum and weight decay on the trainable parameters only, per-step schedule
(:func:`lib.schedule.lr_factor`), validation accuracy after every epoch, the best-validation
trainable state (first epoch on ties) is loaded at the end.  Prompts are re-encoded at every step
when the method can change the text features (``classifier.text_changes``), else encoded once
under ``no_grad``.

A run whose loss or parameters become non-finite stops there: it keeps its best-validation state
so far (the initial state, validated as epoch 0, when no epoch finished) and records where it
diverged in ``FinetuneResult.nonfinite``; the pipeline marks such a run ``collapsed``. A rate that
diverges is a result of a learning-rate sweep, not an error.

``logit_scale`` trains with ``full`` only (it is a parameter of the CLIP); every other method
keeps it frozen.

CLIP-Adapter (``classifier.backbone_frozen``): with ``hp['cache_features']`` the frozen backbone
encodes the train and validation images and the prompts once; the adapters then train on those
features.  The model is always in eval mode, so this is the same computation as running the
backbone at every step (``tests/test_train.py`` checks the trained adapters agree to 1e-6).

Precision (``hp['precision']``, optional; absent or ``fp32``: full precision, every profile but
``colab``): ``fp16`` runs the forward passes of training and validation under fp16 autocast with a
``torch.amp.GradScaler`` on CUDA only (elsewhere the run stays fp32, said once in the log); ``bf16``
runs them under bf16 autocast on any device (no scaler: bf16 has fp32's range). Parameters, the
optimizer state and the saved state stay fp32 (:class:`Amp`).

Memory (``hp['text_chunk']``, optional; absent: as before): the methods that train the text side
encode every class prompt with gradients at every step, which dominates a step's memory when there
are many prompts (DTD: 47 classes x 8 templates = 376). With ``text_chunk: n`` the prompts are
encoded in chunks of ``n``, each under ``torch.utils.checkpoint`` (non-reentrant): a chunk keeps only
its output and is recomputed in the backward pass, so a step holds the activations of one chunk, for
one more forward pass of the prompts (open_clip's per-block checkpointing is not used: peft's LoRA
parametrization saves other tensors when a block is recomputed, which the checkpoint refuses).

Hyperparameter VALUES live in ``params/02_finetune.yaml`` (and a method's learning rate in
``params/methods/<method>.yaml``) only; :data:`HP_KEYS` is the list of keys a run needs.
"""
from __future__ import annotations

import contextlib
import json
import math
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.utils.checkpoint import checkpoint

from . import splits as D
from . import methods as M
from . import models
from . import config
from .config import ConfigError
from .io import read_json, save_safetensors, write_json
from .paths import RunId
from .progress import log, progress as tqdm
from .schedule import lr_factor

HP_KEYS = tuple(config.RUN_HP_SCHEMA.keys)  # the keys a run needs (lib.config.RUN_HP_SCHEMA)


def resolve_hp(hp: dict) -> dict:
    """Check a run's hyperparameters against the schema (:data:`lib.config.RUN_HP_SCHEMA`: every key of
    :data:`HP_KEYS`, the same types and bounds as ``params/02_finetune.yaml``'s), the one validator."""
    return config.validate(dict(hp or {}), config.RUN_HP_SCHEMA, "",
                           "a run's hyperparameters (params/02_finetune.yaml, lr from params/methods/<method>.yaml)",
                           merged=True)


@dataclass
class FinetuneResult:
    classifier: M.ClipClassifier
    best_val_acc: float
    best_epoch: int
    history: list = field(default_factory=list)
    train_seconds: float = 0.0
    peak_memory_mb: float = 0.0
    trainable_params: int = 0
    steps: int = 0
    method: str = ""
    options: dict = field(default_factory=dict)
    hp: dict = field(default_factory=dict)
    seed: int = 0
    base_model: str = ""
    base_pretrained: str | None = None
    cached_features: bool = False
    nonfinite: dict | None = None   # {"epoch", "step", "lr", "what"} where training diverged; None if it did not

    def summary(self) -> dict:
        return {k: getattr(self, k) for k in (
            "method", "options", "hp", "seed", "best_val_acc", "best_epoch", "history",
            "train_seconds", "peak_memory_mb", "trainable_params", "steps", "base_model",
            "base_pretrained", "cached_features", "nonfinite")}


# ----------------------------------------------------------------------------- helpers
@torch.no_grad()
def _raw_image_features(clf: M.ClipClassifier, split: D.Split, bundle, batch_size: int,
                        num_workers: int = 0) -> torch.Tensor:
    return torch.cat([clf.clip.encode_image(x)
                      for x, _ in D.iterate(split, bundle, batch_size, num_workers=num_workers)])


@torch.no_grad()
def predict_logits(classifier: M.ClipClassifier, images: torch.Tensor, text_tokens: torch.Tensor,
                   n_classes: int, n_templates: int) -> torch.Tensor:
    """Class logits of ``images`` (prompts class-major, averaged over templates)."""
    classifier.eval()
    text = models.class_text_features(classifier, text_tokens, n_classes, n_templates)
    return classifier.logit_scale.exp() * classifier.encode_image(images) @ text.T


@torch.no_grad()
def accuracy(classifier: M.ClipClassifier, split: D.Split, bundle, batch_size: int = 256,
             text_features: torch.Tensor | None = None, num_workers: int = 0) -> float:
    """Top-1 accuracy (fraction in [0, 1]) of the class-prompt head on ``split``."""
    if text_features is None:
        text_features = models.class_text_features(classifier, models.prompt_tokens(bundle, split.classnames, split.templates),
                                                   split.n_classes, len(split.templates))
    correct = 0
    for x, y in D.iterate(split, bundle, batch_size, num_workers=num_workers):
        correct += int((classifier.encode_image(x) @ text_features.T).argmax(-1).eq(y).sum())
    return correct / max(1, len(split))


def _encode_text_chunked(clf: M.ClipClassifier, tokens: torch.Tensor, chunk: int) -> torch.Tensor:
    """Normalised prompt features, ``chunk`` prompts at a time, each chunk checkpointed (recomputed in
    the backward pass instead of keeping its activations)."""

    def encode(t):
        return clf.encode_text(t, normalize=True)
    return torch.cat([checkpoint(encode, tokens[i:i + chunk], use_reentrant=False)
                      for i in range(0, len(tokens), chunk)])


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _nonfinite_param(clf) -> str | None:
    """The name of the first trainable parameter holding a non-finite value, else None."""
    for n, p in clf.named_parameters():
        if p.requires_grad and not torch.isfinite(p).all():
            return n
    return None


class Amp:
    """A run's precision (``hp['precision']``): the autocast context of its forward passes and how a
    loss is turned into an optimizer step. ``None`` / ``"fp32"``: no autocast, ``loss.backward()``,
    ``opt.step()`` (the same operations as before the option existed, so the same bytes). ``"fp16"``
    on CUDA: fp16 autocast and a GradScaler (it skips a step whose gradients overflowed and lowers
    its scale); on another device fp16 is not used (the run is fp32). ``"bf16"``: bf16 autocast on
    the run's device, no scaler."""

    def __init__(self, precision: str | None, device: torch.device):
        self.precision = precision or "fp32"
        self.device_type = device.type
        self.dtype, self.scaler = None, None
        if self.precision == "fp16" and device.type == "cuda":
            self.dtype = torch.float16
            self.scaler = torch.amp.GradScaler("cuda")
        elif self.precision == "bf16":
            self.dtype = torch.bfloat16

    @property
    def active(self) -> bool:
        return self.dtype is not None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward_step(self, loss: torch.Tensor, opt) -> None:
        if self.scaler is None:
            loss.backward()
            opt.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(opt)
            self.scaler.update()


# ----------------------------------------------------------------------------- finetune
def _train_epoch(clf, batches, fixed_text, text_features, opt, sched, bar, epoch: int, step: int,
                 amp: Amp | None = None):
    """One epoch of SGD steps over ``batches(epoch)`` (image features, labels); the prompts'
    features are ``fixed_text`` when they cannot change, else ``text_features()`` at every step.

    Stops at the first non-finite loss (no step is taken with it); after the epoch, checks the
    trainable parameters. Returns ``(losses, step, nonfinite, seconds)``: the epoch's losses, the
    global step count after it, None or where training diverged (``{"epoch", "step", "lr",
    "what"}``), and the epoch's wall time.
    """
    amp = amp or Amp(None, torch.device("cpu"))
    losses, t_epoch, nonfinite = [], time.perf_counter(), None
    it = iter(batches(epoch))
    while True:
        with amp.autocast():  # the batch's forward pass (computed by the generator) under the run's precision
            try:
                feats, y = next(it)
            except StopIteration:
                break
            text = fixed_text if fixed_text is not None else text_features()
            logits = clf.logit_scale.exp() * feats @ text.T
            loss = F.cross_entropy(logits, y)
        if not torch.isfinite(loss):
            nonfinite = {"epoch": epoch, "step": step, "lr": opt.param_groups[0]["lr"],
                         "what": f"loss {loss.item()}"}
            break
        opt.zero_grad(set_to_none=True)
        amp.backward_step(loss, opt)
        sched.step()
        step += 1
        losses.append(loss.item())
        bar.update(1)
    t_epoch = time.perf_counter() - t_epoch
    bad = nonfinite is None and _nonfinite_param(clf)
    if bad:
        nonfinite = {"epoch": epoch, "step": step, "lr": opt.param_groups[0]["lr"],
                     "what": f"parameter {bad}"}
    return losses, step, nonfinite, t_epoch


def _evaluate_epoch(clf, validate, opt, bar, history: list, epoch: int, losses: list, t_epoch: float,
                    no_val: bool, best: tuple):
    """After a finished epoch: validation accuracy (``validate()``), the epoch's ``history`` row
    (appended), the progress bar's postfix, and the best state so far. ``best`` is ``(accuracy,
    epoch, trainable state or None)``; the epoch becomes the best one when there is no validation
    split (``no_val``: the last epoch is kept), when it beats the best accuracy (first epoch on
    ties) or when there is none yet. Returns the new ``best``."""
    best_acc, best_epoch, best_state = best
    val_acc = validate()
    history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_acc": val_acc,
                    "lr_end": opt.param_groups[0]["lr"], "epoch_seconds": t_epoch})
    bar.set_postfix(loss=f"{np.mean(losses):.3f}", val=f"{val_acc:.1f}")
    if no_val or val_acc > best_acc or best_state is None:
        best_acc, best_epoch = val_acc, epoch
        best_state = clf.trainable_state()
    return best_acc, best_epoch, best_state


def finetune(bundle, method: str, options: dict | None, train_split: D.Split,
             val_split: D.Split | None, hp: dict, seed: int, progress: bool = True) -> FinetuneResult:
    """Fine-tune a copy of ``bundle.model`` with ``method``; see the module docstring."""
    hp = resolve_hp(hp)
    opts = M.resolve_options(method, options)
    if val_split is not None and list(val_split.classnames) != list(train_split.classnames):
        raise ConfigError(f"validation split {val_split.task}/{val_split.domain} has other class names "
                          f"than the training split {train_split.task}/{train_split.domain}")
    if len(train_split) == 0:
        raise ConfigError(f"training split {train_split.task}/{train_split.domain} is empty")
    dev = bundle.device
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    clf = M.build(bundle.model, method, opts)
    clf.eval()  # CLIP has no dropout/batch-norm; frozen parts behave as at inference

    n_classes, n_templates = train_split.n_classes, len(train_split.templates)
    tokens = models.prompt_tokens(bundle, train_split.classnames, train_split.templates)
    bs, ebs, epochs, nw = hp["batch_size"], hp["eval_batch_size"], hp["epochs"], hp["num_workers"]
    n = len(train_split)
    steps_per_epoch = math.ceil(n / bs)
    total = epochs * steps_per_epoch
    params = [p for p in clf.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total, hp["warmup_steps"], hp["cosine"]))

    amp = Amp(hp.get("precision"), dev)
    if hp.get("precision") == "fp16" and not amp.active:
        log(f"{method}: precision fp16 applies on CUDA only; this run on {dev.type} is fp32")
    cached = bool(hp["cache_features"] and clf.backbone_frozen)
    if cached:
        with amp.autocast():   # the frozen backbone's features, held in fp32 for the adapters
            train_raw = _raw_image_features(clf, train_split, bundle, ebs, nw).float()
            val_raw = _raw_image_features(clf, val_split, bundle, ebs, nw).float() if val_split is not None else None
            with torch.no_grad():
                text_raw = clf.clip.encode_text(tokens).float()
        train_y = torch.from_numpy(np.asarray(train_split.labels)).long().to(dev)

    chunk = hp.get("text_chunk")

    def text_features() -> torch.Tensor:
        if cached:
            return models.class_mean(clf.adapt_text(text_raw), n_classes, n_templates)
        if chunk and torch.is_grad_enabled():
            return models.class_mean(_encode_text_chunked(clf, tokens, chunk), n_classes, n_templates)
        return models.class_text_features(clf, tokens, n_classes, n_templates)

    def batches(epoch: int):
        if cached:
            order = np.random.default_rng(seed + epoch).permutation(n)  # as lib.data.iterate
            for s in range(0, n, bs):
                idx = torch.from_numpy(order[s:s + bs]).to(dev)
                yield clf.adapt_image(train_raw[idx]), train_y[idx]
        else:
            for x, y in D.iterate(train_split, bundle, bs, shuffle=True, seed=seed + epoch, num_workers=nw):
                yield clf.encode_image(x), y

    @torch.no_grad()
    def validate() -> float:
        if val_split is None:
            return float("nan")
        with amp.autocast():
            text = text_features()
            if cached:
                pred = (clf.adapt_image(val_raw) @ text.T).argmax(-1).cpu().numpy()
                return float((pred == np.asarray(val_split.labels)).mean())
            return accuracy(clf, val_split, bundle, ebs, text, nw)

    fixed_text = None
    if not clf.text_changes and not cached:
        with torch.no_grad(), amp.autocast():
            fixed_text = text_features()

    history, best_state, best_acc, best_epoch, step, nonfinite = [], None, -math.inf, 0, 0, None
    init_state = clf.trainable_state()  # what a run that diverges in its first epoch falls back to
    bar = tqdm(total=total, desc=f"{method}", disable=not progress, leave=False)
    try:
        for epoch in range(1, epochs + 1):
            losses, step, nonfinite, t_epoch = _train_epoch(clf, batches, fixed_text, text_features, opt, sched,
                                                            bar, epoch, step, amp)
            if nonfinite is not None:
                log(f"{method}: training diverged ({nonfinite['what']} not finite at epoch {epoch}, "
                    f"step {step}, lr {nonfinite['lr']:g}); stopped, keeping the best state so far")
                break
            best_acc, best_epoch, best_state = _evaluate_epoch(
                clf, validate, opt, bar, history, epoch, losses, t_epoch, val_split is None,
                (best_acc, best_epoch, best_state))
    finally:
        bar.close()
    if best_state is None:  # diverged before the first epoch ended: the initial state, validated
        clf.load_trainable_state(init_state)
        best_state, best_acc, best_epoch = init_state, validate(), 0
    clf.load_trainable_state(best_state)
    clf.eval()
    return FinetuneResult(
        classifier=clf, best_val_acc=float(best_acc), best_epoch=best_epoch, history=history,
        train_seconds=time.perf_counter() - t0, peak_memory_mb=_peak_memory_mb(dev),
        trainable_params=clf.trainable_parameter_count(), steps=step, method=method, options=opts,
        hp=hp, seed=seed, base_model=bundle.name, base_pretrained=bundle.pretrained,
        cached_features=cached, nonfinite=nonfinite)


# ----------------------------------------------------------------------------- runs on disk
STATE_FILE = RunId.STATE
META_FILE = RunId.META


def save_run(result: FinetuneResult, run_dir: Path, meta: dict | None = None) -> Path:
    """Write ``trainable.safetensors`` (trainable tensors only) and ``meta.json``, each atomically.

    ``meta.json`` = ``meta`` (the caller's: task, profile, ...) updated with the result's summary
    (method, options, hp, seed, history, ...) and the state file's size.  Neither file marks a run
    as complete: the pipeline writes the run's marker (:attr:`lib.paths.RunId.MARKER`) last.
    """
    run_dir = Path(run_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in result.classifier.trainable_state().items()}
    # one metadata key: safetensors stores a dict's keys in arbitrary order, which would make the
    # bytes of identical runs differ
    save_safetensors(run_dir / STATE_FILE, state,
                     metadata={"run": json.dumps({"method": result.method, "options": result.options},
                                                 sort_keys=True)})
    info = {**(meta or {}), **result.summary(), "state_bytes": (run_dir / STATE_FILE).stat().st_size}
    write_json(run_dir / META_FILE, info, indent=2, sort_keys=True, safe=True, default=None)
    return run_dir


def load_meta(run_dir: Path) -> dict:
    path = Path(run_dir) / META_FILE
    meta = read_json(path)
    if meta is None:
        raise FileNotFoundError(f"{path} is missing or damaged: {run_dir} is not a complete fine-tuning run "
                                f"(rerun its fine-tuning unit, e.g. `make finetune`, or delete the folder)")
    return meta


def load_run(bundle, run_dir: Path) -> M.ClipClassifier:
    """Rebuild a run's classifier on ``bundle.model`` (its base model) from ``run_dir``."""
    run_dir = Path(run_dir)
    meta = load_meta(run_dir)
    state_path = run_dir / STATE_FILE
    if not state_path.exists() or state_path.stat().st_size != meta.get("state_bytes", state_path.stat().st_size):
        raise FileNotFoundError(f"{state_path} is missing or truncated (meta.json recorded "
                                f"{meta.get('state_bytes')} bytes): delete {run_dir} and rerun its "
                                f"fine-tuning unit (make finetune)")
    for key in ("method", "options"):
        if key not in meta:
            raise ConfigError(f"{run_dir / META_FILE} has no {key!r}; not written by lib.train.save_run")
    if meta.get("base_model") and meta["base_model"] != bundle.name:
        raise ConfigError(f"run {run_dir} was fine-tuned from model {meta['base_model']!r}, "
                          f"not {bundle.name!r}")
    clf = M.build(bundle.model, meta["method"], meta["options"])
    state = load_file(str(state_path), device=str(bundle.device))
    try:
        clf.load_trainable_state(state)
    except ConfigError as exc:
        raise ConfigError(f"run {run_dir}: {exc}") from exc
    clf.meta = meta
    clf.eval()
    return clf
