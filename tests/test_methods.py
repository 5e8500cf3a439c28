"""lib/methods.py: exactly the intended parameters train, exact identities at init, errors."""
import copy
import itertools
import os
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lib import methods as M  # noqa: E402
from lib import models  # noqa: E402
from lib.config import ConfigError  # noqa: E402
from lib.data import Split, iterate  # noqa: E402
from lib.pipeline.finetune import recipe  # noqa: E402

N_CLASSES = 4
TEMPLATES = ["a photo of a {}.", "a drawing of a {}."]
# LoRA as in the authors' code: q and v slices, rank 16 each, fixed scale 0.2, A ~ N(0, 0.02), B = 0
AUTHORS = {"targets": "qv", "rank": 16, "alpha": None, "scale": 0.2, "init": "gaussian", "init_std": 0.02}
TODAY = {"targets": "qkv", "rank": 8, "alpha": 16.0, "scale": None, "init": "kaiming", "init_std": 0.02}
pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.fixture(scope="module")
def split():
    rng = np.random.default_rng(0)
    return Split(task="t", domain="d", split="train", labels=np.arange(64) % N_CLASSES,
                 classnames=["cat", "dog", "car", "tree"], templates=TEMPLATES,
                 images=rng.integers(0, 255, (64, 32, 32, 3), dtype=np.uint8))


def _tokens(bundle, split):
    return models.tokenize(bundle, models.prompts_for(split.classnames, split.templates))


def _logits(model_or_clf, images, tokens):
    with torch.no_grad():
        text = models.class_text_features(model_or_clf, tokens, N_CLASSES, len(TEMPLATES))
        img = model_or_clf.encode_image(images, normalize=True)
        return model_or_clf.logit_scale.exp() * img @ text.T


def _frozen(model):
    """The base model with frozen parameters (see the numerical note in lib/methods.py)."""
    m = copy.deepcopy(model)
    m.requires_grad_(False)
    return m.eval()


