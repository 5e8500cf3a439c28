"""lib/train.py: recipe, best-val checkpoint, determinism, feature caching, runs on disk."""
import json
import math
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lib import methods as M  # noqa: E402
from lib import models  # noqa: E402
from lib import train as T  # noqa: E402
from lib.config import ConfigError  # noqa: E402
from lib.data import Split, iterate  # noqa: E402
from lib.pipeline.finetune import recipe  # noqa: E402

CLASSES = ["cat", "dog", "car", "tree"]
TEMPLATES = ["a photo of a {}.", "a drawing of a {}."]
pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py
RECIPE = recipe("smoke")  # the fine-tuning recipe from params/, its one source
HP = {**RECIPE, "epochs": 2, "batch_size": 16, "lr": 0.05}
HP1 = {**HP, "epochs": 1}


def _split(n, seed, name):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    images = rng.integers(0, 120, (n, 32, 32, 3), dtype=np.uint8)
    images[np.arange(n), :, :, labels % 3] += 120  # a learnable colour cue per class
    return Split(task="t", domain="d", split=name, labels=labels, classnames=CLASSES,
                 templates=TEMPLATES, images=images)


@pytest.fixture(scope="module")
def train_split():
    return _split(64, 0, "train")


@pytest.fixture(scope="module")
def val_split():
    return _split(32, 1, "val")


def _states_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _untimed(history):
    return [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in history]


def _logits(clf, bundle, split):
    x, _ = next(iterate(split, bundle, 32))
    tokens = models.tokenize(bundle, models.prompts_for(split.classnames, split.templates))
    return T.predict_logits(clf, x, tokens, split.n_classes, len(split.templates))


# ----------------------------------------------------------------------------- recipe
def test_result_fields_and_best_checkpoint(bundle, train_split, val_split):
    res = T.finetune(bundle, "aclip", {}, train_split, val_split, {**HP, "epochs": 3}, seed=0,
                     progress=False)
    assert res.steps == 3 * 4 and len(res.history) == 3
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    assert all(set(h) >= {"epoch", "train_loss", "val_acc"} for h in res.history)
    accs = [h["val_acc"] for h in res.history]
    assert res.best_val_acc == max(accs) and res.best_epoch == 1 + accs.index(max(accs))
    # the returned classifier holds the best-validation state
    assert T.accuracy(res.classifier, val_split, bundle) == pytest.approx(res.best_val_acc)
    assert res.trainable_params == res.classifier.trainable_parameter_count() == 8 * 384 * 128
    assert res.train_seconds > 0 and res.peak_memory_mb > 0
    assert res.history[-1]["lr_end"] == pytest.approx(0.0, abs=1e-12)  # cosine to 0
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]  # it learns
    # the bundle's model is untouched (build copies it)
    assert models.state_fingerprint(bundle.model) == models.state_fingerprint(
        models.create("ClipMis-Tiny", device="cpu", seed=0).model)


def test_lr_schedule():
    assert [T.lr_factor(s, 10, 0, False) for s in range(10)] == [1.0] * 10
    assert T.lr_factor(0, 10, 0, True) == 1.0
    assert T.lr_factor(5, 10, 0, True) == pytest.approx(0.5)
    assert [T.lr_factor(s, 10, 4, True) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert T.lr_factor(4, 10, 4, True) == 1.0
    assert T.lr_factor(7, 10, 4, True) == pytest.approx(0.5)
    assert [T.lr_factor(s, 10, 2, False) for s in range(3)] == [0.5, 1.0, 1.0]


def test_text_encoded_once_when_text_frozen(bundle, train_split, val_split):
    res = T.finetune(bundle, "aclip", {"towers": "image"}, train_split, val_split, HP1, seed=0,
                     progress=False)
    assert not res.classifier.text_changes
    assert all(k.startswith("clip.visual.") for k in res.classifier.trainable_state())


def test_without_validation_keeps_last(bundle, train_split):
    res = T.finetune(bundle, "bitfit", {}, train_split, None, HP, seed=0, progress=False)
    assert res.best_epoch == 2 and math.isnan(res.best_val_acc)


# ----------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("method,opts", [("lora", {"rank": 4}), ("full", {}),
                                         ("clip_adapter", {}), ("aclip", {"qkv": "kv"})])
def test_same_seed_same_state(bundle, train_split, val_split, method, opts):
    a = T.finetune(bundle, method, opts, train_split, val_split, HP1, seed=3, progress=False)
    b = T.finetune(bundle, method, opts, train_split, val_split, HP1, seed=3, progress=False)
    assert _states_equal(a.classifier.trainable_state(), b.classifier.trainable_state())
    assert _untimed(a.history) == _untimed(b.history)
    if method == "lora":  # another seed: another init and data order
        c = T.finetune(bundle, method, opts, train_split, val_split, HP1, seed=4, progress=False)
        assert not _states_equal(a.classifier.trainable_state(), c.classifier.trainable_state())


# ----------------------------------------------------------------------------- feature caching
def test_cached_clip_adapter_equals_uncached(bundle, train_split, val_split):
    hp = {**RECIPE, "epochs": 3, "batch_size": 16, "lr": 0.5, "warmup_steps": 2}
    cached = T.finetune(bundle, "clip_adapter", {}, train_split, val_split,
                        {**hp, "cache_features": True}, seed=0, progress=False)
    direct = T.finetune(bundle, "clip_adapter", {}, train_split, val_split,
                        {**hp, "cache_features": False}, seed=0, progress=False)
    assert cached.cached_features and not direct.cached_features
    sa, sb = cached.classifier.trainable_state(), direct.classifier.trainable_state()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], atol=1e-6, rtol=0)
    assert cached.best_epoch == direct.best_epoch
    assert [h["val_acc"] for h in cached.history] == [h["val_acc"] for h in direct.history]
    for h1, h2 in zip(cached.history, direct.history):
        assert h1["train_loss"] == pytest.approx(h2["train_loss"], abs=1e-5)
    # the adapters did train
    torch.manual_seed(0)
    init = M.build(bundle.model, "clip_adapter").trainable_state()
    assert not _states_equal(init, sa)


# ----------------------------------------------------------------------------- failures
def test_diverging_run_stops_and_keeps_its_best_state(bundle, train_split, val_split, tmp_path):
    """A rate that makes the loss non-finite is a result (the run is marked), not a crash: training
    stops, the state is the best one so far (here the initial one, validated as epoch 0)."""
    for method in ("lora", "full"):
        res = T.finetune(bundle, method, {}, train_split, val_split, {**HP, "lr": 1e30}, seed=0, progress=False)
        assert res.nonfinite is not None and res.nonfinite["epoch"] == 1, method
        assert res.best_epoch == 0 and res.history == []
        assert 0.0 <= res.best_val_acc <= 1.0
        state = res.classifier.trainable_state()
        assert all(torch.isfinite(v).all() for v in state.values()), method
        torch.manual_seed(0)
        init = M.build(bundle.model, method).trainable_state()
        assert _states_equal(init, state), f"{method}: a run that diverged in epoch 1 keeps the initial state"
        assert res.summary()["nonfinite"] == res.nonfinite
    ok = T.finetune(bundle, "lora", {}, train_split, val_split, HP, seed=0, progress=False)
    assert ok.nonfinite is None and ok.best_epoch >= 1


@pytest.mark.parametrize("hp,match", [
    ({"epochs": 1, "batch_size": 16}, "missing"),
    ({**HP, "lr": "1e-4"}, "lr"),
    ({**HP, "epochs": 0}, "epochs"),
    ({**HP, "optimizer": "adam"}, "unknown key 'optimizer'"),
    ({**HP, "cosine": "yes"}, "cosine"),
])
def test_bad_hp(bundle, train_split, hp, match):
    with pytest.raises(ConfigError, match=match):
        T.finetune(bundle, "bitfit", {}, train_split, None, hp, seed=0, progress=False)


