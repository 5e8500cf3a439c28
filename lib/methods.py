"""Fine-tuning methods: one registry, one wrapper class.

``METHODS`` maps a method name to a :class:`MethodSpec` (its option names, an option validator
and a function that configures a :class:`ClipClassifier`); the options' default values live in
``params/methods/<method>.yaml`` only (its ``options``), and :func:`resolve_options` reads them
there, so a library caller that bypasses the pipeline gets the same defaults and messages.  Adding a method is adding
one entry.  :func:`build` deep-copies an open_clip CLIP (the bundle's model is never touched),
freezes every parameter and lets the method unfreeze or add what it trains.

What each method trains, the metric definitions and every deviation from the authors' related
code (mit-ll/IIMM) are written up in ``docs/methods.md``; in short:

``full``          every parameter of the CLIP, ``logit_scale`` included.
``clip_adapter``  bias-free bottleneck MLP ``Linear(d, d/reduction) - ReLU - Linear(d/reduction, d)
                  - ReLU`` (ReLU after both layers, torch's default ``nn.Linear`` init) on the image
                  AND the text output embedding; ``out = normalize(ratio * adapter(x) + (1 - ratio)
                  * x)``.  Backbone frozen.  Computed as ``normalize(x + ratio / (1 - ratio) *
                  adapter(x))`` (for ratio < 1), the same direction, so that a zero adapter returns
                  ``normalize(x)`` bit for bit (``zero_init=True`` reproduces the base logits
                  exactly); the *unnormalised* adapted features are therefore scaled by
                  ``1 / (1 - ratio)``.
``lora``          peft ``LoraConfig(target_parameters=[<every block>.attn.in_proj_weight])`` (not
                  ``target_modules`` on ``nn.MultiheadAttention``: that adapts out_proj too and
                  merges/unmerges around every forward, so frozen weights drift).  Backbone frozen.
                  Two forms (options below): ``targets="qkv"`` (variant ``qkv_r8``) is one
                  low-rank update ``scale * B @ A`` of the whole packed (3d, d) weight, i.e. q, k
                  and v share A; ``targets="qv"`` (the default) is the authors' form: separate rank-``rank``
                  updates of the q and of the v slice, k untouched.
``bitfit``        biases inside the residual blocks of both encoders (attention in/out
                  projections, ln_1/ln_2, MLP); not ln_pre/ln_post/ln_final.
``aclip``         ``attn.in_proj_weight`` of every block of both encoders.  Ablations:
                  ``qkv`` (row-blocks of the packed weight that train), ``blocks`` (first N blocks
                  of each encoder), ``towers`` ("both" | "image" | "text").

LoRA options: ``rank`` (per adapted slice for "qv"), ``targets`` ("qkv" | "qv"), ``scale`` (a
fixed multiplier of ``B @ A``; null -> ``alpha / rank``, and then ``alpha`` must be given;
exactly one of the two is set), ``init`` ("kaiming": peft's default, A Kaiming-uniform; or
"gaussian": A ~ N(0, ``init_std``)); B always starts at zero.  The authors' form is ``{targets:
qv, rank: 16, scale: 0.2, alpha: null, init: gaussian, init_std: 0.02}`` (variant ``authors`` in
``params/methods/lora.yaml``).

How "qv" is built on peft: one ``ParamWrapper`` per ``in_proj_weight`` with peft rank ``2 *
rank``: A is (2r, d) (rows 0..r-1 are A_q, rows r..2r-1 are A_v) and B is (3d, 2r) with a
fixed block structure, ``B = [[B_q, 0], [0, 0], [0, B_v]]``, so that ``B @ A = [B_q A_q; 0;
B_v A_v]``.  The structure is a parametrization of ``lora_B``'s weight, ``W = where(mask,
original, 0)`` (:class:`FixedZeros`): the fixed entries never reach the forward pass and get
an exactly zero gradient; they start at zero, so SGD's weight decay and momentum (and Adam's
moments) keep them zero.  The k rows of the delta are therefore exactly zero at every step.
The trainable-parameter count leaves the fixed entries out (``4 * rank * d`` per block, as for
four separate factors).

How the ``qkv`` subsets keep the other rows bit-identical: with ``qkv="qkv"`` the parameter
``in_proj_weight`` itself trains.  For a proper subset, ``in_proj_weight`` gets a
``torch.nn.utils.parametrize`` parametrization ``W = cat(row-blocks)`` whose selected blocks
(q, k and/or v, each ``(d, d)``) are new trainable ``nn.Parameter``s initialised from ``W0``,
while the other blocks are slices of the frozen original ``W0`` (``requires_grad=False``, not in
the optimizer).  Frozen rows are therefore never touched by gradients, weight decay or momentum
(structurally, not by masking), and the trained rows see exactly the same update rule (weight
decay pulls the *weights* towards 0) as with ``qkv="qkv"``.

The classifier always runs in eval mode: CLIP has no dropout or batch-norm, so train/eval only
switches ``nn.MultiheadAttention``'s inference fast path, which is never used when gradients
flow to attention weights.

Numerical note (torch 2.14, CPU): under ``no_grad`` with the text tower's float causal mask,
``nn.MultiheadAttention`` gives results that differ by ~5e-7 depending on whether
``in_proj_weight.requires_grad`` is set (ATen picks another matmul folding).  Exact comparisons
with a base model must therefore use a base whose parameters are frozen
(``requires_grad_(False)``), as every frozen part here is.
"""
from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from . import config, models, paths
from .config import ConfigError, check_type

