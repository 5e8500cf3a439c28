"""Training throughput per method on the tiny model (a script, not a test).

    .venv/bin/python bench/bench_finetune.py

Prints a markdown table: steps/s and images/s of training (second epoch, warm; validation and
set-up excluded) for each method on ClipMis-Tiny with a synthetic 512-image split, then the
CLIP-Adapter feature-cache speed-up, per training step and per whole run (``finetune`` wall time,
set-up, caching and per-epoch validation included).  The per-run speed-up is bounded by about
the number of epochs: a cached run still encodes the images once, an uncached one every epoch.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lib import config, models  # noqa: E402
from lib import train as T  # noqa: E402
from lib.data import Split  # noqa: E402
from lib.pipeline.finetune import lr_grid, recipe  # noqa: E402

CLASSES = ["cat", "dog", "car", "tree", "boat", "bird", "fish", "house"]
TEMPLATES = ["a photo of a {}.", "a drawing of a {}."]
BATCH = 64


def synthetic(n: int, seed: int, split: str) -> Split:
    rng = np.random.default_rng(seed)
    return Split(task="bench", domain="synthetic", split=split,
                 labels=np.arange(n) % len(CLASSES), classnames=CLASSES, templates=TEMPLATES,
                 images=rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8))


def main() -> None:
    # BENCH_THREADS (default 1): torch intra-op threads. The tiny model's ops are too small to
    # gain from threads, and with other processes on the 2 cores, 2 OpenMP threads ran ~10x slower.
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    t_start = time.perf_counter()
    bundle = models.create("ClipMis-Tiny", device="auto", seed=0)
    train, val = synthetic(512, 0, "train"), synthetic(128, 1, "val")
    hp = {**recipe("mini"), "epochs": 2, "batch_size": BATCH, "lr": 1e-3}
    steps_per_epoch = -(-len(train) // BATCH)
    configs = [("full", {}, {}), ("clip_adapter", {}, {"cache_features": True}),
               ("clip_adapter", {}, {"cache_features": False}), ("lora", {}, {}),
               ("bitfit", {}, {}), ("aclip", {}, {}), ("aclip", {"qkv": "q"}, {}),
               ("aclip", {"towers": "image"}, {})]
    T.finetune(bundle, "bitfit", {}, synthetic(64, 2, "train"), None,
               {**hp, "epochs": 1}, seed=0, progress=False)  # warm-up
    print(f"ClipMis-Tiny, {len(train)} synthetic 32x32 images, batch {BATCH}, "
          f"{len(CLASSES)} classes x {len(TEMPLATES)} templates, device {bundle.device}, "
          f"torch threads {torch.get_num_threads()}; training time of epoch 2 "
          f"(warm; validation and set-up excluded)\n")
    print("| method | options | cached features | trainable params | steps/s | images/s |")
    print("|---|---|---|---:|---:|---:|")
    per_epoch = {}
    for method, opts, extra in configs:
        res = T.finetune(bundle, method, opts, train, None, {**hp, **extra}, seed=0, progress=False)
        sec = min(h["epoch_seconds"] for h in res.history[1:])
        per_epoch[(method, res.cached_features)] = sec
        print(f"| {method} | {opts or ''} | {'yes' if res.cached_features else 'no'} | "
              f"{res.trainable_params:,} | {steps_per_epoch / sec:,.1f} | {len(train) / sec:,.0f} |")

    step_ratio = per_epoch[("clip_adapter", False)] / per_epoch[("clip_adapter", True)]
    print(f"\nCLIP-Adapter, uncached / cached: per training step {step_ratio:.0f}x. Whole "
          f"finetune() runs (build, feature caching and per-epoch validation on {len(val)} images "
          f"included; fastest of 2 repeats):\n")
    print("| epochs | uncached run s | cached run s | run speed-up |")
    print("|---:|---:|---:|---:|")
    for epochs in (1, 10, 20):
        runs = {}
        for cache in (False, True):
            times = []
            for _ in range(2):
                t0 = time.perf_counter()
                T.finetune(bundle, "clip_adapter", {}, train, val,
                           {**hp, "epochs": epochs, "cache_features": cache}, seed=0, progress=False)
                times.append(time.perf_counter() - t0)
            runs[cache] = min(times)
        print(f"| {epochs} | {runs[False]:.2f} | {runs[True]:.2f} | {runs[False] / runs[True]:.1f}x |")
    mini = config.load_profile("mini")
    e_mini = config.stage_params("02_finetune", "mini")["epochs"]
    n_tr, n_va = mini["world"]["sizes"]["train"], mini["world"]["sizes"]["val"]
    tr_m, va_m = synthetic(n_tr, 3, "train"), synthetic(n_va, 4, "val")
    hp_m = {**recipe("mini"), "lr": lr_grid("mini", "clip_adapter")[-2]}
    runs = {}
    for cache in (False, True):
        t0 = time.perf_counter()
        T.finetune(bundle, "clip_adapter", {}, tr_m, va_m, {**hp_m, "cache_features": cache}, seed=0, progress=False)
        runs[cache] = time.perf_counter() - t0
    print(f"\nAt the default profile's own size (mini: {n_tr} train / {n_va} val images, {e_mini} epochs, batch "
          f"{hp_m['batch_size']}): uncached {runs[False]:.2f} s, cached {runs[True]:.2f} s per run: "
          f"**{runs[False] / runs[True]:.1f}x** (the one-off encoding of the train and val images bounds it)")
    print(f"\n(total bench time {time.perf_counter() - t_start:.0f} s; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs: other processes slow every number)")


if __name__ == "__main__":
    main()
