"""Build, save and load CLIP models through open_clip's own code paths.

The embedded profile uses ``ClipMis-Tiny`` (``lib/model_configs``), registered with open_clip so
that ``open_clip.create_model_and_transforms(name, pretrained=<checkpoint path>)`` loads it exactly
as it would load any pretrained file.  The paper profile uses ``ViT-B-32-quickgelu`` with
``pretrained='openai'`` (QuickGELU is part of the model name, so every reload keeps it).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .config import ConfigError
from .io import SHORT, save_safetensors, sha256_hex

MODEL_CONFIGS = Path(__file__).resolve().parent / "model_configs"
_registered = False


def register_configs() -> None:
    global _registered
    if not _registered:
        import open_clip  # start-up: open_clip 2-4 s; lib.models is imported by the grid's validation path
        open_clip.add_model_config(MODEL_CONFIGS)
        _registered = True


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class Bundle:
    """A model with its preprocessing, tokenizer and description."""
    model: torch.nn.Module
    preprocess: object          # open_clip eval transform (PIL -> tensor)
    tokenizer: object
    name: str
    pretrained: str | None
    image_size: int
    mean: tuple
    std: tuple
    device: torch.device


def create(name: str, pretrained: str | None = None, device: str = "auto",
           seed: int | None = None) -> Bundle:
    """Create an open_clip model (random init when ``pretrained`` is None)."""
    import open_clip  # start-up: open_clip 2-4 s; lib.models is imported by the grid's validation path
    register_configs()
    if name not in open_clip.list_models():
        raise ConfigError(f"unknown model {name!r}; registered: ClipMis-Tiny, ViT-B-32-quickgelu, ... "
                          f"(see open_clip.list_models())")
    if seed is not None:
        torch.manual_seed(seed)
    dev = pick_device(device)
    if pretrained and pretrained not in open_clip.list_pretrained_tags_by_model(name):
        p = Path(pretrained)
        if not p.exists():
            raise FileNotFoundError(f"checkpoint {p} does not exist; run the pretraining stage first "
                                    f"(make pretrain PROFILE=...)")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained or None,
                                                                      device=dev)
    except RuntimeError as exc:
        if "size mismatch" in str(exc) or "Missing key" in str(exc) or "Unexpected key" in str(exc):
            raise ConfigError(f"checkpoint {pretrained} does not fit model {name!r} (another "
                              f"architecture?): {str(exc)[:300]}") from exc
        raise
    model.eval()
    tokenizer = open_clip.get_tokenizer(name)
    vcfg = model.visual
    image_size = vcfg.image_size[0] if isinstance(vcfg.image_size, (tuple, list)) else vcfg.image_size
    mean = tuple(getattr(vcfg, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN)
    std = tuple(getattr(vcfg, "image_std", None) or open_clip.OPENAI_DATASET_STD)
    return Bundle(model, preprocess, tokenizer, name, pretrained, int(image_size), mean, std, dev)


def save_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """Atomically save a full state dict as safetensors (loadable by open_clip)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return save_safetensors(path, state)


def state_fingerprint(model: torch.nn.Module) -> str:
    """Content hash of a model's parameters and buffers (each name, then its bytes, sorted by name)."""
    def parts():
        for k, v in sorted(model.state_dict().items()):
            yield k.encode()
            yield v.detach().cpu().contiguous().numpy().tobytes()
    return sha256_hex(parts(), length=SHORT)


# ----------------------------------------------------------------------------- class prompts
def tokenize(bundle: Bundle, texts: list[str]) -> torch.Tensor:
    return bundle.tokenizer(texts).to(bundle.device)


def prompts_for(classnames: list[str], templates: list[str]) -> list[str]:
    """Every prompt, class-major: all templates of class 0, then class 1, ..."""
    return [t.format(c) for c in classnames for t in templates]


def prompt_tokens(bundle: Bundle, classnames: list[str], templates: list[str]) -> torch.Tensor:
    return tokenize(bundle, prompts_for(classnames, templates))


def class_mean(feats: torch.Tensor, n_classes: int, n_templates: int) -> torch.Tensor:
    """Normalised per-prompt features (class-major) -> one normalised feature per class."""
    return torch.nn.functional.normalize(feats.view(n_classes, n_templates, -1).mean(dim=1), dim=-1)


def class_text_features(model, tokens: torch.Tensor, n_classes: int, n_templates: int) -> torch.Tensor:
    """The class-prompt head (as open_clip's ``build_zero_shot_classifier``): encode every prompt
    (normalised), average over templates, normalise. ``model`` is an open_clip CLIP or a
    :class:`lib.methods.ClipClassifier`; the one builder every stage uses."""
    return class_mean(model.encode_text(tokens, normalize=True), n_classes, n_templates)