__all__ = ["METHODS", "MethodSpec", "ClipClassifier", "FixedZeros", "build", "resolve_options",
           "lora_scale", "variant_options", "param_table", "profile_param_table", "tower_blocks"]


# ----------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class MethodSpec:
    """One fine-tuning method.

    ``options``: the names of its options (their default values: ``options`` in
    ``params/methods/<name>.yaml``, which must name every one).
    ``validate(options) -> options`` gets the defaults merged with the user's options (unknown
    keys are rejected before) and returns them normalised, raising :class:`ConfigError`.
    ``apply(classifier, options)`` unfreezes / adds the trainable parts (everything starts frozen).
    ``text_changes(options)``: can the text features change during training?
    ``backbone_frozen``: only modules outside the CLIP train (features can be cached).
    """
    name: str
    description: str
    options: tuple[str, ...]
    validate: Callable[[dict], dict]
    apply: Callable[["ClipClassifier", dict], None]
    text_changes: Callable[[dict], bool]
    backbone_frozen: bool = False


METHODS: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    METHODS[spec.name] = spec
    return spec


def get_spec(method: str) -> MethodSpec:
    if not isinstance(method, str) or method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; valid methods: "
                          f"{', '.join(METHODS)}")
    return METHODS[method]


def default_options(method: str) -> dict:
    """The method's default options: ``options`` of ``params/methods/<method>.yaml`` (the base file,
    not a profile's overlay), which names every option of the method."""
    spec = get_spec(method)
    f = paths.PARAMS / "methods" / f"{method}.yaml"
    raw = config.read_yaml(f) if f.is_file() else None
    opts = dict((raw or {}).get("options") or {})
    missing = [k for k in spec.options if k not in opts]
    extra = sorted(set(opts) - set(spec.options))
    if missing or extra:
        raise ConfigError(f"params/methods/{method}.yaml: options must give a default for every option of "
                          f"{method!r} ({', '.join(spec.options) or 'none'})"
                          + (f"; missing {missing}" if missing else "") + (f"; unknown {extra}" if extra else ""))
    return opts


def resolve_options(method: str, options: dict | None = None) -> dict:
    """The defaults (:func:`default_options`) merged with ``options``, validated; unknown keys raise
    :class:`ConfigError`."""
    spec = get_spec(method)
    options = dict(options or {})
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        valid = ", ".join(spec.options) if spec.options else "none (this method has no options)"
        raise ConfigError(f"unknown option(s) {unknown} for method {method!r}; valid options: {valid}")
    merged = {**copy.deepcopy(default_options(method)), **options}
    return spec.validate(merged)




