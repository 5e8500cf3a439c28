"""Figures, always drawn from saved results (tables, JSON), never from live training state."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter
import numpy as np
import pandas as pd
import seaborn as sns

from . import paths
from .analysis.tables import HEADROOM, MEASURE_LABELS, METHOD_LABELS, METHOD_ORDER, RAW

PAPER_RC = {"figure.dpi": 110, "savefig.dpi": 200, "font.size": 9, "axes.titlesize": 10,
            "axes.labelsize": 9, "legend.fontsize": 8, "xtick.labelsize": 8, "ytick.labelsize": 8}


def style() -> None:
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", rc=PAPER_RC)


def method_palette(methods) -> dict:
    base = sns.color_palette("colorblind", 10)
    known = {m: base[i] for i, m in enumerate(METHOD_ORDER)}
    extra = [m for m in methods if m not in known]
    return {**known, **{m: base[(5 + i) % 10] for i, m in enumerate(extra)}}


# a shape per method as well as a colour (method_palette): every figure stays readable without colour
# (colour-blind readers, grey-scale print). Filled shapes, so an open version can mark a second kind.
MARKER_CYCLE = ("o", "s", "D", "^", "v", "P", "X", "<", ">", "p", "h", "*")


def method_markers(methods) -> dict:
    """The marker of each method: fixed for the study's methods (METHOD_ORDER), the next free shapes for
    any other (a variant, a new method), in the order given."""
    known = {m: MARKER_CYCLE[i % len(MARKER_CYCLE)] for i, m in enumerate(METHOD_ORDER)}
    extra = [m for m in methods if m not in known]
    return {**known, **{m: MARKER_CYCLE[(len(METHOD_ORDER) + i) % len(MARKER_CYCLE)] for i, m in enumerate(extra)}}


def save(fig, name: str, out_dir: Path) -> list[Path]:
    """Save a figure as PNG and PDF (no creation date: the same figure gives the same bytes)."""
    out_dir = paths.ensure(Path(out_dir))
    out = []
    for ext in ("png", "pdf"):
        p = out_dir / f"{name}.{ext}"
        fig.savefig(p, bbox_inches="tight", metadata={"CreationDate": None} if ext == "pdf" else {"Software": None})
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


def zero_shot_overview(df: pd.DataFrame, max_task_colours: int = 10):
    """Zero-shot accuracy per task and domain (top: a group of bars per task, ID then each shifted
    domain in the table's order, chance dashed), and accuracy against ACS and against the modality
    silhouette ss (bottom), coloured by task when there are at most ``max_task_colours`` tasks, else
    by ID / shifted domain (32 task colours cannot be told apart)."""
    style()
    d = df.copy()
    tasks = list(dict.fromkeys(d["task"]))
    k = d.groupby("task", sort=False).cumcount()            # a domain's place within its task: ID first
    d["domain slot"] = np.where(d["domain_kind"] == "ID", "ID", "shift " + k.astype(str))
    slots = list(dict.fromkeys(d["domain slot"]))
    fig = plt.figure(figsize=(max(10.0, 2.0 + 0.32 * len(tasks) * len(slots) / 3), 6.4))
    grid = fig.add_gridspec(2, 2)
    bars, scatter = fig.add_subplot(grid[0, :]), [fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])]
    w = 0.8 / len(slots)
    x = {t: i for i, t in enumerate(tasks)}
    for j, slot in enumerate(slots):
        g = d[d["domain slot"] == slot]
        bars.bar([x[t] - 0.4 + (j + 0.5) * w for t in g["task"]], g["acc"], width=w, label=slot, color=f"C{j}")
    for t, c in d.groupby("task", sort=False)["chance"].first().items():
        bars.plot([x[t] - 0.45, x[t] + 0.45], [c] * 2, color="k", lw=1, ls="--")
    bars.set_xticks(range(len(tasks)), tasks, rotation=90, fontsize=7 if len(tasks) > 10 else 9)
    bars.set(title="Zero-shot top-1 per task and domain (dashed: chance)", ylabel="accuracy", ylim=(0, 1),
             xlim=(-0.6, len(tasks) - 0.4))
    bars.legend(fontsize=7, ncol=len(slots), loc="upper left")
    hue = "task" if len(tasks) <= max_task_colours else "domain_kind"
    for ax, col, title in ((scatter[0], "acs", "ACS (higher = aligned)"),
                           (scatter[1], "ss", "modality silhouette ss (higher = misaligned)")):
        sns.scatterplot(data=d, x=col, y="acc", hue=hue, style="domain_kind", s=40 if hue == "task" else 30,
                        alpha=1.0 if hue == "task" else 0.7, ax=ax)
        ax.set(title=title, xlabel=col, ylabel="zero-shot accuracy")
        ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    return fig


def finetune_curves(metas: list[dict]):
    """Training loss and validation accuracy per epoch of every run of a fine-tuning unit, one row
    of two panels per method."""
    style()
    methods = list(dict.fromkeys(m["method"] for m in metas)) or [""]
    fig, axes = plt.subplots(len(methods), 2, figsize=(8, 2.4 * len(methods)), squeeze=False)
    for row, method in zip(axes, methods):
        a1, a2 = row
        ms = [m for m in metas if m["method"] == method]
        for i, m in enumerate(ms):
            h = pd.DataFrame(m["history"])
            if h.empty:
                continue
            lab = m.get("label") or f"{m['variant']} seed {m['seed']}"
            lab = lab.removeprefix(f"{m['task']}/{m['method']}").lstrip("/")  # the panel title says it
            mk = MARKER_CYCLE[i % len(MARKER_CYCLE)]   # a shape per run as well as a colour
            a1.plot(h["epoch"], h["train_loss"], marker=mk, ms=3, color=f"C{i % 10}", label=lab)
            a2.plot(h["epoch"], h["val_acc"], marker=mk, ms=3, color=f"C{i % 10}")
        a1.set(xlabel="epoch", ylabel="train loss", title=f"{ms[0]['task']} · {_mlabel(method)}" if ms else "")
        a2.set(xlabel="epoch", ylabel="validation accuracy")
        a1.set_yscale("log")
        for a in (a1, a2):
            a.xaxis.get_major_locator().set_params(integer=True)
        if ms:  # beside the panels: a unit with ablations has ~30 runs, too many to sit inside one
            a2.legend(*a1.get_legend_handles_labels(), fontsize=5, ncol=2 if len(ms) > 12 else 1,
                      loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


def lr_sweep(sweep: pd.DataFrame):
    """Best ID validation accuracy against the learning rate, one panel per method, one line per
    task; the selected rate is a star, a diverged run an x (from ``lr_sweep.csv`` rows)."""
    style()
    df = sweep.dropna(subset=["best_val_acc"])
    methods = _methods_in(df) if len(df) else [""]
    tasks = list(dict.fromkeys(df["task"])) if len(df) else []
    legend_rows = -(-len(tasks) // 8) if len(tasks) > 8 else 0     # the legend below the panels, 8 per row
    fig, axes = plt.subplots(1, len(methods), figsize=(2.6 * len(methods), 2.6 + 0.17 * legend_rows),
                             squeeze=False, sharey=True)
    for ax, method in zip(axes[0], methods):
        g = df[df["method"] == method]
        for i, t in enumerate(tasks):
            h = g[g["task"] == t].sort_values("lr")
            if h.empty:
                continue
            c = f"C{i % 10}"
            ax.plot(h["lr"], 100 * h["best_val_acc"], marker=MARKER_CYCLE[i % len(MARKER_CYCLE)], ms=3, color=c,
                    label=t)
            sel = h[h["selected"].astype(bool)]
            ax.plot(sel["lr"], 100 * sel["best_val_acc"], marker="*", ms=11, color=c, ls="none")
            bad = h[h["nonfinite"].astype(bool)]
            ax.plot(bad["lr"], 100 * bad["best_val_acc"], marker="x", ms=8, color="k", ls="none")
        ax.set(xscale="log", xlabel="learning rate", title=_mlabel(method))
        rates = sorted(g["lr"].unique())
        if 0 < len(rates) <= 6:   # few rates: ticks at the rates tried (a range under a decade otherwise
            ax.set_xticks(rates, [f"{r:g}" for r in rates])   # gets overlapping minor-tick labels)
            ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0][0].set_ylabel("best ID val. accuracy (%)")
    if len(tasks) > 8:   # many tasks: one legend below the panels, in columns (inside a panel it hid the data)
        handles, labels = axes[0][-1].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=8, fontsize=6, frameon=False)
        fig.tight_layout(rect=(0, 0.17 * legend_rows / (2.6 + 0.17 * legend_rows) + 0.01, 1, 1))
        return fig
    if len(tasks) > 1:
        axes[0][-1].legend(fontsize=6, loc="best")
    fig.tight_layout()
    return fig


def sweep_tradeoff(tr: pd.DataFrame):
    """Each method's trade-off along the learning rate: x = CF drop, y = ID gain (points), one line per
    method through its rates in order (marker size grows with the rate; the rate most often selected
    is ringed), from ``sweep_tradeoff.csv`` (means over the tasks that tried each rate)."""
    style()
    methods = _methods_in(tr)
    pal, mks = method_palette(methods), method_markers(methods)
    fig, ax = plt.subplots(figsize=(4.2, 3.7))
    for m in methods:
        g = tr[tr["method"] == m].sort_values("lr")
        x, y = 100 * g["cf_drop"].to_numpy(float), 100 * g["id_gain"].to_numpy(float)
        ax.plot(x, y, color=pal[m], lw=1.0, label=_mlabel(m))
        for k, (xi, yi) in enumerate(zip(x, y)):
            ax.plot([xi], [yi], ls="none", marker=mks[m], color=pal[m], mec="k", mew=0.4, ms=3 + 1.5 * k)
        if len(g) and g["selected"].max() > 0:
            j = int(np.argmax(g["selected"].to_numpy()))
            ax.plot([x[j]], [y[j]], ls="none", marker="o", mfc="none", mec=pal[m], mew=1.2, ms=12)
    ax.axhline(0, color="0.5", lw=0.6)
    ax.axvline(0, color="0.5", lw=0.6)
    ax.set(xlabel="CF drop on the panel (points)", ylabel="ID gain (points)",
           title="Along the learning rate (larger marker = larger rate)")
    ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    return fig


# ============================================================================= study figures
# Drawn only from the tables of ``lib.analysis.compute`` (every number printed on a figure is a
# value of those tables; tests/test_figures_consistency.py checks it). Accuracies in points (x100).
SCHEMA_MARKERS = {"ID": "o", "DG": "^"}
DIFFICULTY_MEASURES = ["ss", "acs", "iimm", "class_ss", "modality_gap"]


def _mlabel(m: str) -> str:
    return METHOD_LABELS.get(m, m)


def _methods_in(df: pd.DataFrame) -> list:
    present = list(dict.fromkeys(df["method"]))
    return [m for m in METHOD_ORDER if m in present] + [m for m in present if m not in METHOD_ORDER]


def _all_runs(df: pd.DataFrame) -> pd.DataFrame:
    """The 'all runs' subset of a table with a ``subset`` column (the table itself otherwise)."""
    if "subset" not in df:
        return df
    return df[df["subset"] == df["subset"].iloc[0]] if len(df) else df


def _err(v, lo, hi, k: float = 100.0):
    """Asymmetric error bar lengths (NaN interval -> no bar)."""
    v, lo, hi = (np.asarray(a, dtype=float) * k for a in (v, lo, hi))
    return np.nan_to_num(np.vstack([v - lo, hi - v]), nan=0.0).clip(min=0)


def _errorbar(ax, x, y, v, lo, hi, horizontal: bool = False, k: float = 100.0, **kw):
    """Error bars only where the interval is finite."""
    x, y, v, lo, hi = (np.atleast_1d(np.asarray(a, dtype=float)) for a in (x, y, v, lo, hi))
    ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return
    e = _err(v[ok], lo[ok], hi[ok], k)
    kw = {"fmt": "none", "ecolor": "k", "elinewidth": 0.9, "capsize": 2.5, **kw}
    if horizontal:
        ax.errorbar(x[ok], y[ok], xerr=e, **kw)
    else:
        ax.errorbar(x[ok], y[ok], yerr=e, **kw)


def rho_text(r) -> str:
    """'ρ = +0.18 [-0.56, +0.79], p = 0.43' from a predictors / forgetting_spearman row."""
    if r is None or not np.isfinite(r["rho"]):
        return "ρ = n/a"
    s = f"ρ = {r['rho']:+.2f}"
    if np.isfinite(r["lo"]) and np.isfinite(r["hi"]):
        s += f" [{r['lo']:+.2f}, {r['hi']:+.2f}]"
    return s + (f", p = {r['p']:.2g}" if np.isfinite(r["p"]) else "")


def _interval_note(df: pd.DataFrame) -> str:
    n = int(df["n_tasks"].min()) if "n_tasks" in df and len(df) else 0
    return f"bars: 95% t interval over {n} tasks" if n >= 3 else "too few tasks for an interval"


def difficulty_vs_gain(points: pd.DataFrame, predictors: pd.DataFrame):
    """Fine-tuning gain vs each zero-shot measure present (ss, ACS, IIMM, class silhouette, modality
    gap) per (task, domain) and method. Titles: Spearman ρ over tasks of the mean gain over methods on
    the ID domain (raw and headroom-normalised gain) with its Fisher-z interval and permutation p (exact up to 8 tasks, Monte Carlo above), read from
    the predictors table."""
    style()
    pts, pred = _all_runs(points), _all_runs(predictors)
    measures = [m for m in DIFFICULTY_MEASURES if m in pts and pts[m].notna().any()]
    methods = _methods_in(pts[pts["method"] != "pooled"])
    pal, mks = method_palette(methods), method_markers(methods)
    fig, axes = plt.subplots(1, len(measures), figsize=(2.6 * len(measures) + 0.6, 3.1), sharey=True, squeeze=False)
    for ax, meas in zip(axes[0], measures):
        per = pts[pts["method"] != "pooled"]
        span = per.groupby(["task", "domain"]).agg(x=(meas, "first"), lo=("gain", "min"), hi=("gain", "max"))
        ax.vlines(span["x"], span["lo"] * 100, span["hi"] * 100, color="0.8", lw=0.8, zorder=1)
        for m in methods:
            for sch in SCHEMA_MARKERS:   # the method's shape: filled on the ID test, open on the shifted (DG) test
                p = per[(per["method"] == m) & (per["schema"] == sch)]
                filled = sch == "ID"
                ax.scatter(p[meas], p["gain"] * 100, marker=mks[m], s=24, alpha=0.9, zorder=3,
                           facecolor=pal[m] if filled else "none", edgecolor="white" if filled else pal[m],
                           linewidth=0.4 if filled else 1.0)
        pool = pts[pts["method"] == "pooled"]
        ax.scatter(pool[meas], pool["gain"] * 100, marker="_", color="k", s=90, lw=1.4, zorder=4)
        lines = [MEASURE_LABELS.get(meas, meas)]
        for form, short in ((RAW, "raw"), (HEADROOM, "headroom")):
            r = pred[(pred["measure"] == meas) & (pred["method"] == "pooled") & (pred["stratum"] == "ID")
                     & (pred["form"] == form)]
            lines.append(f"{short}: {rho_text(r.iloc[0] if len(r) else None)}")
        ax.set_title("\n".join(lines), fontsize=7)
        ax.set_xlabel(f"zero-shot {MEASURE_LABELS.get(meas, meas)}")
        ax.axhline(0, color="0.4", lw=0.6)
    axes[0, 0].set_ylabel("fine-tuning gain (acc. points)")
    handles = [plt.Line2D([], [], ls="", marker=mks[m], color=pal[m], label=_mlabel(m)) for m in methods]
    handles += [plt.Line2D([], [], ls="", marker="o", color="0.3", mfc="0.3" if sch == "ID" else "none",
                           label=f"{sch} test ({'filled' if sch == 'ID' else 'open'})") for sch in SCHEMA_MARKERS]
    handles += [plt.Line2D([], [], ls="", marker="_", color="k", markersize=9, mew=1.4, label="mean over methods")]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles), fontsize=7,
               handletextpad=0.2, columnspacing=0.9, frameon=False)
    fig.suptitle("Zero-shot misalignment vs fine-tuning gain (ρ: Spearman over tasks of the mean gain over methods "
                 "on the ID domain, Fisher-z interval, permutation p; shifted domains: predictors.csv)", fontsize=8)
    fig.tight_layout()
    return fig


def method_bars(head: pd.DataFrame):
    """ID gain, DG gain and CF drop per method (headline table, points) with intervals over tasks."""
    style()
    methods = _methods_in(head)
    pal, mks = method_palette(methods), method_markers(methods)
    s = head.set_index("method").loc[methods]
    fig, axes = plt.subplots(1, 3, figsize=(7.0, 2.5))
    for ax, col, title in ((axes[0], "id_gain", "ID gain"), (axes[1], "dg_gain", "DG gain (shifted domains)"),
                           (axes[2], "cf_drop", "CF drop (forgetting, other tasks)")):
        x = np.arange(len(methods))
        ax.bar(x, s[col], color=[pal[m] for m in methods], width=0.7)
        _errorbar(ax, x, s[col], s[col], s[f"{col}_lo"], s[f"{col}_hi"], k=1.0)
        for xi, m in zip(x, methods):   # the method's shape on its value, as in every other figure
            ax.plot([xi], [s.loc[m, col]], ls="none", marker=mks[m], ms=4.5, mfc=pal[m], mec="k", mew=0.6, zorder=4)
        ax.axhline(0, color="0.3", lw=0.6)
        ax.set_xticks(x, [_mlabel(m) for m in methods], rotation=35, ha="right", rotation_mode="anchor")
        ax.set_title(title, fontsize=9)
        ax.set_xlim(-0.6, len(methods) - 0.4)
    axes[0].set_ylabel("accuracy points")
    fig.suptitle(f"Mean over training tasks ({_interval_note(head)})", fontsize=8, y=0.99)
    fig.tight_layout()
    return fig


def forgetting_vs_ss(points: pd.DataFrame, spearman: pd.DataFrame):
    """CF drop after fine-tuning on a task vs that task's zero-shot ss, one panel per method (bars:
    min-max over seeds); titles: Spearman ρ over tasks with its interval and permutation p (exact up to 8 tasks)."""
    style()
    pts, sp = _all_runs(points), _all_runs(spearman).set_index("method")
    methods = _methods_in(pts)
    pal, mks = method_palette(methods), method_markers(methods)
    fig, axes = plt.subplots(1, len(methods), figsize=(1.6 * len(methods) + 0.6, 2.6), sharey=True, sharex=True,
                             squeeze=False)
    for ax, m in zip(axes[0], methods):
        d = pts[pts["method"] == m].sort_values("ss_zero_shot")
        ax.plot(d["ss_zero_shot"], d["cf_drop"] * 100, color=pal[m], lw=0.8, alpha=0.6)
        ax.plot(d["ss_zero_shot"], d["cf_drop"] * 100, ls="none", marker=mks[m], color=pal[m], ms=4)
        _errorbar(ax, d["ss_zero_shot"], d["cf_drop"] * 100, d["cf_drop"], d["cf_drop_min"], d["cf_drop_max"],
                  ecolor=pal[m], elinewidth=0.8, capsize=2)
        ax.axhline(0, color="0.4", lw=0.6)
        r = sp.loc[m] if m in sp.index else None
        txt = rho_text(r).replace(", p", "\np")
        ax.set_title(f"{_mlabel(m)}\n{txt}", fontsize=7)
        ax.xaxis.set_major_locator(plt.MaxNLocator(3))
    axes[0, 0].set_ylabel("CF drop (acc. points)")
    axes[0, len(methods) // 2].set_xlabel("zero-shot modality ss of the fine-tuned task (ID domain)")
    fig.tight_layout()
    return fig


def alignment_shift(align: pd.DataFrame):
    """ss and ACS before (zero-shot, dashed) and after fine-tuning (dot, interval over tasks) per
    method, on DG data (trained task, shifted domains) and CF data (other tasks)."""
    style()
    t = _all_runs(align)
    methods = _methods_in(t)
    pal, mks = method_palette(methods), method_markers(methods)
    fig, axes = plt.subplots(2, 2, figsize=(7.0, 4.4), sharex=True)
    for i, (meas, ylab) in enumerate((("ss", "modality ss"), ("acs", "ACS"))):
        for j, (sch, title) in enumerate((("DG", "DG data (trained task, shifted domains)"),
                                          ("CF", "CF data (the other tasks)"))):
            ax = axes[i, j]
            d = t[(t["measure"] == meas) & (t["schema"] == sch)].set_index("method")
            for k, m in enumerate(methods):
                if m not in d.index:
                    continue
                z, f = d.loc[m, "zero_shot"], d.loc[m, "finetuned"]
                ax.plot([k - 0.3, k + 0.3], [z, z], color="0.35", ls="--", lw=0.9)
                ax.plot([k, k], [z, f], color=pal[m], lw=1.8, solid_capstyle="butt")
                ax.plot([k], [f], ls="none", marker=mks[m], color=pal[m], ms=5, zorder=3)
                _errorbar(ax, [k], [f], [f], [d.loc[m, "finetuned_lo"]], [d.loc[m, "finetuned_hi"]], k=1.0,
                          ecolor="k", elinewidth=0.8, capsize=2.5, zorder=4)
            ax.set_xticks(range(len(methods)), [_mlabel(m) for m in methods], rotation=30, ha="right",
                          rotation_mode="anchor")
            ax.set_xlim(-0.6, len(methods) - 0.4)
            if i == 0:
                ax.set_title(title, fontsize=9)
            if j == 0:
                ax.set_ylabel(ylab)
            vals = d.reindex(methods)[["zero_shot", "finetuned", "finetuned_lo", "finetuned_hi"]].to_numpy(float)
            vals = vals[np.isfinite(vals)]
            if vals.size:
                lo_, hi_ = vals.min(), vals.max()
                pad = 0.1 * (hi_ - lo_) if hi_ > lo_ else 0.01
                ax.set_ylim(lo_ - pad, hi_ + pad)
    handles = [plt.Line2D([], [], color="0.35", ls="--", label="zero-shot"),
               plt.Line2D([], [], color="0.35", marker="o", ls="-", label="fine-tuned (line: the change; "
                                                                          "shape: the method)")]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"Alignment before → after fine-tuning (mean over tasks; {_interval_note(t)})", fontsize=9)
    fig.tight_layout()
    return fig


def tradeoff(head: pd.DataFrame):
    """The DG-vs-CF plane from the headline table: x = CF drop, y = DG gain (points, interval
    crosses); dotted: equal balance (DG gain - CF drop) through each method; better = up and left."""
    style()
    methods = _methods_in(head)
    pal, mks = method_palette(methods), method_markers(methods)
    s = head.set_index("method").loc[methods]
    x, y = s["cf_drop"].to_numpy(float), s["dg_gain"].to_numpy(float)
    fig, ax = plt.subplots(figsize=(3.6, 3.7))
    for k, m in enumerate(methods):
        r = s.iloc[k]
        ax.plot([x[k]], [y[k]], ls="none", marker=mks[m], color=pal[m], mec="k", mew=0.5, ms=6, zorder=5)
        _errorbar(ax, [x[k]], [y[k]], [r["cf_drop"]], [r["cf_drop_lo"]], [r["cf_drop_hi"]], horizontal=True,
                  k=1.0, ecolor=pal[m], elinewidth=1.0, capsize=2)
        _errorbar(ax, [x[k]], [y[k]], [r["dg_gain"]], [r["dg_gain_lo"]], [r["dg_gain_hi"]], k=1.0,
                  ecolor=pal[m], elinewidth=1.0, capsize=2)
    finite = np.isfinite(x) & np.isfinite(y)
    if finite.any():
        vals_x = np.concatenate([x, s["cf_drop_lo"], s["cf_drop_hi"]]).astype(float)
        vals_y = np.concatenate([y, s["dg_gain_lo"], s["dg_gain_hi"]]).astype(float)
        xr = np.array([np.nanmin(vals_x), np.nanmax(vals_x)])
        yr = np.array([np.nanmin(vals_y), np.nanmax(vals_y)])
        padx, pady = max(0.12 * (xr[1] - xr[0]), 0.5), max(0.12 * (yr[1] - yr[0]), 0.5)
        ax.set_xlim(xr[0] - padx, xr[1] + padx)
        ax.set_ylim(yr[0] - pady, yr[1] + pady)
        xx = np.array(ax.get_xlim())
        for k in np.where(finite)[0]:
            ax.plot(xx, xx + (y[k] - x[k]), color=pal[methods[k]], lw=0.6, ls=":", alpha=0.8, zorder=0)
        ax.set_xlim(*xx)
        ax.set_ylim(yr[0] - pady, yr[1] + pady)
    ax.axhline(0, color="0.5", lw=0.6)
    ax.axvline(0, color="0.5", lw=0.6)
    ax.set(xlabel="CF drop (forgetting, acc. points)", ylabel="DG gain (acc. points)")
    ax.set_title(f"DG gain vs forgetting (up-left = better)\n{_interval_note(head)}; dotted: equal\n"
                 "balance (DG gain − CF drop) through each method", fontsize=8)
    # a legend (shape + colour + name) instead of labels beside the points: nearby methods (BitFit and
    # CLIP-Adapter on mini) never overlap, and a reader without colour vision matches them by shape
    handles = [plt.Line2D([], [], ls="none", marker=mks[m], color=pal[m], mec="k", mew=0.5, ms=6, label=_mlabel(m))
               for m, f in zip(methods, finite) if f]
    if handles:
        fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=min(3, len(handles)),
                   fontsize=7, frameon=False, handletextpad=0.3, columnspacing=1.0)
    fig.tight_layout(rect=(0, 0.1 if len(handles) > 3 else 0.06, 1, 1))
    return fig


def ablations(tab: pd.DataFrame):
    """Ablation variants next to the default methods, one block of rows per task the ablations ran on:
    ID gain, DG gain and CF drop, the mean over seeds with its t interval over seeds (trainable
    parameters in the row labels)."""
    style()
    methods = _methods_in(tab)
    pal, mks = method_palette(methods), method_markers(methods)
    n = len(tab)
    fig, axes = plt.subplots(1, 3, figsize=(7.4, 0.9 + 0.2 * n), sharey=True)
    yl = [f"{r.task} · {r.label} ({_human(r.trainable_params)})" for r in tab.itertuples()]
    ypos = np.arange(n)
    default = (tab["variant"] == "default").to_numpy()
    starts = [i for i in range(1, n) if tab["task"].iloc[i] != tab["task"].iloc[i - 1]]
    for ax, col, title in ((axes[0], "id_gain", "ID gain"), (axes[1], "dg_gain", "DG gain"),
                           (axes[2], "cf_drop", "CF drop")):
        bars = ax.barh(ypos, tab[col] * 100, color=[pal[m] for m in tab["method"]], height=0.7)
        for yi, v, m in zip(ypos, tab[col] * 100, tab["method"]):   # the method's shape at the bar's end
            ax.plot([v], [yi], ls="none", marker=mks[m], ms=3.5, mfc=pal[m], mec="k", mew=0.5, zorder=4)
        for b, d in zip(bars, default):
            if not d:
                b.set_alpha(0.55)
                b.set_hatch("///")
                b.set_edgecolor("white")
        _errorbar(ax, tab[col] * 100, ypos, tab[col], tab[f"{col}_lo"], tab[f"{col}_hi"], horizontal=True,
                  elinewidth=0.8, capsize=2)
        ax.axvline(0, color="0.3", lw=0.6)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("acc. points")
        for i in starts:
            ax.axhline(i - 0.5, color="0.5", lw=0.6, ls="--")
    axes[0].set_yticks(ypos, yl, fontsize=6)
    axes[0].invert_yaxis()
    seeds = ", ".join(sorted(set(",".join(tab["seeds"].astype(str)).split(",")))) if n else ""
    fig.suptitle(f"Ablations (hatched) vs methods, per task · seed(s) {seeds}\n"
                 f"(bars: 95% t interval over seeds; trainable parameters in brackets)", fontsize=8)
    fig.tight_layout()
    return fig


def _human(n) -> str:
    if n is None or not np.isfinite(n):
        return "?"
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suf}"
    return f"{int(n)}"


FIGURES = {
    "difficulty_vs_gain": lambda t: difficulty_vs_gain(t["gain_points"], t["predictors"]),
    "method_bars": lambda t: method_bars(t["headline"]),
    "tradeoff": lambda t: tradeoff(t["headline"]),
    "forgetting_vs_ss": lambda t: forgetting_vs_ss(t["forgetting_vs_ss"], t["forgetting_spearman"]),
    "alignment_shift": lambda t: alignment_shift(t["alignment"]),
    "ablations": lambda t: ablations(t["ablations"]),
    "lr_sweep": lambda t: lr_sweep(t["lr_sweep"]),
    "sweep_tradeoff": lambda t: sweep_tradeoff(t["sweep_tradeoff"]),
}


def draw(tables: dict, name: str):
    """One study figure from ``lib.analysis.compute``'s tables (None when its table is empty)."""
    if name == "ablations" and not len(tables.get("ablations", [])):
        return None
    if name == "alignment_shift" and not len(tables.get("alignment", [])):
        return None
    if name == "lr_sweep" and not len(tables.get("lr_sweep", pd.DataFrame()).get("best_val_acc", pd.Series()).dropna()):
        return None
    if name == "sweep_tradeoff" and not len(tables.get("sweep_tradeoff", [])):
        return None
    return FIGURES[name](tables)


def figure_all(tables: dict, out_dir) -> list[Path]:
    """Draw every study figure from ``lib.analysis.compute``'s tables and save each as PNG + PDF in
    ``out_dir``; returns the paths. A figure whose table is empty (e.g. no ablations) is skipped."""
    out = []
    for name in FIGURES:
        fig = draw(tables, name)
        if fig is None:
            continue
        try:
            out += save(fig, name, out_dir)
        finally:
            plt.close(fig)
    return out
