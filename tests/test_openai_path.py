"""The exact ``pretrained='openai'`` path of open_clip 3.3, offline, on a fake hub cache.

open_clip resolves ``ViT-B-32-quickgelu`` + ``openai`` through its pretrained config
(``hf_hub='timm/vit_base_patch32_clip_224.openai/'``, ``quick_gelu=True``):
``download_pretrained -> download_pretrained_from_hf -> hf_hub_download(repo_id=
'timm/vit_base_patch32_clip_224.openai', filename='open_clip_model.safetensors')`` (the
safetensors alternative of ``open_clip_pytorch_model.bin`` is tried first).  Here the hub cache
holds a randomly initialised ViT-B-32-quickgelu written in float16, so the real loading code runs
without network and the weights it loads are known.

huggingface_hub reads HF_HUB_CACHE / HF_HUB_OFFLINE into ``huggingface_hub.constants`` at import
time, so the test sets the environment variables AND patches those module constants
(``hf_hub_download`` reads ``constants.HF_HUB_CACHE`` at call time when ``cache_dir`` is None,
which is what ``lib.models.create`` passes).
"""
from __future__ import annotations

import pytest
import torch

REPO = "timm/vit_base_patch32_clip_224.openai"
FILE = "open_clip_model.safetensors"
REV = "0123456789abcdef0123456789abcdef01234567"
MODEL = "ViT-B-32-quickgelu"


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(1234)
    fake = open_clip.create_model(MODEL, pretrained=None)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in fake.state_dict().items()}
    del fake
    cache = tmp_path / "hub"
    repo_dir = cache / ("models--" + REPO.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(REV)
    snap = repo_dir / "snapshots" / REV
    snap.mkdir(parents=True)
    save_file(state, str(snap / FILE))

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    return {"cache": cache, "file": snap / FILE, "state": state}


@pytest.mark.slow
def test_openai_tag_loads_through_hub_cache(fake_hub, tmp_path, monkeypatch):
    import open_clip
    import open_clip.pretrained as op
    from open_clip.transformer import QuickGELU

    from lib import models

    cfg = op.get_pretrained_cfg(MODEL, "openai")
    assert cfg["hf_hub"] == REPO + "/" and cfg["quick_gelu"] is True

    resolved = []
    original = op.download_pretrained_from_hf

    def spy(model_id, *args, **kwargs):
        path = original(model_id, *args, **kwargs)
        resolved.append((model_id, path))
        return path

    monkeypatch.setattr(op, "download_pretrained_from_hf", spy)
    bundle = models.create(MODEL, pretrained="openai", device="cpu")
    assert resolved and resolved[0][0] == REPO
    assert resolved[0][1] == str((fake_hub["file"]).resolve())

    # the loaded weights are the fake ones (fp16 values, held in fp32)
    loaded = bundle.model.state_dict()
    assert set(loaded) == set(fake_hub["state"])
    for k, v in fake_hub["state"].items():
        assert torch.equal(loaded[k], v.to(loaded[k].dtype)), k

    # QuickGELU in every residual block of both towers, no nn.GELU anywhere
    blocks = list(bundle.model.visual.transformer.resblocks) + list(bundle.model.transformer.resblocks)
    assert len(blocks) == 24
    assert all(isinstance(b.mlp.gelu, QuickGELU) for b in blocks)
    assert not any(isinstance(m, torch.nn.GELU) for m in bundle.model.modules())
    assert bundle.image_size == 224 and bundle.mean == tuple(open_clip.OPENAI_DATASET_MEAN)

    # save -> reload by path: same weights, same activation, identical outputs
    ckpt = models.save_checkpoint(bundle.model, tmp_path / "ckpt" / "model.safetensors")
    again = models.create(MODEL, pretrained=str(ckpt), device="cpu")
    assert models.state_fingerprint(again.model) == models.state_fingerprint(bundle.model)
    assert all(isinstance(b.mlp.gelu, QuickGELU) for b in again.model.visual.transformer.resblocks)
    torch.manual_seed(0)
    images = torch.randn(2, 3, 224, 224)
    tokens = bundle.tokenizer(["a photo of a dog.", "a photo of a cat."])
    with torch.no_grad():
        a_img, b_img = bundle.model.encode_image(images), again.model.encode_image(images)
        a_txt, b_txt = bundle.model.encode_text(tokens), again.model.encode_text(tokens)
    assert torch.equal(a_img, b_img) and torch.equal(a_txt, b_txt)
    assert torch.isfinite(a_img).all()