def test_bad_method_or_options(bundle, train_split):
    with pytest.raises(ConfigError, match="valid methods: full, clip_adapter, lora, bitfit, aclip"):
        T.finetune(bundle, "prompt_tuning", {}, train_split, None, HP, seed=0, progress=False)
    with pytest.raises(ConfigError, match="rank"):
        T.finetune(bundle, "lora", {"rank": 0}, train_split, None, HP, seed=0, progress=False)


# ----------------------------------------------------------------------------- runs on disk
@pytest.mark.parametrize("method,opts", [("lora", {"rank": 4}), ("clip_adapter", {}),
                                         ("aclip", {"qkv": "qv", "blocks": 2}), ("bitfit", {})])
def test_save_and_load_run_reproduces_logits(bundle, train_split, val_split, tmp_path, method, opts):
    res = T.finetune(bundle, method, opts, train_split, val_split, HP1, seed=0, progress=False)
    run = T.save_run(res, tmp_path / "run", {"task": "t", "profile": "test"})
    assert sorted(p.name for p in run.iterdir()) == ["meta.json", "trainable.safetensors"]
    meta = json.loads((run / "meta.json").read_text())
    assert meta["method"] == method and meta["task"] == "t" and meta["base_model"] == "ClipMis-Tiny"
    assert meta["options"] == res.options and meta["best_epoch"] == res.best_epoch
    from safetensors.torch import load_file
    saved = load_file(str(run / "trainable.safetensors"))
    assert set(saved) == set(res.classifier.trainable_names())  # trainable tensors only

    fresh = models.create("ClipMis-Tiny", device="cpu", seed=0)
    loaded = T.load_run(fresh, run)
    assert loaded.meta["seed"] == 0
    assert torch.equal(_logits(loaded, fresh, val_split), _logits(res.classifier, bundle, val_split))


def test_load_run_errors(bundle, train_split, tmp_path):
    with pytest.raises(FileNotFoundError, match="meta.json"):
        T.load_run(bundle, tmp_path / "nothing")
    res = T.finetune(bundle, "lora", {"rank": 2}, train_split, None, {**HP, "epochs": 1}, seed=0,
                     progress=False)
    run = T.save_run(res, tmp_path / "run", {})
    meta = json.loads((run / "meta.json").read_text())

    (run / "meta.json").write_text(json.dumps({**meta, "options": {"rank": 4}}))
    with pytest.raises(ConfigError, match="shape mismatches"):
        T.load_run(bundle, run)
    (run / "meta.json").write_text(json.dumps({**meta, "method": "bitfit", "options": {}}))
    with pytest.raises(ConfigError, match="missing keys.*unexpected keys"):
        T.load_run(bundle, run)
    (run / "meta.json").write_text(json.dumps({**meta, "base_model": "ViT-B-32-quickgelu"}))
    with pytest.raises(ConfigError, match="ViT-B-32-quickgelu"):
        T.load_run(bundle, run)
    (run / "meta.json").write_text(json.dumps(meta))
    T.load_run(bundle, run)  # intact again
    (run / "trainable.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="trainable.safetensors"):
        T.load_run(bundle, run)


def test_file_based_splits(bundle, train_split, tmp_path):
    from PIL import Image
    files = []
    for i, img in enumerate(train_split.images[:32]):
        f = tmp_path / f"{i}.png"
        Image.fromarray(img).save(f)
        files.append(str(f))
    split = Split(task="t", domain="d", split="train", labels=train_split.labels[:32],
                  classnames=CLASSES, templates=TEMPLATES, files=files)
    for method, extra in [("bitfit", {}), ("clip_adapter", {"cache_features": True})]:
        res = T.finetune(bundle, method, {}, split, split, {**HP1, "num_workers": 0, **extra},
                         seed=0, progress=False)
        assert res.steps == 2 and 0 <= res.best_val_acc <= 1
