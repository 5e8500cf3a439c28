"""Text output of the analysis: number formats, Markdown tables, ``claims.md``, the README block.

Formatting only: every number shown here is a value of a table of ``lib.analysis.tables``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import paths

MAX_MD_COLUMNS = 12          # Markdown tables stay readable; wider data goes to CSV only
README_BEGIN, README_END = "<!-- results:begin -->", "<!-- results:end -->"


# ----------------------------------------------------------------------------- numbers
def _finite(v) -> bool:
    try:
        return bool(np.isfinite(float(v)))
    except (TypeError, ValueError):
        return False


def fmt_ci(v, lo=np.nan, hi=np.nan, pct: bool = False, digits: int | None = None) -> str:
    """'+0.176 [-0.563, +0.793]'; pct: x100 with one decimal (accuracy points); no interval -> value only."""
    k = 100.0 if pct else 1.0
    d = digits if digits is not None else (1 if pct else 3)
    if not _finite(v):
        return "n/a"
    s = f"{float(v) * k:+.{d}f}"
    if _finite(lo) and _finite(hi):
        s += f" [{float(lo) * k:+.{d}f}, {float(hi) * k:+.{d}f}]"
    return s


def fmt_p(p) -> str:
    return f"{float(p):.2g}" if _finite(p) else "n/a"


def _fmt_cell(v, digits: int) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "" if np.isnan(v) else str(v)
        if float(v).is_integer() and abs(v) >= 1000:
            return f"{int(v):,}"
        return f"{v:.{digits}f}"
    return str(v).replace("|", "\\|").replace("\n", " ")


# ----------------------------------------------------------------------------- tables
def collapse_intervals(df: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Columns (c, c_lo, c_hi) and (c, lo, hi) become one text column 'c' = 'v [lo, hi]'."""
    cols = list(df.columns)
    out = {}
    skip = set()
    for i, c in enumerate(cols):
        if c in skip:
            continue
        lo, hi = (f"{c}_lo", f"{c}_hi") if f"{c}_lo" in cols else ("lo", "hi")
        if lo in cols and hi in cols and (lo != "lo" or cols[i + 1:i + 2] == ["lo"]):
            out[c] = [fmt_ci(v, a, b, digits=digits) for v, a, b in zip(df[c], df[lo], df[hi])]
            skip |= {lo, hi}
        else:
            out[c] = df[c]
    return pd.DataFrame(out)


