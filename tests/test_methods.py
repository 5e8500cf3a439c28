"""lib/methods.py: exactly the intended parameters train, exact identities at init, errors."""
import copy
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

N_CLASSES = 4
TEMPLATES = ["a photo of a {}.", "a drawing of a {}."]
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
    it = iterate(split, bundle, 16, shuffle=True, seed=1)
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
        return "all" if m and key.endswith("attn.in_proj_weight") else None
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
    for method, opts in [("lora", {}), ("lora", {"rank": 2, "alpha": 4}),
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


def test_lora_merged_matches_unmerged(bundle, split):
    clf = _train(M.build(bundle.model, "lora", {"rank": 4}), bundle, split, steps=3, lr=0.5)
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
    assert M.resolve_options("lora", {"alpha": 16}) == {"rank": 8, "alpha": 16.0}
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
    assert df.loc["lora", "trainable"] == 12 * 8 * (768 + 3 * 768) + 12 * 8 * (512 + 3 * 512)
    assert df.loc["bitfit", "trainable"] == 12 * (11 * 768) + 12 * (11 * 512)
    assert df.loc["aclip", "trainable"] == 12 * 3 * 768 * 768 + 12 * 3 * 512 * 512
    for m in ["clip_adapter", "lora", "bitfit", "aclip"]:
        assert 0 < df.loc[m, "trainable_pct"] < 25