def _train(clf, bundle, split, steps=3, lr=0.05, wd=1e-4):
    """A few SGD steps (momentum, weight decay) with the class-prompt head."""
    opt = torch.optim.SGD([p for p in clf.parameters() if p.requires_grad], lr=lr, momentum=0.9,
                          weight_decay=wd)
    tokens = _tokens(bundle, split)
    it = itertools.chain.from_iterable(iterate(split, bundle, 16, shuffle=True, seed=1 + e) for e in range(steps))
    for _ in range(steps):
        x, y = next(it)
        text = models.class_text_features(clf, tokens, N_CLASSES, len(TEMPLATES))
        loss = F.cross_entropy(clf.logit_scale.exp() * clf.encode_image(x) @ text.T, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return clf


# ----------------------------------------------------------------------------- what changes
BLOCK = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.")

CASES = [
    ("full", {}),
    ("bitfit", {}),
    ("lora", {}),
    ("lora", AUTHORS),
    ("lora", {"targets": "qv", "rank": 2}),
    ("lora", {"init": "gaussian", "rank": 4, "alpha": None, "scale": 0.5}),
    ("clip_adapter", {}),
    ("aclip", {}),
    *[("aclip", {"qkv": q}) for q in ["q", "k", "v", "qk", "kv", "qv"]],
    ("aclip", {"blocks": 1}),
    ("aclip", {"towers": "image"}),
    ("aclip", {"towers": "text"}),
    ("aclip", {"qkv": "v", "blocks": 2, "towers": "text"}),
]


def _expected(method, opts, key):
    """Rows of an open_clip key that must change: None (none), "all", or a set of q/k/v."""
    m = BLOCK.match(key)
    if method == "full":
        return "all"
    if method == "bitfit":
        return "all" if m and key.endswith("bias") else None
    if method == "lora":
        if not (m and key.endswith("attn.in_proj_weight")):
            return None
        return set("qv") if opts.get("targets") == "qv" else "all"
    if method == "aclip":
        if not (m and key.endswith("attn.in_proj_weight")):
            return None
        tower = "image" if m.group(1) else "text"
        if opts.get("towers", "both") not in ("both", tower):
            return None
        if opts.get("blocks") is not None and int(m.group(2)) >= opts["blocks"]:
            return None
        return set(opts.get("qkv", "qkv"))
    return None


@pytest.mark.parametrize("method,opts", CASES, ids=[f"{m}-{o}" for m, o in CASES])
def test_exactly_intended_parameters_change(bundle, split, method, opts):
    base_before = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    clf = M.build(bundle.model, method, opts)
    raw_before = {k: v.clone() for k, v in clf.state_dict().items()}
    trainable = set(clf.trainable_names())
    eff_before = clf.effective_clip_state()
    assert eff_before.keys() == base_before.keys()
    for k in base_before:
        assert torch.equal(eff_before[k], base_before[k]), k

    _train(clf, bundle, split)

    # the classifier's own tensors: trainable ones changed, all others bit-identical
    raw_after = clf.state_dict()
    assert raw_after.keys() == raw_before.keys()
    for k, v in raw_after.items():
        if k in trainable:
            assert not torch.equal(v, raw_before[k]), f"trainable {k} did not change"
        else:
            assert torch.equal(v, raw_before[k]), f"frozen {k} changed"

    # the weights the CLIP uses, under open_clip's keys
    eff_after = clf.effective_clip_state()
    n_changed = 0
    for k, before in base_before.items():
        after, want = eff_after[k], _expected(method, opts, k)
        if want is None:
            assert torch.equal(after, before), f"{k} changed"
        elif want == "all":
            assert not torch.equal(after, before), f"{k} did not change"
            n_changed += 1
        else:
            e = before.shape[0] // 3  # row-block size of the packed in_proj_weight
            for i, c in enumerate("qkv"):
                rows_a, rows_b = after[i * e:(i + 1) * e], before[i * e:(i + 1) * e]
                if c in want:
                    assert not torch.equal(rows_a, rows_b), f"{k} rows {c} did not change"
                else:
                    assert torch.equal(rows_a, rows_b), f"{k} rows {c} changed"
            n_changed += 1
    if method == "clip_adapter":
        assert n_changed == 0 and all(k.startswith(("image_adapter.", "text_adapter.")) for k in trainable)
    else:
        assert n_changed > 0
    # the bundle's model is never touched
    for k, v in bundle.model.state_dict().items():
        assert torch.equal(v, base_before[k]), f"bundle model {k} changed"


def test_logit_scale_trains_only_with_full(bundle):
    for method in M.METHODS:
        clf = M.build(bundle.model, method)
        assert clf.clip.logit_scale.requires_grad == (method == "full"), method


def test_text_changes_flags(bundle):
    assert M.build(bundle.model, "aclip", {"towers": "image"}).text_changes is False
    for method, opts in [("full", {}), ("bitfit", {}), ("lora", {}), ("clip_adapter", {}),
                         ("aclip", {}), ("aclip", {"towers": "text"})]:
        assert M.build(bundle.model, method, opts).text_changes is True
    assert M.build(bundle.model, "clip_adapter").backbone_frozen
    assert not M.build(bundle.model, "aclip").backbone_frozen


def test_bitfit_excludes_outer_layernorms(bundle):
    names = M.build(bundle.model, "bitfit").trainable_names()
    assert not any(s in n for n in names for s in ("ln_pre", "ln_post", "ln_final"))
    assert all(re.search(r"resblocks\.\d+\..*bias$", n) for n in names)
    # 4+4 blocks x (ln_1, in_proj, out_proj, ln_2, c_fc, c_proj) biases
    assert len(names) == 8 * 6


# ----------------------------------------------------------------------------- exact identities
def test_lora_at_init_and_zero_adapter_reproduce_base_logits(bundle, split):
    x, _ = next(iterate(split, bundle, 16))
    tokens = _tokens(bundle, split)
    base = _logits(_frozen(bundle.model), x, tokens)
    for method, opts in [("lora", {}), ("lora", {**TODAY, "rank": 2, "alpha": 4}), ("lora", AUTHORS),
                         ("lora", {"targets": "qv", "rank": 3}),
                         ("lora", {"init": "gaussian", "init_std": 0.5, "alpha": None, "scale": 3.0}),
                         ("clip_adapter", {"zero_init": True}),
                         ("clip_adapter", {"zero_init": True, "ratio": 0.5})]:
        clf = M.build(bundle.model, method, opts)
        assert torch.equal(_logits(clf, x, tokens), base), (method, opts)
    # every method reproduces the base model before training (except a random-init adapter)
    for method in ["full", "bitfit", "aclip"]:
        clf = M.build(bundle.model, method)
        clf.requires_grad_(False)
        assert torch.equal(_logits(clf, x, tokens), base), method
    clf = M.build(bundle.model, "aclip", {"qkv": "kv"})
    assert torch.equal(_logits(clf, x, tokens), base)


def test_adapter_matches_the_original_formula(bundle, split):
    torch.manual_seed(0)
    clf = M.build(bundle.model, "clip_adapter", {"ratio": 0.3})
    x, _ = next(iterate(split, bundle, 8))
    with torch.no_grad():
        raw = clf.clip.encode_image(x)
        ref = F.normalize(0.3 * clf.image_adapter.fc(raw) + 0.7 * raw, dim=-1)
        torch.testing.assert_close(clf.encode_image(x), ref, atol=1e-6, rtol=0)
    fc = clf.image_adapter.fc
    assert [type(m).__name__ for m in fc] == ["Linear", "ReLU", "Linear", "ReLU"]
    assert fc[0].bias is None and fc[2].bias is None
    assert tuple(fc[0].weight.shape) == (32, 128) and fc[2].weight.abs().sum() > 0


@pytest.mark.parametrize("opts", [{**TODAY, "rank": 4}, AUTHORS], ids=["qkv-r4", "authors"])
def test_lora_merged_matches_unmerged(bundle, split, opts):
    clf = _train(M.build(bundle.model, "lora", opts), bundle, split, steps=3, lr=0.5)
    x, _ = next(iterate(split, bundle, 16))
    tokens = _tokens(bundle, split)
    before = {k: v.clone() for k, v in clf.state_dict().items()}
    unmerged = _logits(clf, x, tokens)
    assert not torch.equal(unmerged, _logits(_frozen(bundle.model), x, tokens))
    clf.merge()
    assert clf.merged
    merged = _logits(clf, x, tokens)
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=0)
    clf.unmerge()
    for k, v in clf.state_dict().items():  # restored bit for bit
        assert torch.equal(v, before[k]), k
    assert torch.equal(_logits(clf, x, tokens), unmerged)
    # the effective weights load into a plain open_clip model with the same logits
    plain = _frozen(bundle.model)
    plain.load_state_dict(clf.effective_clip_state())
    torch.testing.assert_close(_logits(plain, x, tokens), unmerged, atol=1e-5, rtol=0)


