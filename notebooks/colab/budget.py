"""The colab profile's time on a free Colab T4: the arithmetic of docs/colab.md, from the profile's sizes.

    python notebooks/colab/budget.py              # the estimate (Markdown tables), from MEASURED below
    python notebooks/colab/budget.py --measure    # measure the FLOPs again (~5 min on 2 CPU cores)

FLOPs are measured with ``torch.utils.flop_counter.FlopCounterMode`` on ``ViT-B-32-quickgelu`` (random
weights, CPU, a batch of 32 images at 224 px and 10 prompts of 77 tokens): the image forward pass with
autograd on (under ``no_grad``, ``nn.MultiheadAttention``'s fused fast path is invisible to the counter:
6.0 instead of 8.7 GFLOPs per image, though the GPU does the same work), one training step of each
method with and without the text side, and the text forward pass. Per image / per prompt:

* ``image_fwd``: one image through the image tower; ``text_fwd``: one prompt through the text tower;
* ``image_train[m]``: forward + backward of one image for method ``m`` (``full`` also computes the
  weight gradients, the PEFT methods only the activation gradients and their few parameters');
* ``text_train[m]``: the same for one prompt (every method here trains both towers, so the class
  prompts are encoded again, with gradients, at every step).

Steps and images per stage come from the profile (``data.shots``, ``val_fraction``,
``max_test_per_domain``, the official split sizes each task declares in ``SIZES``, epochs, batch size,
the methods' learning-rate grids); the T4's time is FLOPs / (peak x utilisation); the CPU's time is
images x the preprocessing time measured here per image kind, over the DataLoader workers; a stage
takes the longer of the two (the DataLoader overlaps them).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Measured here, 2026-12-05: torch 2.14.1 CPU, FlopCounterMode, batch 32 images + 10 prompts (GFLOPs).
MEASURED = {
    "image_fwd_batch32": 279.215,          # with autograd on (no fast path): 8.73 per image
    "text_fwd_prompts10": 58.138,          # 5.81 per prompt
    "train_step": {"full": 1004.662, "lora": 748.805, "bitfit": 667.308, "aclip": 742.916},
    "train_step_image_only": {"full": 888.385, "lora": 676.136, "bitfit": 609.170, "aclip": 671.455},
}
# Activations a training step keeps for the backward pass (MiB; saved tensors, deduplicated by storage,
# measured here under bf16 autocast on the CPU, the stand-in of the T4's fp16), and the T4's memory.
ACTIVATIONS_MIB = {"full": {"image": 60.0, "prompt": 29.1}, "lora": {"image": 53.9, "prompt": 24.5}}
STATE_GIB = {"full": 0.56 + 0.56 + 1.13, "lora": 0.56 + 0.57 + 0.01}   # base model, run copy, grads + momentum
T4_GIB = 15.0


def step_memory_gib(prompts: int, batch: int, chunk: int | None, method: str = "full") -> float:
    """Peak memory of one training step (GiB): the state, the batch's image activations and the prompts'
    (all of them, or one checkpointed chunk)."""
    a = ACTIVATIONS_MIB[method]
    held = min(prompts, chunk) if chunk else prompts
    return STATE_GIB[method] + (batch * a["image"] + held * a["prompt"]) / 1024


# Preprocessing (decode + open_clip's Resize(224, bicubic) / CenterCrop / ToTensor / Normalize), ms per
# image on one core of this machine (Intel Xeon, shared with another job: load ~6 on 2 cores, so slow).
PREPROCESS_MS = {"png_small": 1.7, "png96": 2.4, "jpg64": 2.0, "ppm": 1.6, "jpg_500": 5.9, "png448": 15.8}
KIND = {("mnist", "mnist"): "png_small", ("mnist", "usps"): "png_small", ("mnist", "svhn"): "png_small",
        ("cifar10", "cifar10"): "png_small", ("cifar10", "stl10"): "png96", ("cifar10", "cifar10_1"): "png_small",
        ("eurosat_fs", "eurosat_fs"): "jpg64", ("gtsrb", "gtsrb"): "ppm", ("dtd", "dtd"): "jpg_500",
        ("flowers102", "flowers102"): "jpg_500", ("pets", "pets"): "jpg_500",
        ("rendered_sst2", "rendered_sst2"): "png448"}
# The T4 (NVIDIA's data sheet): 65 TFLOPS fp16 with tensor cores (mixed precision). Assumed utilisation.
T4_PEAK_TFLOPS = 65.0
UTILISATION = 0.25
CPU_WORKERS = 1.5          # Colab's 2 vCPUs: 2 DataLoader workers, minus the main process's share
DOWNLOAD_MB_S = 20.0       # assumed bandwidth of a Colab VM to the dataset hosts
STARTUP_S = 12.0           # per process Make starts (python, torch, CUDA, the model from the hub cache); assumed
FIXED_MIN = {"install (pip, clone)": 2.0, "OpenAI weights (605 MB from the HF hub)": 0.5,
             "unpack archives, write PNGs": 2.0}


def per_unit(measured=MEASURED) -> dict:
    """GFLOPs per image / prompt: image_fwd, text_fwd, image_train[m], text_train[m]."""
    img_f = measured["image_fwd_batch32"] / 32
    txt_f = measured["text_fwd_prompts10"] / 10
    out = {"image_fwd": img_f, "text_fwd": txt_f, "image_train": {}, "text_train": {}}
    for m, total in measured["train_step"].items():
        img_only = measured["train_step_image_only"][m]
        out["image_train"][m] = (img_only - measured["text_fwd_prompts10"]) / 32
        out["text_train"][m] = (total - img_only + measured["text_fwd_prompts10"]) / 10
    return out


def sizes(profile: str = "colab") -> dict:
    """Per task: classes, prompts, train / val images (few-shot rule) and test images per domain."""
    from lib import config
    from lib.real_data.source import TASKS, RealSource
    src = RealSource(config.load_profile(profile))
    out = {}
    for name in src.task_names:
        t = TASKS[name]
        k, n_tpl = len(t.classnames()), len(t.templates)
        per_class_train = t.SIZES[(t.id_domain, "train")] / k
        shots = per_class_train if src.shots is None else min(src.shots, per_class_train)
        n_train = int(round(shots * k))
        if name == "flowers102" and src.shots is not None:     # 10 official train images per class
            n_train = min(src.shots, 10) * k
        n_val = src.val_shots * k
        tests = {d: min(t.SIZES[(d, "test")], src.max_test or 10 ** 9) for d in [t.id_domain, *t.ood_domains]}
        out[name] = {"classes": k, "prompts": k * n_tpl, "train": n_train, "val": n_val, "test": tests}
    return out


def estimate(profile: str = "colab", measured=MEASURED, utilisation: float = UTILISATION) -> dict:
    from lib import config
    from lib.pipeline import finetune
    cfg = config.load_profile(profile)
    hp = config.stage_params("02_finetune", profile)
    epochs, bs = hp["epochs"], hp["batch_size"]
    methods = cfg["grid"]["methods"]
    rates = {m: len(finetune.lr_grid(profile, m)) for m in methods}
    seeds = len(cfg["grid"]["seeds"])
    u = per_unit(measured)
    recompute = u["text_fwd"] if hp.get("text_chunk") else 0.0   # checkpointed prompts: one more forward
    tflops = T4_PEAK_TFLOPS * utilisation
    sz = sizes(profile)
    test_all = sum(n for s in sz.values() for n in s["test"].values())
    cpu_ms = {}   # ms of preprocessing per image of each task's splits (train/val: its ID domain)
    for task, s in sz.items():
        cpu_ms[task] = {d: PREPROCESS_MS[KIND[(task, d)]] for d in s["test"]}
    test_cpu_s = sum(n * cpu_ms[t][d] for t, s in sz.items() for d, n in s["test"].items()) / 1000

    rows, steps = [], 0
    # zero-shot: every test image once (the evaluation stage reuses these base embeddings)
    zs_gflop = test_all * u["image_fwd"] + sum(s["prompts"] for s in sz.values()) * u["text_fwd"]
    rows.append(("01 zero-shot", test_all, zs_gflop, test_cpu_s))
    # fine-tuning
    ft_gflop, ft_cpu, ft_images = 0.0, 0.0, 0
    for task, s in sz.items():
        id_ms = cpu_ms[task][next(iter(s["test"]))]
        spe = math.ceil(s["train"] / bs)
        for m in methods:
            runs = rates[m] + (seeds - 1)       # the sweep (seed 0 at each rate), then the other seeds
            if m == "clip_adapter":              # frozen backbone: features encoded once per run
                g = (s["train"] + s["val"]) * u["image_fwd"] + s["prompts"] * u["text_fwd"]
                imgs = s["train"] + s["val"]
            else:
                g = epochs * (s["train"] * u["image_train"][m] + spe * s["prompts"] * (u["text_train"][m] + recompute)
                              + s["val"] * u["image_fwd"] + s["prompts"] * u["text_fwd"])
                imgs = epochs * (s["train"] + s["val"])
                steps += runs * epochs * spe
            ft_gflop += runs * g
            ft_images += runs * imgs
            ft_cpu += runs * imgs * id_ms / 1000
    rows.append(("02 fine-tuning", ft_images, ft_gflop, ft_cpu))
    # evaluation: every (task, method) run on every test split of every task; the image tower changed
    # for every method but CLIP-Adapter, whose base features are encoded once (cached)
    changed = [m for m in methods if m != "clip_adapter"]
    n_eval = len(sz) * len(changed) * seeds + (1 if "clip_adapter" in methods else 0)
    ev_gflop = n_eval * test_all * u["image_fwd"]
    rows.append(("03 evaluation", n_eval * test_all, ev_gflop, n_eval * test_cpu_s))

    table = []
    for stage, images, gflop, cpu_s in rows:
        gpu_min = gflop / (tflops * 1000) / 60
        cpu_min = cpu_s / CPU_WORKERS / 60
        table.append({"stage": stage, "images": images, "pflop": gflop / 1e6, "gpu_min": gpu_min,
                      "cpu_min": cpu_min, "min": max(gpu_min, cpu_min)})
    download_mb = sum(r.size_mb for r in _resources(profile))
    # processes: 00, 01, one notebook per task, the aggregate, one evaluation job per task (every method), 03, 04
    n_proc = 2 + len(sz) + 1 + len(sz) + 2
    fixed = dict(FIXED_MIN, **{f"downloads ({download_mb / 1024:.1f} GB at {DOWNLOAD_MB_S:.0f} MB/s)":
                               download_mb / DOWNLOAD_MB_S / 60,
                               f"process starts ({n_proc} x {STARTUP_S:.0f} s, JOBS=1)": n_proc * STARTUP_S / 60})
    total = sum(r["min"] for r in table) + sum(fixed.values())
    worst = max(sz, key=lambda t: sz[t]["prompts"])
    memory = {"task": worst, "prompts": sz[worst]["prompts"],
              "without_chunks": step_memory_gib(sz[worst]["prompts"], bs, None),
              "with_chunks": step_memory_gib(sz[worst]["prompts"], bs, hp.get("text_chunk"))}
    return {"sizes": sz, "per_unit": u, "table": table, "fixed": fixed, "total_min": total, "memory": memory,
            "tflops": tflops, "epochs": epochs, "batch_size": bs, "rates": rates, "seeds": seeds,
            "train_steps": steps, "test_images": test_all, "eval_runs": n_eval}


def _resources(profile: str):
    from lib.real_data.download import profile_resources
    return profile_resources(profile)[1]


def markdown(est: dict) -> str:
    u = est["per_unit"]
    lines = ["| per image / prompt (GFLOPs) | full | lora | bitfit | aclip |", "|---|---|---|---|---|"]
    lines.append("| image forward + backward | " + " | ".join(f"{u['image_train'][m]:.2f}" for m in
                                                                ("full", "lora", "bitfit", "aclip")) + " |")
    lines.append("| prompt forward + backward | " + " | ".join(f"{u['text_train'][m]:.2f}" for m in
                                                                 ("full", "lora", "bitfit", "aclip")) + " |")
    lines.append(f"\nforward only: {u['image_fwd']:.2f} GFLOPs per image, {u['text_fwd']:.2f} per prompt\n")
    lines += ["| task | classes | prompts | train | val | test images per domain |", "|---|---|---|---|---|---|"]
    for t, s in est["sizes"].items():
        lines.append(f"| {t} | {s['classes']} | {s['prompts']} | {s['train']} | {s['val']} | "
                     + ", ".join(f"{d} {n}" for d, n in s["test"].items()) + " |")
    lines += ["", f"| stage | images through the model | PFLOPs | T4 min at {est['tflops']:.1f} TFLOPS | "
                  f"CPU min | min |", "|---|---|---|---|---|---|"]
    for r in est["table"]:
        lines.append(f"| {r['stage']} | {r['images']:,} | {r['pflop']:.2f} | {r['gpu_min']:.1f} | "
                     f"{r['cpu_min']:.1f} | {r['min']:.1f} |")
    for k, v in est["fixed"].items():
        lines.append(f"| {k} | | | | | {v:.1f} |")
    lines.append(f"| **total** | | | | | **{est['total_min']:.0f}** |")
    m = est["memory"]
    lines.append(f"\nlargest step ({m['task']}, {m['prompts']} prompts, full fine-tuning): "
                 f"{m['without_chunks']:.1f} GiB with every prompt's activations, {m['with_chunks']:.1f} GiB "
                 f"with checkpointed chunks (text_chunk); a T4 has {T4_GIB:.0f} GiB")
    return "\n".join(lines)


def measure() -> dict:
    """Measure MEASURED again (random weights, CPU)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lib import methods as M, models
    torch.manual_seed(0)
    model = models.create("ViT-B-32-quickgelu", pretrained=None, device="cpu").model
    import open_clip
    tokenizer = open_clip.get_tokenizer("ViT-B-32-quickgelu")
    x, tokens = torch.randn(32, 3, 224, 224), tokenizer([f'a photo of the number: "{i}".' for i in range(10)])
    y = torch.arange(32) % 10

    def count(fn) -> float:
        with FlopCounterMode(display=False) as fc:
            fn()
        return fc.get_total_flops() / 1e9

    out = {"image_fwd_batch32": count(lambda: model.encode_image(x)),
           "text_fwd_prompts10": count(lambda: model.encode_text(tokens)),
           "train_step": {}, "train_step_image_only": {}}
    for m in ("full", "lora", "bitfit", "aclip"):
        clf = M.build(model, m, M.default_options(m))
        clf.eval()

        def step(text_grad: bool):
            feats = clf.encode_image(x)
            with torch.set_grad_enabled(text_grad):
                text = models.class_text_features(clf, tokens, 10, 1)
            torch.nn.functional.cross_entropy(clf.logit_scale.exp() * feats @ text.T, y).backward()
        out["train_step"][m] = count(lambda: step(True))
        out["train_step_image_only"][m] = count(lambda: step(False))
    return out


if __name__ == "__main__":
    if "--measure" in sys.argv:
        import json
        print(json.dumps(measure(), indent=1))
    else:
        prof = next((a for a in sys.argv[1:] if not a.startswith("-")), "colab")
        print(markdown(estimate(prof)))