def variant_options(method: str, variant: str, options: dict | None, variants: dict | None) -> dict:
    """The options of one (method, variant) as configured: the method's ``options`` overlaid with
    the variant's (``variant="default"``: the options alone). Not yet merged with the defaults."""
    options, variants = options or {}, variants or {}
    if not isinstance(options, dict) or not isinstance(variants, dict):
        raise ConfigError(f"'options' and 'variants' of method {method!r} must be mappings")
    if variant == "default":
        return dict(options)
    if variant not in variants:
        raise ConfigError(f"unknown variant {variant!r} of method {method!r}; valid variants: "
                          f"{', '.join(['default', *variants])}")
    return {**options, **(variants[variant] or {})}


# ----------------------------------------------------------------------------- CLIP structure
def tower_blocks(clip: nn.Module) -> dict[str, nn.ModuleList]:
    """The residual blocks of each encoder: ``{"image": ..., "text": ...}``."""
    try:
        image = clip.visual.transformer.resblocks
    except AttributeError as exc:
        raise ConfigError("these fine-tuning methods need a ViT image tower "
                          "(model.visual.transformer.resblocks); got "
                          f"{type(getattr(clip, 'visual', None)).__name__}") from exc
    text_root = clip.transformer if hasattr(clip, "transformer") else getattr(clip.text, "transformer")
    return {"image": image, "text": text_root.resblocks}


def _mha(block: nn.Module) -> nn.MultiheadAttention:
    attn = block.attn
    base = attn.get_base_layer() if hasattr(attn, "get_base_layer") else attn
    if not isinstance(base, nn.MultiheadAttention):
        raise ConfigError(f"expected nn.MultiheadAttention in the residual blocks, got "
                          f"{type(base).__name__}; open_clip > 3.3 replaced it with its own Attention "
                          f"class: pin open_clip_torch==3.3.*")
    return base


def _prefix(clip: nn.Module, module: nn.Module) -> str:
    for name, mod in clip.named_modules():
        if mod is module:
            return name
    raise RuntimeError("module not found in model")


# ----------------------------------------------------------------------------- modules
class Adapter(nn.Module):
    """CLIP-Adapter's bottleneck MLP (bias-free, ReLU after both layers)."""

    def __init__(self, dim: int, reduction: int, zero_init: bool = False, device=None, dtype=None):
        super().__init__()
        hidden = dim // reduction
        self.fc = nn.Sequential(
            nn.Linear(dim, hidden, bias=False, device=device, dtype=dtype),
            nn.ReLU(),
            nn.Linear(hidden, dim, bias=False, device=device, dtype=dtype),
            nn.ReLU(),
        )
        if zero_init:
            nn.init.zeros_(self.fc[2].weight)

    def forward(self, x):
        return self.fc(x)


class QKVRows(nn.Module):
    """Parametrization ``W = cat(q, k, v)`` of a packed ``in_proj_weight``.

    The row-blocks named in ``rows`` are trainable parameters (initialised from ``W0``); the
    others are the frozen original's own rows, copied unchanged by ``torch.cat``.
    """

    def __init__(self, w0: torch.Tensor, rows: str):
        super().__init__()
        if w0.shape[0] % 3:
            raise ConfigError(f"in_proj_weight has {w0.shape[0]} rows, not a multiple of 3")
        self.rows = rows
        self.e = w0.shape[0] // 3
        for i, c in enumerate("qkv"):
            if c in rows:
                self.register_parameter(c, nn.Parameter(w0[i * self.e:(i + 1) * self.e].detach().clone()))

    def forward(self, w):
        e = self.e
        return torch.cat([getattr(self, c) if c in self.rows else w[i * e:(i + 1) * e]
                          for i, c in enumerate("qkv")], dim=0)


class FixedZeros(nn.Module):
    """Parametrization ``W = where(mask, original, 0)``: the entries outside ``mask`` are fixed zeros.

    They never reach the forward pass and receive an exactly zero gradient.  ``n_fixed`` (a Python
    int, so it also works on the ``meta`` device) is the number of fixed entries.
    """

    def __init__(self, mask: torch.Tensor, device=None):
        super().__init__()
        mask = mask.to(torch.bool)
        self.n_fixed = int(mask.numel() - int(mask.sum()))  # before the move (meta has no values)
        self.register_buffer("mask", mask.to(device if device is not None else mask.device),
                             persistent=False)

    def forward(self, w):
        return torch.where(self.mask, w, torch.zeros((), dtype=w.dtype, device=w.device))