def test_trainable_state_roundtrip_and_strictness(bundle, split):
    clf = _train(M.build(bundle.model, "aclip", {"qkv": "q"}), bundle, split, steps=2)
    state = clf.trainable_state()
    assert sum(v.numel() for v in state.values()) == clf.trainable_parameter_count()
    assert all(re.search(r"parametrizations\.in_proj_weight\.0\.q$", k) for k in state)
    fresh = M.build(bundle.model, "aclip", {"qkv": "q"})
    fresh.load_trainable_state(state)
    x, _ = next(iterate(split, bundle, 8))
    tokens = _tokens(bundle, split)
    assert torch.equal(_logits(fresh, x, tokens), _logits(clf, x, tokens))

    with pytest.raises(ConfigError, match="missing keys.*unexpected keys"):
        M.build(bundle.model, "aclip").load_trainable_state(state)
    with pytest.raises(ConfigError, match="shape mismatches"):
        M.build(bundle.model, "lora", {"rank": 8}).load_trainable_state(
            M.build(bundle.model, "lora", {"rank": 4}).trainable_state())
    partial = dict(list(state.items())[:-1])
    with pytest.raises(ConfigError, match="missing keys"):
        fresh.load_trainable_state(partial)


# ----------------------------------------------------------------------------- errors
def test_unknown_method_lists_valid_names(bundle):
    with pytest.raises(ConfigError) as exc:
        M.build(bundle.model, "adapter")
    for name in ["full", "clip_adapter", "lora", "bitfit", "aclip"]:
        assert name in str(exc.value)