def markdown_table(df: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table (no ``tabulate`` needed); numbers right-aligned."""
    cols = [str(c) for c in df.columns]
    num = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns]
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in cols) + " |",
             "|" + "|".join("---:" if n else ":---" for n in num) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt_cell(v, digits) for v in row) + " |")
    return "\n".join(lines) + "\n"


def save_table(df: pd.DataFrame, name: str, out_dir, markdown: bool = True) -> list[Path]:
    """``<name>.csv`` (every column) and, when ``markdown`` and the table has at most
    ``MAX_MD_COLUMNS`` columns once intervals are collapsed, ``<name>.md`` (with
    ``df.attrs['note']`` under it). ``df.attrs['digits']`` sets the decimals (default 3)."""
    out_dir = paths.ensure(Path(out_dir))
    csv = out_dir / f"{name}.csv"
    df.to_csv(csv, index=False, float_format="%.6g")
    written = [csv]
    digits = int(df.attrs.get("digits", 3))
    md = collapse_intervals(df, digits)
    if markdown and md.shape[1] <= MAX_MD_COLUMNS:
        text = markdown_table(md, digits)
        if df.attrs.get("note"):
            text += f"\n{df.attrs['note']}\n"
        (out_dir / f"{name}.md").write_text(text)
        written.append(out_dir / f"{name}.md")
    return written


def headline_display(head: pd.DataFrame) -> pd.DataFrame:
    """The headline table as text: 'x [lo, hi]' in accuracy points, method labels."""
    from .tables import HEADLINE, METHOD_LABELS
    out = pd.DataFrame({"method": [METHOD_LABELS.get(m, m) for m in head["method"]]})
    for q, label in HEADLINE:
        out[label] = [fmt_ci(v, lo, hi, digits=1) for v, lo, hi in zip(head[q], head[q + "_lo"], head[q + "_hi"])]
    out["collapsed runs"] = [f"{c} / {n}" for c, n in zip(head["collapsed_runs"], head["runs"])]
    out["tasks"] = head["n_tasks"].astype(int)
    out["seeds"] = head["n_seeds"].astype(int)
    return out


HEADLINE_NOTE = ("Accuracy points (x100), mean over tasks of the per-task seed mean; brackets: 95% BCa interval "
                 "of the bootstrap over tasks (seeds nested). ID gain: trained task's ID test; DG gain: its "
                 "shifted domains; CF drop: forgetting on every other task; balance = DG gain - CF drop.")


def headline_markdown(head: pd.DataFrame) -> str:
    return markdown_table(headline_display(head)) + "\n" + HEADLINE_NOTE + "\n"


# ----------------------------------------------------------------------------- claims
def verdict_list(claims_df: pd.DataFrame, subset: str | None = None) -> str:
    """'- **1** claim text: **verdict**' per claim (first subset unless given)."""
    if not len(claims_df):
        return ""
    subset = subset or claims_df["subset"].iloc[0]
    c = claims_df[claims_df["subset"] == subset]
    return "\n".join(f"- **{r.id}** {r.claim} **{r.verdict}**" + (" (near its threshold)" if r.near_threshold else "")
                     for r in c.itertuples()) + "\n"


def claims_markdown(claims_df: pd.DataFrame, profile: str | None = None, provenance: dict | None = None) -> str:
    """The claims as Markdown: a generated-file header, the profile, provenance, one section per claim
    (every subset of runs)."""
    from .claims import MIN_TASKS, VERDICTS
    lines = ["# The paper's claims, tested on this profile's data", "",
             "> Generated from the result tables by `lib.analysis` (`python -m lib.pipeline.publish`). "
             "Do not edit by hand.", ""]
    if profile is not None:
        lines.append(f"- Profile: `{profile}`")
    prov = provenance or {}
    git = prov.get("git") or {}
    if git:
        lines.append(f"- Git commit: `{git.get('commit', 'unknown')}`" + (" (dirty working tree)" if git.get("dirty") else ""))
    for k, v in prov.items():
        if k == "git" or (k == "profile" and v == profile):
            continue
        if isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items())
        lines.append(f"- {k}: {v}")
    first = claims_df[claims_df["subset"] == claims_df["subset"].iloc[0]] if "subset" in claims_df and len(claims_df) \
        else claims_df
    counts = first["verdict"].value_counts()
    lines += ["", "Verdicts: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS if counts.get(v, 0)) + ".", "",
              f"Every verdict comes from a rule over a statistic with a 95% interval of the bootstrap over tasks; "
              f"'holds' / 'does not hold' need at least {MIN_TASKS} tasks. Differences of accuracies in points.", ""]
    if "subset" in claims_df:
        lines += ["## Verdicts", "", verdict_list(claims_df), ""]
    for cid, g in claims_df.groupby("id", sort=False):
        r0 = g.iloc[0]
        lines += [f"## Claim {cid}: {r0['claim']}", ""]
        for r in g.itertuples():
            sub = f" ({r.subset})" if "subset" in g and g["subset"].nunique() > 1 else ""
            lines.append(f"- **Verdict{sub}: {r.verdict}**" + (
                f" - margin {float(r.margin):+.3g}, near the threshold: {bool(r.near_threshold)}, "
                f"{int(r.n_tasks)} tasks" if hasattr(r, "margin") else ""))
            if getattr(r, "detail", ""):
                lines.append(f"  - Value{sub}: {r.detail}")
            elif hasattr(r, "value"):
                lines.append(f"  - Value{sub}: {r.value}")
        lines += [f"- Statistic: {r0['statistic']}", f"- Rule: {r0.get('rule', r0.get('why', ''))}", ""]
    return "\n".join(lines)


def world_check_markdown(wc: pd.DataFrame) -> str:
    """One paragraph: the zero-shot design check (``world_check.csv``)."""
    per, allr = wc[wc["task"] != "all"], wc[wc["task"] == "all"].iloc[0]
    out = per[~per["in_range"].astype(bool)]
    miss = "" if out.empty else " (out of range: " + ", ".join(
        f"{r.task} {100 * r.id_acc:.1f}%" for r in out.itertuples()) + ")"
    text = (f"**World check** (zero-shot, before any fine-tuning; target: every task's ID accuracy in "
            f"[1.3 × chance, 90%]): ID accuracy {100 * allr['id_acc_min']:.1f}–{100 * allr['id_acc_max']:.1f}% "
            f"(SD {100 * allr['id_acc_sd']:.1f} points) over {int(allr['n_tasks'])} tasks, "
            f"{int(allr['tasks_in_range'])} of {int(allr['n_tasks'])} in range{miss}")
    if "ss_acs_rho" in wc and np.isfinite(allr.get("ss_acs_rho", np.nan)):
        text += (f"; Spearman ρ(ss, ACS) over the {int(allr['n_points'])} (task, domain) points "
                 f"{fmt_ci(allr['ss_acs_rho'], allr['ss_acs_lo'], allr['ss_acs_hi'])}, p = {fmt_p(allr['ss_acs_p'])}")
    return text + " (`paper_figures/world_check.csv`)."


def sweep_markdown(sweep: pd.DataFrame) -> str:
    """The selected learning rate per (task, method), '*' where it is an end of the rates tried."""
    from .tables import METHOD_LABELS, METHOD_ORDER
    rows = {}
    for (t, m), g in sweep.groupby(["task", "method"], sort=False):
        sel = g[g["selected"].astype(bool)]
        if sel.empty:
            continue
        lr = float(sel["lr"].iloc[0])
        edge = len(g) > 1 and lr in (g["lr"].min(), g["lr"].max())
        rows.setdefault(t, {})[m] = f"{lr:g}" + ("*" if edge else "")
    methods = [m for m in METHOD_ORDER if any(m in r for r in rows.values())]
    lines = ["| task | " + " | ".join(METHOD_LABELS.get(m, m) for m in methods) + " |",
             "|---|" + "---|" * len(methods)]
    lines += [f"| {t} | " + " | ".join(r.get(m, "") for m in methods) + " |" for t, r in rows.items()]
    return "\n".join(lines) + "\n"


def readme_block(head: pd.DataFrame, claims_df: pd.DataFrame, profile: str, figure: str,
                 world: pd.DataFrame | None = None, sweep: pd.DataFrame | None = None) -> str:
    """The README's generated results block (between the markers, markers excluded)."""
    parts = [f"_Generated by `python -m lib.pipeline.publish {profile} --publish` from `paper_figures/`; "
             "do not edit by hand._", ""]
    if world is not None and len(world):
        parts += [world_check_markdown(world), ""]
    parts += [f"**Headline ({profile} profile)**", "", headline_markdown(head).rstrip(), "",
              f"![DG gain vs forgetting per method]({figure})", ""]
    if sweep is not None and len(sweep) and sweep["best_val_acc"].notna().any():
        parts += ["**Learning rate selected per (task, method)** on ID validation accuracy of the seed-0 sweep "
                  "(`*`: an end of the rates tried, after the extension rule; every point: `paper_figures/lr_sweep.csv`, "
                  "`lr_sweep.png`)", "",
                  sweep_markdown(sweep).rstrip(), ""]
    parts += ["**The paper's claims on this data** (rules and values: `paper_figures/claims.md`)", "",
              verdict_list(claims_df).rstrip(), ""]
    return "\n".join(parts)


def replace_block(text: str, block: str) -> str:
    """``text`` with everything between the results markers replaced by ``block``."""
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"README.md lacks the markers {README_BEGIN} ... {README_END} (section '## Results')")
    a = text.index(README_BEGIN) + len(README_BEGIN)
    b = text.index(README_END)
    return text[:a] + "\n" + block + text[b:]