class ClipClassifier(nn.Module):
    """A CLIP configured for one fine-tuning method.

    ``encode_image`` / ``encode_text`` return L2-normalised features (``normalize=False`` gives
    the un-normalised ones) so ``lib.models.class_text_features(classifier, ...)`` works.  For
    feature caching, ``adapt_image`` / ``adapt_text`` map the frozen backbone's raw features to
    the final normalised ones.
    """

    def __init__(self, clip: nn.Module, method: str, options: dict):
        super().__init__()
        self.clip = clip
        self.method = method
        self.options = dict(options)
        self.image_adapter: nn.Module | None = None
        self.text_adapter: nn.Module | None = None
        self.adapter_ratio: float = 0.0
        self.text_changes: bool = True
        self.backbone_frozen: bool = False
        self._merge_backup: dict | None = None

    # ------------------------------------------------------------------ features
    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale

    def _adapt(self, x: torch.Tensor, adapter, normalize: bool) -> torch.Tensor:
        if adapter is not None:
            r = self.adapter_ratio
            a = adapter(x)
            # normalize(r*a + (1-r)*x) == normalize(x + r/(1-r)*a): a zero adapter leaves x as is
            x = a if r >= 1.0 else x + (r / (1.0 - r)) * a
        return F.normalize(x, dim=-1) if normalize else x

    def adapt_image(self, raw: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self._adapt(raw, self.image_adapter, normalize)

    def adapt_text(self, raw: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        return self._adapt(raw, self.text_adapter, normalize)

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        with parametrize.cached():
            return self.adapt_image(self.clip.encode_image(images), normalize)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        with parametrize.cached():
            return self.adapt_text(self.clip.encode_text(tokens), normalize)

    def forward(self, images, tokens):
        """CLIP logits of images against (un-averaged) prompts."""
        return self.logit_scale.exp() * self.encode_image(images) @ self.encode_text(tokens).T

    # ------------------------------------------------------------------ trainable state
    def trainable_names(self) -> list[str]:
        return [n for n, p in self.named_parameters() if p.requires_grad]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Detached copies of the trainable tensors only."""
        return {n: p.detach().clone() for n, p in self.named_parameters() if p.requires_grad}

    def fixed_zero_masks(self) -> dict[str, torch.Tensor]:
        """``{trainable parameter name: mask of its free entries}`` for parameters that carry a
        :class:`FixedZeros` parametrization (LoRA ``targets="qv"``); empty for other methods."""
        out = {}
        for mname, module in self.named_modules():
            plists = getattr(module, "parametrizations", None)
            if not isinstance(plists, nn.ModuleDict):
                continue
            for pname, plist in plists.items():
                masks = [m for m in plist if isinstance(m, FixedZeros)]
                if masks and plist.original.requires_grad:
                    free = masks[0].mask
                    for m in masks[1:]:
                        free = free & m.mask
                    out[f"{mname}.parametrizations.{pname}.original"] = free
        return out

    def _n_fixed_zeros(self, trainable_only: bool) -> int:
        return sum(m.n_fixed for plist in self.modules() if isinstance(plist, parametrize.ParametrizationList)
                   and (plist.original.requires_grad or not trainable_only)
                   for m in plist if isinstance(m, FixedZeros))

    def trainable_parameter_count(self) -> int:
        """Trainable entries; fixed-zero entries (see :class:`FixedZeros`) do not count."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad) - self._n_fixed_zeros(True)

    def total_parameter_count(self) -> int:
        """Every parameter entry (frozen ones, adapters included), fixed-zero entries left out."""
        return sum(p.numel() for p in self.parameters()) - self._n_fixed_zeros(False)

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        """Strict load of a :meth:`trainable_state`: same keys, same shapes, else ConfigError."""
        params = {n: p for n, p in self.named_parameters() if p.requires_grad}
        missing = sorted(set(params) - set(state))
        unexpected = sorted(set(state) - set(params))
        shapes = [f"{k}: saved {tuple(state[k].shape)} vs model {tuple(params[k].shape)}"
                  for k in sorted(set(params) & set(state)) if tuple(state[k].shape) != tuple(params[k].shape)]
        if missing or unexpected or shapes:
            def few(xs):
                return ", ".join(xs[:5]) + (f" ... (+{len(xs) - 5} more)" if len(xs) > 5 else "")
            parts = []
            if missing:
                parts.append(f"missing keys ({len(missing)}): {few(missing)}")
            if unexpected:
                parts.append(f"unexpected keys ({len(unexpected)}): {few(unexpected)}")
            if shapes:
                parts.append(f"shape mismatches ({len(shapes)}): {few(shapes)}")
            raise ConfigError(f"trainable state does not fit method {self.method!r} with options "
                              f"{self.options} (state from another method, options or architecture?): "
                              + "; ".join(parts))
        if self._merge_backup is not None:
            raise RuntimeError("unmerge() the LoRA weights before loading a state")
        bad = [k for k, free in self.fixed_zero_masks().items()
               if torch.count_nonzero(state[k].to(free.device)[~free]) > 0]
        if bad:
            raise ConfigError(f"trainable state has nonzero entries where method {self.method!r} with "
                              f"options {self.options} keeps fixed zeros (in {len(bad)} tensors, e.g. "
                              f"{bad[0]}): the state was saved by another LoRA form (e.g. targets='qkv')")
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(state[k].to(device=p.device, dtype=p.dtype))

    # ------------------------------------------------------------------ LoRA merge
    def _lora_layers(self) -> list[tuple[str, nn.Module]]:
        from peft.tuners.lora.layer import ParamWrapper  # start-up: peft 3.7-4.9 s; grid --make (re-run whenever lib/ changes) imports lib.methods
        return [(n, m) for n, m in self.clip.named_modules() if isinstance(m, ParamWrapper)]

    @property
    def merged(self) -> bool:
        return self._merge_backup is not None

    def merge(self) -> None:
        """Fold the LoRA deltas into the base weights (for inference; no-op for other methods).

        The base weights are backed up so that :meth:`unmerge` restores them bit for bit (peft's
        own unmerge subtracts the delta again, which is not exact in floating point).
        """
        if self._merge_backup is not None:
            return
        backup = {}
        with torch.no_grad():
            for name, layer in self._lora_layers():
                param = layer.get_param()
                backup[name] = param.detach().clone()
                layer.merge()
        self._merge_backup = backup

    def unmerge(self) -> None:
        if self._merge_backup is None:
            return
        with torch.no_grad():
            for name, layer in self._lora_layers():
                layer.get_param().copy_(self._merge_backup[name])
                layer.merged_adapters.clear()
        self._merge_backup = None

    # ------------------------------------------------------------------ inspection
    @torch.no_grad()
    def effective_clip_state(self) -> dict[str, torch.Tensor]:
        """The weights the forward pass uses, under the plain open_clip CLIP's state-dict keys.

        LoRA deltas and A-CLIP row parametrizations are folded in (copies), adapter modules are
        left out.  ``plain = copy.deepcopy(bundle.model); plain.load_state_dict(
        clf.effective_clip_state())`` gives an ordinary open_clip model (not for clip_adapter,
        whose adapters sit outside the CLIP).
        """
        from peft.tuners.lora.layer import ParamWrapper  # start-up: peft 3.7-4.9 s; grid --make (re-run whenever lib/ changes) imports lib.methods
        out = {}
        for name, t in self.clip.state_dict().items():
            if ".lora_A." in name or ".lora_B." in name:
                continue
            if ".parametrizations." in name:
                if not name.endswith(".original"):
                    continue
                mod_path, rest = name.split(".parametrizations.", 1)
                pname = rest[: -len(".original")]
                out[f"{mod_path}.{pname}"] = getattr(self.clip.get_submodule(mod_path), pname).detach().clone()
                continue
            if ".base_layer." in name:
                wpath, pname = name.split(".base_layer.", 1)
                wrapper = self.clip.get_submodule(wpath)
                t = t.detach().clone()
                if isinstance(wrapper, ParamWrapper) and pname == wrapper.parameter_name and not wrapper.merged:
                    for a in wrapper.active_adapters:
                        t = t + wrapper.get_delta_weight(a)
                out[f"{wpath}.{pname}"] = t
                continue
            out[name] = t.detach().clone()
        return out

    def describe(self) -> str:
        return f"{self.method} {json.dumps(self.options, sort_keys=True)}"


# ----------------------------------------------------------------------------- builders
def _freeze_all(clf: ClipClassifier) -> None:
    for p in clf.parameters():
        p.requires_grad_(False)


def _full(clf: ClipClassifier, opts: dict) -> None:
    for p in clf.clip.parameters():
        p.requires_grad_(True)


def _bitfit(clf: ClipClassifier, opts: dict) -> None:
    for blocks in tower_blocks(clf.clip).values():
        for block in blocks:
            for name, p in block.named_parameters():
                if name.rsplit(".", 1)[-1].endswith("bias"):
                    p.requires_grad_(True)


def _select_blocks(clf: ClipClassifier, opts: dict):
    towers = tower_blocks(clf.clip)
    chosen = ["image", "text"] if opts.get("towers", "both") == "both" else [opts["towers"]]
    n = opts.get("blocks")
    deepest = max(len(b) for b in towers.values())
    if n is not None and n > deepest:
        raise ConfigError(f"option blocks={n} exceeds the depth of the encoders "
                          f"({', '.join(f'{k}: {len(v)}' for k, v in towers.items())})")
    for tower in chosen:
        blocks = towers[tower]
        for block in list(blocks)[: (len(blocks) if n is None else min(n, len(blocks)))]:
            yield tower, block


def _aclip(clf: ClipClassifier, opts: dict) -> None:
    for _, block in _select_blocks(clf, opts):
        attn = _mha(block)
        if opts["qkv"] == "qkv":
            attn.in_proj_weight.requires_grad_(True)
        else:
            w0 = attn.in_proj_weight
            parametrize.register_parametrization(attn, "in_proj_weight", QKVRows(w0, opts["qkv"]))
            attn.parametrizations.in_proj_weight.original.requires_grad_(False)


def lora_scale(opts: dict) -> float:
    """The multiplier of ``B @ A``: ``scale`` if set, else ``alpha / rank``."""
    return float(opts["scale"]) if opts["scale"] is not None else opts["alpha"] / opts["rank"]


def _lora(clf: ClipClassifier, opts: dict) -> None:
    from peft import LoraConfig, inject_adapter_in_model  # start-up: peft 3.7-4.9 s; grid --make (re-run whenever lib/ changes) imports lib.methods
    targets = []
    for tower, blocks in tower_blocks(clf.clip).items():
        for block in blocks:
            attn = _mha(block)
            targets.append(f"{_prefix(clf.clip, attn)}.in_proj_weight")
    r = opts["rank"]
    peft_r = 2 * r if opts["targets"] == "qv" else r   # "qv": [A_q; A_v] stacked, B block-structured
    scale = lora_scale(opts)
    # lora_alpha = scale * peft_r makes peft's alpha / r the scale (for the default options exactly
    # today's LoraConfig(r=8, lora_alpha=16.0)); the scaling is also set explicitly below
    cfg = LoraConfig(r=peft_r, lora_alpha=scale * peft_r, target_modules=[], target_parameters=targets,
                     lora_dropout=0.0, bias="none", init_lora_weights=opts["init"] == "kaiming")
    inject_adapter_in_model(cfg, clf.clip)
    _freeze_all(clf)
    for _, layer in clf._lora_layers():
        a, b = layer.lora_A["default"], layer.lora_B["default"]
        layer.scaling["default"] = scale
        if opts["init"] == "gaussian":  # peft's "gaussian" uses std 1 / r: set A ~ N(0, init_std) here
            with torch.no_grad():
                nn.init.normal_(a.weight, mean=0.0, std=opts["init_std"])
                nn.init.zeros_(b.weight)
        if opts["targets"] == "qv":
            out_rows = b.weight.shape[0]
            if out_rows % 3:
                raise ConfigError(f"in_proj_weight has {out_rows} rows, not a multiple of 3")
            e = out_rows // 3
            free = torch.zeros(tuple(b.weight.shape), dtype=torch.bool)
            free[:e, :r] = True          # B_q (q rows, A_q columns)
            free[2 * e:, r:] = True      # B_v (v rows, A_v columns)
            parametrize.register_parametrization(b, "weight", FixedZeros(free, b.weight.device))
    for name, p in clf.clip.named_parameters():
        if ".lora_A." in name or ".lora_B." in name:
            p.requires_grad_(True)


def _clip_adapter(clf: ClipClassifier, opts: dict) -> None:
    dim = int(clf.clip.visual.output_dim)
    if dim // opts["reduction"] < 1:
        raise ConfigError(f"option reduction={opts['reduction']} leaves no hidden units for "
                          f"embedding dimension {dim}")
    ref = clf.clip.logit_scale
    clf.image_adapter = Adapter(dim, opts["reduction"], opts["zero_init"], ref.device, ref.dtype)
    clf.text_adapter = Adapter(dim, opts["reduction"], opts["zero_init"], ref.device, ref.dtype)
    clf.adapter_ratio = float(opts["ratio"])


# ----------------------------------------------------------------------------- validators
def _no_options(opts: dict) -> dict:
    return opts


def _v_adapter(opts: dict) -> dict:
    opts["ratio"] = check_type("ratio", opts["ratio"], float)
    if not 0.0 <= opts["ratio"] <= 1.0:
        raise ConfigError(f"option ratio={opts['ratio']} must lie in [0, 1] (weight of the adapter "
                          f"output; the original uses 0.2)")
    opts["reduction"] = check_type("reduction", opts["reduction"], int, positive=True)
    opts["zero_init"] = check_type("zero_init", opts["zero_init"], bool)
    return opts


def _v_lora(opts: dict) -> dict:
    opts["rank"] = check_type("rank", opts["rank"], int)
    if opts["rank"] < 1:
        raise ConfigError(f"option rank={opts['rank']} must be a positive integer (e.g. 4, 8, 16)")
    opts["targets"] = check_type("targets", opts["targets"], str, choices={"qkv", "qv"})
    if opts["alpha"] is not None:
        opts["alpha"] = check_type("alpha", opts["alpha"], float, positive=True)
    if opts["scale"] is not None:
        opts["scale"] = check_type("scale", opts["scale"], float, positive=True)
    if (opts["alpha"] is None) == (opts["scale"] is None):
        raise ConfigError(f"options alpha={opts['alpha']} and scale={opts['scale']}: give exactly one of "
                          f"them (the multiplier of B @ A is scale, or alpha / rank when scale is null); "
                          f"e.g. the authors' form is scale: 0.2 with alpha: null")
    opts["init"] = check_type("init", opts["init"], str, choices={"kaiming", "gaussian"})
    opts["init_std"] = check_type("init_std", opts["init_std"], float, positive=True)
    return opts


def _v_aclip(opts: dict) -> dict:
    qkv = opts["qkv"]
    if not isinstance(qkv, str) or not qkv or set(qkv) - set("qkv") or len(set(qkv)) != len(qkv):
        raise ConfigError(f"option qkv={qkv!r} must be a non-empty subset of the letters 'qkv' "
                          f"without repeats, e.g. 'q', 'kv', 'qkv'")
    opts["qkv"] = "".join(c for c in "qkv" if c in qkv)
    if opts["blocks"] is not None:
        opts["blocks"] = check_type("blocks", opts["blocks"], int)
        if opts["blocks"] < 1:
            raise ConfigError(f"option blocks={opts['blocks']} must be >= 1 (or null for all blocks)")
    opts["towers"] = check_type("towers", opts["towers"], str, choices={"both", "image", "text"})
    return opts


# the options' default values: params/methods/<method>.yaml (default_options)
register(MethodSpec("full", "every parameter of the CLIP (logit_scale included)", (),
                    _no_options, _full, lambda o: True))
register(MethodSpec("clip_adapter", "bottleneck adapters on the image and text embeddings; "
                    "backbone frozen", ("ratio", "reduction", "zero_init"),
                    _v_adapter, _clip_adapter, lambda o: True, backbone_frozen=True))
register(MethodSpec("lora", "LoRA on attn.in_proj_weight of every block of both encoders",
                    ("rank", "alpha", "targets", "scale", "init", "init_std"), _v_lora, _lora, lambda o: True))
register(MethodSpec("bitfit", "biases inside the residual blocks of both encoders", (),
                    _no_options, _bitfit, lambda o: True))
register(MethodSpec("aclip", "attn.in_proj_weight (packed q,k,v) of the residual blocks",
                    ("qkv", "blocks", "towers"), _v_aclip, _aclip,
                    lambda o: o["towers"] in ("both", "text")))


# ----------------------------------------------------------------------------- public API
def build(model: nn.Module, method: str, options: dict | None = None, *,
          copy_model: bool = True) -> ClipClassifier:
    """Configure ``model`` (a deep copy unless ``copy_model=False``) for ``method``."""
    spec = get_spec(method)
    opts = resolve_options(method, options)
    clip = copy.deepcopy(model) if copy_model else model
    clf = ClipClassifier(clip, method, opts)
    _freeze_all(clf)
    spec.apply(clf, opts)
    clf.text_changes = bool(spec.text_changes(opts))
    clf.backbone_frozen = spec.backbone_frozen
    clf.eval()
    if clf.trainable_parameter_count() == 0 and any(True for _ in clf.parameters()):
        raise ConfigError(f"method {method!r} with options {opts} trains no parameter")
    return clf


def param_table(model_name: str = "ViT-B-32-quickgelu",
                variants: list[tuple[str, dict]] | None = None):
    """Trainable / total parameters per method (default options), without loading weights.

    The architecture is instantiated on the ``meta`` device (no memory, no download).
    ``variants`` adds rows, e.g. ``[("aclip", {"qkv": "q"}), ("aclip", {"blocks": 1})]``.
    Columns: method, options, trainable, total (the classifier's, adapters included),
    base_total (the CLIP's), trainable_pct (100 * trainable / base_total).
    """
    import open_clip  # start-up: 2.1-3.9 s, the same grid --make path
    models.register_configs()
    rows = [(m, {}) for m in METHODS] + list(variants or [])
    out = []
    for method, options in rows:
        with torch.device("meta"):
            clip = open_clip.create_model(model_name, pretrained=None, device="meta")
        base_total = sum(p.numel() for p in clip.parameters())
        clf = build(clip, method, options, copy_model=False)
        trainable = clf.trainable_parameter_count()
        out.append({"method": method, "options": json.dumps(clf.options, sort_keys=True),
                    "trainable": trainable, "total": clf.total_parameter_count(),
                    "base_total": base_total, "trainable_pct": 100.0 * trainable / base_total})
    return pd.DataFrame(out)


def profile_param_table(profile: str = "paper", model_name: str = "ViT-B-32-quickgelu"):
    """:func:`param_table` for every (method, variant) that ``params/methods/`` configures for
    ``profile`` (the default options of each method, then its variants), with a ``variant`` column."""
    rows, names = [], []
    for method in METHODS:
        p = config.method_params(method, profile)
        for v in ["default", *(p.get("variants") or {})]:
            rows.append((method, variant_options(method, v, p.get("options"), p.get("variants"))))
            names.append((method, v))
    out = []
    for (method, variant), (_, options) in zip(names, rows):
        df = param_table(model_name, variants=[(method, options)]).iloc[[-1]]
        out.append(df.assign(variant=variant))
    df = pd.concat(out, ignore_index=True)
    return df[["method", "variant", "options", "trainable", "total", "base_total", "trainable_pct"]]


def _markdown(df) -> str:
    cols = list(df.columns)
    fmt = {"trainable": "{:,}", "total": "{:,}", "base_total": "{:,}", "trainable_pct": "{:.3f}"}
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, r in df.iterrows():
        cells = [fmt.get(c, "{}").format(r[c]) if c in fmt else str(r[c]).replace("|", "\\|") for c in cols]
        cells = [f"`{x}`" if c == "options" else x for c, x in zip(cols, cells)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m lib.methods [profile [model]]: the table in docs/methods.md
    args = sys.argv[1:] + ["paper", "ViT-B-32-quickgelu"][len(sys.argv[1:]):]
    print(_markdown(profile_param_table(args[0], args[1]).drop(columns=["total"])))