@pytest.mark.parametrize("method,opts,match", [
    ("lora", {"rank": 0}, "rank"),
    ("lora", {"rank": -2}, "rank"),
    ("lora", {"rank": 2.5}, "rank"),
    ("lora", {"alpha": 0}, "alpha"),
    ("lora", {"targets": "k"}, "targets"),
    ("lora", {"targets": "vq"}, "targets"),
    ("lora", {"alpha": 16.0}, "give exactly one of them"),
    ("lora", {"scale": None}, "give exactly one of them"),
    ("lora", {"alpha": None, "scale": -0.2}, "'scale' must be > 0"),
    ("lora", {"alpha": None, "scale": "0.2"}, "'scale' must be float"),
    ("lora", {"init": "uniform"}, "'init'='uniform' is not one of"),
    ("lora", {"init_std": 0.0}, "'init_std' must be > 0"),
    ("lora", {"dropout": 0.1}, "valid options: rank, alpha, targets, scale, init, init_std"),
    ("clip_adapter", {"ratio": 1.5}, "ratio"),
    ("clip_adapter", {"ratio": -0.1}, "ratio"),
    ("clip_adapter", {"reduction": 0}, "reduction"),
    ("clip_adapter", {"reduction": 1000}, "reduction"),
    ("aclip", {"qkv": "qx"}, "qkv"),
    ("aclip", {"qkv": ""}, "qkv"),
    ("aclip", {"qkv": "qq"}, "qkv"),
    ("aclip", {"blocks": 0}, "blocks"),
    ("aclip", {"blocks": 99}, "blocks"),
    ("aclip", {"towers": "audio"}, "towers"),
    ("aclip", {"rank": 4}, "valid options: qkv, blocks, towers"),
    ("full", {"ratio": 0.2}, "no options"),
])
def test_bad_options(bundle, method, opts, match):
    with pytest.raises(ConfigError, match=match):
        M.build(bundle.model, method, opts)


def test_options_are_normalised(bundle):
    assert M.resolve_options("aclip", {"qkv": "vq"})["qkv"] == "qv"
    assert M.resolve_options("lora") == AUTHORS  # the default: options of params/methods/lora.yaml
    assert M.resolve_options("lora", {**TODAY, "alpha": 16}) == TODAY
    assert M.resolve_options("lora", {k: v for k, v in AUTHORS.items() if k != "init_std"}) == AUTHORS
    scale = M.resolve_options("lora", {"alpha": None, "scale": 1})["scale"]
    assert scale == 1.0 and isinstance(scale, float)
    assert M.build(bundle.model, "clip_adapter").options == {"ratio": 0.2, "reduction": 4,
                                                              "zero_init": False}


# ----------------------------------------------------------------------------- parameter table
def test_param_table_vit_b32():
    df = M.param_table("ViT-B-32-quickgelu").set_index("method")
    assert list(df.index) == ["full", "clip_adapter", "lora", "bitfit", "aclip"]
    total = 151_277_313  # OpenAI ViT-B/32
    assert (df["base_total"] == total).all()
    assert df.loc["full", "trainable"] == df.loc["full", "total"] == total
    assert df.loc["full", "trainable_pct"] == 100.0
    # hand-computed: widths 768 (image) / 512 (text), 12 + 12 blocks, embed 512
    assert df.loc["clip_adapter", "trainable"] == 2 * (512 * 128 + 128 * 512)
    # the default (params/methods/lora.yaml): the authors' form, rank 16 on the q and the v slice
    assert df.loc["lora", "trainable"] == 12 * 4 * 16 * 768 + 12 * 4 * 16 * 512
    authors = M.param_table("ViT-B-32-quickgelu", variants=[("lora", AUTHORS)]).iloc[-1]
    # four rank-16 factors per block (A_q, B_q, A_v, B_v): 4 * 16 * width
    assert authors["trainable"] == 12 * 4 * 16 * 768 + 12 * 4 * 16 * 512 == 983_040
    assert df.loc["bitfit", "trainable"] == 12 * (11 * 768) + 12 * (11 * 512)
    assert df.loc["aclip", "trainable"] == 12 * 3 * 768 * 768 + 12 * 3 * 512 * 512
    for m in ["clip_adapter", "lora", "bitfit", "aclip"]:
        assert 0 < df.loc[m, "trainable_pct"] < 25


# ----------------------------------------------------------------------------- LoRA forms
def _lora_layers(clf):
    return clf._lora_layers()


def _base_in_proj(bundle):
    return {k: v for k, v in bundle.model.state_dict().items() if k.endswith("attn.in_proj_weight")}


def test_lora_default_is_plain_peft(bundle):
    """The qkv_r8 form builds exactly peft's LoraConfig(r=8, lora_alpha=16) (the first round's form)."""
    from peft import LoraConfig, inject_adapter_in_model
    torch.manual_seed(0)
    clf = M.build(bundle.model, "lora", TODAY)
    assert clf.options == TODAY and not clf.fixed_zero_masks()
    ref = copy.deepcopy(bundle.model)
    targets = [f"{n}.in_proj_weight" for n, m in ref.named_modules() if isinstance(m, torch.nn.MultiheadAttention)]
    torch.manual_seed(0)
    inject_adapter_in_model(LoraConfig(r=8, lora_alpha=16.0, target_modules=[], target_parameters=targets,
                                       lora_dropout=0.0, bias="none"), ref)
    ref_state = {k: v for k, v in ref.state_dict().items() if ".lora_" in k}
    ours = {k[len("clip."):]: v for k, v in clf.state_dict().items() if ".lora_" in k}
    assert ours.keys() == ref_state.keys() and len(ours) == 2 * 8
    assert all(torch.equal(ours[k], ref_state[k]) for k in ours)
    assert all(layer.scaling["default"] == 2.0 for _, layer in _lora_layers(clf))


