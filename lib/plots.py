"""Figures, always drawn from saved results (tables, JSON), never from live training state."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from . import paths

PAPER_RC = {"figure.dpi": 110, "savefig.dpi": 200, "font.size": 9, "axes.titlesize": 10,
            "axes.labelsize": 9, "legend.fontsize": 8, "xtick.labelsize": 8, "ytick.labelsize": 8}
METHOD_ORDER = ["full", "clip_adapter", "lora", "bitfit", "aclip"]


def style() -> None:
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", rc=PAPER_RC)


def method_palette(methods) -> dict:
    base = sns.color_palette("colorblind", 10)
    known = {m: base[i] for i, m in enumerate(METHOD_ORDER)}
    extra = [m for m in methods if m not in known]
    return {**known, **{m: base[(5 + i) % 10] for i, m in enumerate(extra)}}


def save(fig, name: str, out_dir: Path) -> list[Path]:
    """Save a figure as PNG and PDF; returns the paths."""
    out_dir = paths.ensure(Path(out_dir))
    out = []
    for ext in ("png", "pdf"):
        p = out_dir / f"{name}.{ext}"
        fig.savefig(p, bbox_inches="tight")
        out.append(p)
    return out


def world_samples(source, per_class: int = 2):
    """A grid of test images: one row per (task, domain), ``per_class`` images of each class."""
    style()
    rows = []
    labels = []
    for name, spec in source.tasks().items():
        for d in spec.domains:
            s = source.load(name, d, "test")
            row = []
            for c in range(len(spec.classnames)):
                idx = np.where(s.labels == c)[0][:per_class]
                row += [s.images[i] for i in idx]
            rows.append(row)
            labels.append(f"{name} / {d}")
    width = max(len(r) for r in rows)
    blank = np.full_like(rows[0][0], 255)
    grid = np.concatenate([np.concatenate(r + [blank] * (width - len(r)), axis=1) for r in rows], axis=0)
    h = rows[0][0].shape[0]
    fig, ax = plt.subplots(figsize=(width * 0.45, len(rows) * 0.5))
    ax.imshow(grid, interpolation="nearest")
    ax.set_yticks([h * i + h / 2 for i in range(len(rows))], labels)
    ax.set_xticks([])
    ax.grid(False)
    ax.set_title(f"Test images, {per_class} per class (classes in task order, left to right)")
    return fig


def pretrain_curves(info: dict):
    style()
    h = pd.DataFrame(info["history"])
    e = pd.DataFrame(info["evals"])
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 2.8))
    axes[0].plot(h["step"], h["loss"], lw=0.6, alpha=0.4, label="per step")
    axes[0].plot(h["step"], h["loss"].rolling(25, min_periods=1).mean(), lw=1.4, label="moving average (25)")
    axes[0].set(xlabel="step", ylabel="contrastive loss (open_clip ClipLoss)", title="Pretraining loss")
    axes[0].legend()
    axes[1].plot(e["epoch"] + 1, e["r1_image_to_text"] * 100, marker="o", label="image → text")
    axes[1].plot(e["epoch"] + 1, e["r1_text_to_image"] * 100, marker="s", label="text → image")
    axes[1].set(xlabel="epoch", ylabel="R@1 (%)", title=f"Held-out retrieval ({info['n_holdout']} pairs)")
    axes[1].legend()
    fig.tight_layout()
    return fig


def zero_shot_overview(df: pd.DataFrame):
    """Zero-shot accuracy, ACS and modality silhouette per task and domain."""
    style()
    d = df.copy()
    d["where"] = d["task"] + "\n" + d["domain"]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    sns.barplot(data=d, x="where", y="zero_shot_acc", hue="domain_kind", ax=axes[0], dodge=False)
    for i, (_, r) in enumerate(d.iterrows()):
        axes[0].plot([i - 0.4, i + 0.4], [r["chance"]] * 2, color="k", lw=1, ls="--")
    axes[0].set(title="Zero-shot top-1 (dashed: chance)", xlabel="", ylabel="accuracy", ylim=(0, 1))
    for ax, col, title in ((axes[1], "acs", "ACS (higher = aligned)"),
                           (axes[2], "silhouette", "modality silhouette ss (higher = misaligned)")):
        sns.scatterplot(data=d, x=col, y="zero_shot_acc", hue="task", style="domain_kind", s=60, ax=ax)
        ax.set(title=title, xlabel=col, ylabel="zero-shot accuracy")
        ax.legend(fontsize=6, loc="best")
    for lab in axes[0].get_xticklabels():
        lab.set_rotation(90)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig
