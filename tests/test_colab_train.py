"""The ``precision`` option of lib/train.py (the colab profile's fp16 on a T4), offline on CPU.

CUDA's fp16 autocast + GradScaler cannot run here; bf16 autocast on the CPU is its stand-in (the
same code path: the forward passes under ``torch.autocast``, parameters and optimizer state fp32).
fp16 on a CPU falls back to fp32, bit for bit, and a profile without the key trains exactly as before.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lib import train as T
from lib.config import ConfigError
from lib.data import Split
from lib.pipeline.finetune import recipe

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py
CLASSES = ["cat", "dog", "car", "tree"]
HP = {**recipe("smoke"), "epochs": 1, "batch_size": 16, "lr": 0.05}


def _split(n, seed, name):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    images = rng.integers(0, 120, (n, 32, 32, 3), dtype=np.uint8)
    images[np.arange(n), :, :, labels % 3] += 120
    return Split(task="t", domain="d", split=name, labels=labels, classnames=CLASSES,
                 templates=["a photo of a {}.", "a drawing of a {}."], images=images)


@pytest.fixture(scope="module")
def splits():
    return _split(16, 0, "train"), _split(8, 1, "val")   # one step per epoch


def _state(res):
    return {k: v.detach().clone() for k, v in res.classifier.trainable_state().items()}


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("method", ["full", "clip_adapter", "lora", "bitfit", "aclip"])
def test_one_step_of_each_method_under_bf16_autocast(bundle, splits, method, monkeypatch):
    """One SGD step per method under bf16 autocast (the CPU stand-in of the T4's fp16): the forward
    passes run in bf16 (seen inside the model), the step changes the trainable parameters, which stay
    fp32 and finite, and the run records its precision."""
    train, val = splits
    seen = []
    real = torch.nn.functional.linear

    def spy(x, w, b=None):
        out = real(x, w, b)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.functional, "linear", spy)
    res = T.finetune(bundle, method, None, train, val, {**HP, "precision": "bf16"}, seed=0, progress=False)
    monkeypatch.undo()
    assert res.steps == 1 and res.nonfinite is None
    assert torch.bfloat16 in seen, "no bf16 linear layer ran: autocast was not active"
    state = res.classifier.trainable_state()
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in state.values())
    torch.manual_seed(0)   # as finetune does before it builds the classifier: its initial state
    init = T.M.build(bundle.model, method, T.M.resolve_options(method, None)).trainable_state()
    assert init.keys() == state.keys()
    assert any(not torch.equal(init[k], state[k]) for k in state), "the step changed nothing"
    assert res.hp["precision"] == "bf16"
    assert 0.0 <= res.best_val_acc <= 1.0


@pytest.mark.parametrize("method", ["lora", "clip_adapter"])
def test_fp32_and_fp16_on_cpu_are_the_old_path_bit_for_bit(bundle, splits, method, capsys):
    """No key, ``fp32`` and ``fp16`` on a CPU train identically (fp16 applies on CUDA only and says
    so); a profile without the key keeps its hyperparameters (and so its run fingerprints)."""
    train, val = splits
    base = T.finetune(bundle, method, None, train, val, HP, seed=3, progress=False)
    assert "precision" not in base.hp
    for p in ("fp32", "fp16"):
        other = T.finetune(bundle, method, None, train, val, {**HP, "precision": p}, seed=3, progress=False)
        assert _equal(_state(base), _state(other)), p
        assert [h["val_acc"] for h in base.history] == [h["val_acc"] for h in other.history]
    assert "precision fp16 applies on CUDA only" in capsys.readouterr().out


def test_amp_modes():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not T.Amp(None, cpu).active and not T.Amp("fp32", cuda).active
    assert not T.Amp("fp16", cpu).active and T.Amp("fp16", cpu).scaler is None
    bf = T.Amp("bf16", cpu)
    assert bf.active and bf.dtype == torch.bfloat16 and bf.scaler is None
    with bf.autocast():
        assert torch.is_autocast_enabled("cpu")
    if torch.cuda.is_available():  # pragma: no cover - no GPU here
        half = T.Amp("fp16", cuda)
        assert half.dtype == torch.float16 and half.scaler is not None


def test_precision_is_validated():
    with pytest.raises(ConfigError, match="precision.*not one of fp32, fp16, bf16"):
        T.resolve_hp({**HP, "precision": "fp8"})
    assert T.resolve_hp({**HP, "precision": "fp16"})["precision"] == "fp16"


def test_existing_profiles_do_not_set_precision_and_colab_does():
    from lib import config
    for profile in config.available_profiles():
        p = config.stage_params("02_finetune", profile)
        assert p.get("precision") == ("fp16" if profile == "colab" else None), profile


@pytest.mark.parametrize("method", ["full", "lora", "aclip"])
def test_text_chunks_same_numbers_less_memory(bundle, splits, method):
    """Prompts encoded in checkpointed chunks train the same parameters (to float rounding: the chunks
    are smaller matrix products) and keep the activations of one chunk only."""
    train, val = splits
    base = T.finetune(bundle, method, None, train, val, HP, seed=3, progress=False)
    ck = T.finetune(bundle, method, None, train, val, {**HP, "text_chunk": 3}, seed=3, progress=False)
    a, b = _state(base), _state(ck)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6) for k in a)
    assert ck.hp["text_chunk"] == 3 and "text_chunk" not in base.hp

    from lib import models
    clf = base.classifier
    tokens = models.prompt_tokens(bundle, train.classnames, train.templates)   # 8 prompts

    def saved(fn) -> int:
        n = [0]

        def pack(t):
            n[0] += t.numel() * t.element_size()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn()
        return n[0]
    full = saved(lambda: clf.encode_text(tokens, normalize=True))
    chunked = saved(lambda: T._encode_text_chunked(clf, tokens, 3))
    assert chunked * 5 < full
    one = T._encode_text_chunked(clf, tokens, 3)
    assert torch.allclose(one, clf.encode_text(tokens, normalize=True), atol=1e-6)
    one.sum().backward()                      # the recomputation runs (and matches, or it raises)


def test_colab_profile_chunks_the_prompts():
    from lib import config
    assert config.stage_params("02_finetune", "colab")["text_chunk"] == 64
    for profile in config.available_profiles():
        if profile != "colab":
            assert "text_chunk" not in config.stage_params("02_finetune", profile), profile