def test_lora_authors_form_init_scale_and_count(bundle):
    torch.manual_seed(0)
    clf = M.build(bundle.model, "lora", AUTHORS)
    layers = _lora_layers(clf)
    assert len(layers) == 8
    a_all = torch.cat([layer.lora_A["default"].weight.detach().flatten() for _, layer in layers])
    for _, layer in layers:
        assert layer.scaling["default"] == 0.2
        assert tuple(layer.lora_A["default"].weight.shape) == (2 * 16, 128)
        assert torch.count_nonzero(layer.lora_B["default"].weight) == 0
    # A ~ N(0, 0.02): 32,768 draws, the sample std is within ~0.4% of 0.02
    assert abs(float(a_all.std()) - 0.02) < 0.02 * 0.03 and abs(float(a_all.mean())) < 0.02 * 0.03
    # trainable entries: A_q, A_v (r x d) and B_q, B_v (d x r) per block; B's fixed zeros left out
    widths = [w.shape[1] for w in _base_in_proj(bundle).values()]
    assert clf.trainable_parameter_count() == sum(4 * 16 * d for d in widths) == 65_536
    raw = sum(p.numel() for p in clf.parameters() if p.requires_grad)
    assert raw - clf.trainable_parameter_count() == sum(3 * d * 32 - 2 * d * 16 for d in widths)
    today = M.build(bundle.model, "lora", TODAY)
    assert today.trainable_parameter_count() == sum(8 * (d + 3 * d) for d in widths)


def test_lora_qv_k_rows_stay_exactly_zero(bundle, split):
    """Many SGD steps with momentum and strong weight decay: the k rows of every delta and the fixed
    entries of B stay exactly 0; q and v move; each slice's delta is 0.2 * B_slice @ A_slice."""
    clf = _train(M.build(bundle.model, "lora", AUTHORS), bundle, split, steps=6, lr=1.0, wd=0.1)
    masks = clf.fixed_zero_masks()
    assert len(masks) == 8
    params = dict(clf.named_parameters())
    for name, free in masks.items():
        w = params[name].detach()
        assert torch.count_nonzero(w[~free]) == 0, name
        assert torch.count_nonzero(w[free]) == free.sum(), name  # the free entries all trained
    base = _base_in_proj(bundle)
    eff = clf.effective_clip_state()
    for (lname, layer), key in zip(_lora_layers(clf), base):
        assert f"{lname}.in_proj_weight" == key
        e, r = base[key].shape[0] // 3, 16
        delta = eff[key] - base[key]
        assert torch.equal(eff[key][e:2 * e], base[key][e:2 * e]), f"{key}: k rows moved"
        with torch.no_grad():
            d = layer.get_delta_weight("default")
            a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
            assert torch.count_nonzero(d[e:2 * e]) == 0
            assert torch.count_nonzero(d[:e]) > 0 and torch.count_nonzero(d[2 * e:]) > 0
            torch.testing.assert_close(d[:e], 0.2 * b[:e, :r] @ a[:r], atol=1e-7, rtol=1e-5)
            torch.testing.assert_close(d[2 * e:], 0.2 * b[2 * e:, r:] @ a[r:], atol=1e-7, rtol=1e-5)
        torch.testing.assert_close(delta, d, atol=1e-6, rtol=0)


def test_lora_authors_save_load_roundtrip(bundle, split, tmp_path):
    """Through lib.train: fine-tune, save_run, load_run (options via JSON: null alpha) -> same logits."""
    from lib import train as T
    from safetensors.torch import load_file
    res = T.finetune(bundle, "lora", AUTHORS, split, None, {**recipe("smoke"), "epochs": 1, "batch_size": 16, "lr": 0.5},
                     seed=0, progress=False)
    assert res.trainable_params == 65_536 and res.options == AUTHORS
    T.save_run(res, tmp_path, {"task": "t"})
    loaded = T.load_run(bundle, tmp_path)
    assert loaded.options == AUTHORS
    x, _ = next(iterate(split, bundle, 16))
    tokens = _tokens(bundle, split)
    assert torch.equal(_logits(loaded, x, tokens), _logits(res.classifier, x, tokens))
    assert not torch.equal(_logits(loaded, x, tokens), _logits(_frozen(bundle.model), x, tokens))
    # a state whose fixed entries are not zero does not fit this form
    state = load_file(str(tmp_path / T.STATE_FILE))
    name, free = next(iter(loaded.fixed_zero_masks().items()))
    state[name][~free] = 1.0
    with pytest.raises(ConfigError, match="keeps fixed zeros"):
        M.build(bundle.model, "lora", AUTHORS).load_trainable_state(state)
    # the other form's state does not load either (other shapes)
    with pytest.raises(ConfigError, match="shape mismatches"):
        M.build(bundle.model, "lora", TODAY).load_trainable_state(loaded.trainable_state())


def test_lora_per_step_weight_change_authors_vs_today(bundle, split):
    """One SGD step from B = 0 changes W by -lr * s^2 * G A^T A (only B has a gradient), so
    ||dW|| ~ s^2 var(A) sqrt(r (d + r + c)) ||G||: today's form (s = 2, r = 8, Kaiming-uniform A,
    var = 1/(3d)) moves the q and v rows ~450x more than the authors' (s = 0.2, r = 16, var = 4e-4)
    at d = 128 (ViT-B/32: ~76x for d = 768, ~114x for d = 512)."""
    import math

    def first_step_change(opts):
        torch.manual_seed(0)
        clf = _train(M.build(bundle.model, "lora", opts), bundle, split, steps=1, lr=0.1)
        sq = 0.0
        with torch.no_grad():
            for _, layer in _lora_layers(clf):
                d = layer.get_delta_weight("default")
                e = d.shape[0] // 3
                sq += float(d[:e].pow(2).sum() + d[2 * e:].pow(2).sum())
        return math.sqrt(sq)

    ratio = first_step_change(TODAY) / first_step_change(AUTHORS)
    d = 128
    # E||G A^T A||^2 = r var^2 (d + r - 2 + kurtosis) ||G||^2; kurtosis 1.8 (uniform), 3 (normal)
    today = 2.0 ** 2 / (3 * d) * math.sqrt(8 * (d + 8 - 2 + 1.8))
    authors = 0.2 ** 2 * 0.02 ** 2 * math.sqrt(16 * (d + 16 - 2 + 3))
    predicted = today / authors
    assert 300 < predicted < 600
    print(f"first-step change of the q, v rows, today / authors: {ratio:.1f} (predicted {predicted:.1f})")
    assert abs(ratio / predicted - 1) < 0.25, (ratio, predicted)


@pytest.mark.slow
def test_profile_param_table_covers_the_configured_variants():
    from lib import config
    df = M.profile_param_table("paper")
    want = [(m, v) for m in M.METHODS for v in ["default", *(config.method_params(m, "paper").get("variants") or {})]]
    assert list(zip(df["method"], df["variant"])) == want
    lora = df[df["method"] == "lora"].set_index("variant")
    assert {"authors", "qkv_r8"} <= set(lora.index)
    assert lora.loc["authors", "trainable"] == lora.loc["default", "trainable"] == 983_040  # the authors' form
    assert lora.loc["qkv_r8", "trainable"] == 491_520
    # the fixed zeros of B are not parameters: total = base + the four factors
    assert lora.loc["authors", "total"] == lora.loc["authors", "base_total"] + 983_040


def test_lora_variants_in_params_spell_out_both_forms():
    """Both variants are complete forms (independent of the default options line); the study's
    default (params/methods/lora.yaml) is the authors' form since study v2, and it is the library's
    own default too (lib.methods reads the option defaults from that file only)."""
    from lib import config
    from lib.pipeline.finetune import run_options
    for profile in ["smoke", "mini", "paper"]:
        p = config.method_params("lora", profile)
        resolved = {v: M.resolve_options("lora", run_options(profile, "lora", v))
                    for v in ["default", "authors", "qkv_r8"]}
        assert resolved["authors"] == AUTHORS
        assert resolved["qkv_r8"] == TODAY and M.resolve_options("lora") == AUTHORS
        assert resolved["default"] == AUTHORS
        for v in ("authors", "qkv_r8"):
            assert set(p["variants"][v]) == set(M.METHODS["lora"].options), v
