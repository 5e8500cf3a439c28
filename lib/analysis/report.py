"""Text output of the analysis: number formats, Markdown tables, ``claims.md``, the README block.

Formatting only: every number shown here is a value of a table of ``lib.analysis.tables``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .. import io, paths
from ..provenance import processor_line
from .claims import ALPHA, MIN_TASKS, VERDICTS
from .manipulation import checks_summary
from .tables import _as_bool
from .formats import fmt_ci, fmt_p
from .tables import HEADLINE, METHOD_LABELS, METHOD_ORDER

MAX_MD_COLUMNS = 12          # Markdown tables stay readable; wider data goes to CSV only
README_BEGIN, README_END = "<!-- results:begin -->", "<!-- results:end -->"


# ----------------------------------------------------------------------------- numbers
# fmt_ci, fmt_p: lib.analysis.formats (one layer down, so the claims format their numbers alike)


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


SCIENTIFIC = {"lr"}   # Markdown columns printed in scientific notation


def save_table(df: pd.DataFrame, name: str, out_dir, markdown: bool = True) -> list[Path]:
    """``<name>.csv`` (every column) and, when ``markdown`` and the table has at most
    ``MAX_MD_COLUMNS`` columns once intervals are collapsed, ``<name>.md`` (with
    ``df.attrs['note']`` under it). ``df.attrs['digits']`` sets the decimals (default 3)."""
    out_dir = paths.ensure(Path(out_dir))
    csv = out_dir / f"{name}.csv"
    io.write_csv(df, csv)
    written = [csv]
    digits = int(df.attrs.get("digits", 3))
    md = collapse_intervals(df, digits)
    for c in SCIENTIFIC & set(md.columns):                 # learning rates span decades: 1e-04, not 0.000
        md[c] = [f"{float(v):.0e}" if pd.notna(v) else "" for v in md[c]]
    if markdown and md.shape[1] <= MAX_MD_COLUMNS:
        text = markdown_table(md, digits)
        if df.attrs.get("note"):
            text += f"\n{df.attrs['note']}\n"
        io.write_text(out_dir / f"{name}.md", text)
        written.append(out_dir / f"{name}.md")
    return written


def headline_display(head: pd.DataFrame) -> pd.DataFrame:
    """The headline table as text: 'x [lo, hi]' in accuracy points, method labels."""
    out = pd.DataFrame({"method": [METHOD_LABELS.get(m, m) for m in head["method"]]})
    for q, label in HEADLINE:
        out[label] = [fmt_ci(v, lo, hi, digits=1) for v, lo, hi in zip(head[q], head[q + "_lo"], head[q + "_hi"])]
    out["no val. gain"] = [f"{c} / {n}" for c, n in zip(head["no_val_gain_runs"], head["runs"])]
    out["diverged"] = [f"{c} / {n}" for c, n in zip(head["diverged_runs"], head["runs"])]
    out["tasks"] = head["n_tasks"].astype(int)
    out["seeds"] = head["n_seeds"].astype(int)
    return out


HEADLINE_NOTE = ("Accuracy points (x100), mean over tasks of the per-task seed mean; brackets: 95% t interval "
                 "over tasks (a description; the claims test per-task differences with exact signed-rank tests). "
                 "ID gain: trained task's ID test; DG gain: its shifted domains; CF drop: forgetting on every other "
                 "task; balance = DG gain - CF drop. Flags (descriptive, no run is excluded): no val. gain = best "
                 "validation accuracy not above zero-shot; diverged = non-finite, or ID test accuracy below "
                 "zero-shot by an exact McNemar test (p < 0.05).")


def headline_markdown(head: pd.DataFrame) -> str:
    return markdown_table(headline_display(head)) + "\n" + HEADLINE_NOTE + "\n"


# ----------------------------------------------------------------------------- claims
def _mde_text(mde: float) -> str:
    return "none: undecidable at this number of tasks" if np.isinf(mde) else f"{abs(mde):.3g}"


def _power_note(r) -> str:
    if np.isinf(r.mde):
        return (f"; cannot be decided at {int(r.n_tasks)} tasks (its family of {int(r.family_size)} exact tests "
                f"cannot all reach Holm p < 0.05)")
    if not np.isfinite(r.mde):
        return ""
    return f"; observed {r.estimate:+.3g} vs minimal detectable {abs(r.mde):.3g}"


def verdict_list(claims_df: pd.DataFrame) -> str:
    """'- **1** claim text: **verdict** (binding test, Holm p, power)' per claim."""
    if not len(claims_df):
        return ""
    return "\n".join(f"- **{r.id}** {r.claim} **{r.verdict}**" + (" (near its threshold)" if r.near_threshold else "")
                     + (f" — {r.binding}: Holm p = {fmt_p(r.p_holm)}{_power_note(r)}; leave-one-task-out flips: "
                        f"{int(r.loto_flips)}" if r.binding else "")
                     for r in claims_df.itertuples()) + "\n"


def claims_markdown(claims_df: pd.DataFrame, profile: str | None = None, provenance: dict | None = None,
                    tests_df: pd.DataFrame | None = None) -> str:
    """The claims as Markdown: a generated-file header, the profile, provenance, the verdicts, then one
    section per claim (rule, binding test, power, leave-one-task-out, every test of its family)."""
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
    counts = claims_df["verdict"].value_counts()
    lines += ["", "Verdicts: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS if counts.get(v, 0)) + ".", "",
              f"Each claim is a family of tests over tasks (one point per task; a task's seeds averaged first), "
              f"Holm-adjusted within the family; a test is decided at Holm p < {ALPHA:g}. 'holds' / 'does not hold' "
              f"need at least {MIN_TASKS} tasks. Paired differences: Hodges-Lehmann estimate with the interval of the "
              f"inverted exact signed-rank test; correlations: Spearman rho, exact permutation p, Fisher-z interval. "
              f"Minimal detectable effect: 80% power at the family's Bonferroni level with the observed between-task "
              f"SD. Leave-one-task-out: the number of tasks whose removal changes the verdict. Accuracies in points. "
              f"Rules and truth tables: `docs/methods.md`.", "", "## Verdicts", "", verdict_list(claims_df), ""]
    for r in claims_df.itertuples():
        lines += [f"## Claim {r.id}: {r.claim}", "", f"- **Verdict: {r.verdict}**"
                  + (" (near its threshold)" if r.near_threshold else "")]
        if r.binding:
            lines.append(f"- Binding test: {r.binding} = {fmt_ci(r.estimate, r.lo, r.hi)} ({r.ci_method}); p = "
                         f"{fmt_p(r.p)}, Holm p = {fmt_p(r.p_holm)} ({r.p_method}, family of {int(r.family_size)}); "
                         f"minimal detectable effect {_mde_text(r.mde)}; {int(r.n_tasks)} tasks")
            gone = r.loto_tasks if isinstance(r.loto_tasks, str) else ""   # read back from CSV: NaN when empty
            lines.append(f"- Leave-one-task-out: {int(r.loto_flips)} flip(s)"
                         + (f" (without {gone.replace(',', ', ')})" if gone else ""))
        lines += [f"- Statistic: {r.statistic}", f"- Rule: {r.rule}"]
        if tests_df is not None and len(tests_df[tests_df["id"] == r.id]):
            lines += ["", "| test | estimate [95% interval] | p | Holm p | decision | MDE |", "|---|---|---|---|---|---|"]
            for t in tests_df[tests_df["id"] == r.id].itertuples():
                lines.append(f"| {t.test} | {fmt_ci(t.estimate, t.lo, t.hi)} | {fmt_p(t.p)} | {fmt_p(t.p_holm)} | "
                             f"{t.decision} | {_mde_text(t.mde)} |")
        elif r.detail:
            lines.append(f"- Detail: {r.detail}")
        lines.append("")
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
        text += (f"; Spearman ρ(ss, ACS) over the {int(allr['n_points'])} tasks' ID domains "
                 f"{fmt_ci(allr['ss_acs_rho'], allr['ss_acs_lo'], allr['ss_acs_hi'])}, p = {fmt_p(allr['ss_acs_p'])}")
    return text + " (`paper_figures/world_check.csv`)."


def sweep_markdown(sweep: pd.DataFrame, max_tasks: int = 10) -> str:
    """The selected learning rate per (task, method), '*' where it is an end of the rates tried; with
    more than ``max_tasks`` tasks, per method how many tasks selected each rate."""
    rows = {}   # task -> method -> (selected rate, whether it is an end of the rates tried)
    for (t, m), g in sweep.groupby(["task", "method"], sort=False):
        sel = g[g["selected"].astype(bool)]
        if sel.empty:
            continue
        lr = float(sel["lr"].iloc[0])
        rows.setdefault(t, {})[m] = (lr, len(g) > 1 and lr in (g["lr"].min(), g["lr"].max()))
    methods = [m for m in METHOD_ORDER if any(m in r for r in rows.values())]
    if len(rows) > max_tasks:   # a row per task would not fit a README: how often each rate was selected
        lines = ["| method | selected rate: tasks (`*` at an end of the rates tried) |", "|---|---|"]
        for m in methods:
            got = [r[m] for r in rows.values() if m in r]
            cells = []
            for lr in sorted({x for x, _ in got}):
                n_edge = sum(x == lr and edge for x, edge in got)
                cells.append(f"{lr:g}: {sum(x == lr for x, _ in got)}" + (f" ({n_edge}*)" if n_edge else ""))
            lines.append(f"| {METHOD_LABELS.get(m, m)} | " + ", ".join(cells) + " |")
        return "\n".join(lines) + "\n"
    show = {t: {m: f"{lr:g}" + ("*" if edge else "") for m, (lr, edge) in r.items()} for t, r in rows.items()}
    lines = ["| task | " + " | ".join(METHOD_LABELS.get(m, m) for m in methods) + " |",
             "|---|" + "---|" * len(methods)]
    lines += [f"| {t} | " + " | ".join(r.get(m, "") for m in methods) + " |" for t, r in show.items()]
    return "\n".join(lines) + "\n"


def published_processor(provenance: dict | None = None) -> str | None:
    """'published run: <vendor> <model> (<isa>), <threads> threads' from a provenance record
    (``lib.provenance.collect``: its ``processor`` and ``device``); default: the ``produced_by`` of
    ``paper_figures/MANIFEST.json``.  None when the record names no processor (runs published
    before it was recorded) or cannot be read."""
    if provenance is None:
        try:
            provenance = json.loads((paths.PAPER_FIGURES / "MANIFEST.json").read_text()).get("produced_by") or {}
        except (OSError, ValueError, AttributeError):
            return None
    proc = provenance.get("processor") if isinstance(provenance, dict) else None
    if not isinstance(proc, dict):
        return None
    pins = proc.get("pins") or {}
    threads = pins.get("torch_threads") or pins.get("OMP_NUM_THREADS")
    if not threads:
        m = re.search(r"(\d+) threads", str(provenance.get("device") or ""))
        threads = m.group(1) if m else None
    line = processor_line(proc, int(threads) if str(threads or "").isdigit() else None)
    return f"published run: {line}" if line else None


def readme_block(head: pd.DataFrame, claims_df: pd.DataFrame, profile: str, figure: str,
                 world: pd.DataFrame | None = None, sweep: pd.DataFrame | None = None,
                 provenance: dict | None = None, manipulation: pd.DataFrame | None = None,
                 training: pd.DataFrame | None = None, seed_noise: pd.DataFrame | None = None,
                 equivalence: pd.DataFrame | None = None, clustering: pd.DataFrame | None = None,
                 folder: str = "paper_figures", compact: bool = False) -> str:
    """The README's generated results block (between the markers, markers excluded).  ``provenance``:
    the published run's (default: ``paper_figures/MANIFEST.json``'s ``produced_by``), for its processor.
    ``folder``: where the block's tables are published (``paper_figures/<profile>`` for a profile that
    publishes in a folder of its own); every file the block names is named in it. ``compact`` (a
    profile published in its own folder, the README's second block): no processor, world-check,
    training or seed-noise lines; those stay in the folder's tables and ``claims.md``."""
    parts = [f"_Generated by `python -m lib.pipeline.publish {profile} --publish` from `paper_figures/`; "
             "do not edit by hand._", ""]
    proc = None if compact else published_processor(provenance)
    if proc:
        parts += [proc[0].upper() + proc[1:] + " (`paper_figures/MANIFEST.json`, `produced_by.processor`).", ""]
    if compact:
        world = training = seed_noise = None
    if world is not None and len(world):
        parts += [world_check_markdown(world), ""]
    if manipulation is not None and len(manipulation):
        parts += [checks_summary(manipulation) + " Every check, its statistic and interval: "
                  "`paper_figures/manipulation_checks.csv`.", ""]
    if training is not None and len(training):
        parts += [training_summary(training), ""]
    if seed_noise is not None and len(seed_noise):
        parts += [seed_noise_summary(seed_noise), ""]
    parts += [f"**Headline ({profile} profile)**", "", headline_markdown(head).rstrip(), "",
              f"![DG gain vs forgetting per method]({figure})", ""]
    if sweep is not None and len(sweep) and sweep["best_val_acc"].notna().any():
        parts += ["**Learning rate selected per (task, method)** on ID validation accuracy of the sweep "
                  "(`*`: an end of the rates tried, after the extension rule; every point: `paper_figures/lr_sweep.csv`, "
                  "`lr_sweep.png`)", "",
                  sweep_markdown(sweep).rstrip(), ""]
    parts += ["**The paper's claims on this data** (rules and values: `paper_figures/claims.md`)", "",
              verdict_list(claims_df).rstrip(), ""]
    if equivalence is not None and len(equivalence):
        parts += [equivalence_summary(equivalence), ""]
    if clustering is not None and len(clustering):
        parts += [clustering_summary(clustering), ""]
    text = "\n".join(parts)
    # the summaries name the default folder; a profile published in a folder of its own names its own
    return text if folder == "paper_figures" else text.replace("`paper_figures/", f"`{folder}/")


def clustering_summary(df: pd.DataFrame) -> str:
    """One line on ``family_clustering``: are the tasks of one renderer family more alike than others?"""
    icc, p = df["icc"].astype(float), df["f_p"].astype(float)
    n, g = int(df["n_tasks"].max()), int(df["n_families"].max())
    return (f"**Tasks as units** (a check of the tests' assumption, written after these results were seen): over "
            f"the per-task values of {len(df)} compared quantities, {n} tasks in {g} renderer families, the "
            f"intraclass correlation by family has median {icc.median():+.2f} (largest {icc.max():+.2f}); the "
            f"family effect's F test has p < 0.05 for {int((p < 0.05).sum())} of {len(df)} (about "
            f"{0.05 * len(df):.0f} by chance), largest design effect {df['design_effect'].astype(float).max():.2f} "
            f"(`paper_figures/family_clustering.csv`).")


def equivalence_summary(df: pd.DataFrame) -> str:
    """One line on ``equivalence_posthoc``: per comparison claim, the methods the claimed one is equivalent
    to within the smallest effect of interest (Holm over the claim's family), labelled post hoc."""
    bits = []
    for cid, g in df.groupby("id", sort=False):
        eq = g[g["equivalent"].map(_as_bool).to_numpy()]
        names = [t.split(" - ", 1)[1] for t in eq["test"]]
        head = g.iloc[0]["test"].split(" - ", 1)[0]
        bits.append(f"{cid} ({head} vs the {len(g)} others): equivalent to {len(names)}"
                    + (f" ({', '.join(names)})" if names else ""))
    margin = float(df["sesoi"].iloc[0])
    return (f"**Post hoc, not a verdict** (the reading was written after these results were seen): within "
            f"±{margin:g} points (TOST, Holm within each claim) — " + "; ".join(bits)
            + " (`paper_figures/equivalence_posthoc.csv`; docs/methods.md says which rule it proposes for new data).")


def seed_noise_summary(df: pd.DataFrame) -> str:
    """One line on ``seed_noise``: one seed's SD within a task beside the SD between tasks, per quantity
    (the range over methods), in accuracy points."""
    labels = {"id_gain": "ID gain", "dg_gain": "DG gain", "cf_drop": "CF drop"}
    bits = []
    for q, g in df.groupby("quantity", sort=False):
        lo, hi = 100 * g["seed_sd"].min(), 100 * g["seed_sd"].max()
        tlo, thi = 100 * g["task_sd"].min(), 100 * g["task_sd"].max()
        bits.append(f"{labels.get(q, q)} {lo:.1f}–{hi:.1f} vs {tlo:.1f}–{thi:.1f}")
    r = df.iloc[0]
    return (f"**Seed noise vs task-to-task spread** (SD in points, range over methods; seeds: {int(r['seed_tasks'])} "
            f"tasks x {int(round(r['seeds'] / r['seed_tasks']))} seeds, tasks: {int(r['n_tasks'])}): "
            + "; ".join(bits) + " (`paper_figures/seed_noise.csv`).")


def training_summary(df: pd.DataFrame) -> str:
    """One line on ``training_check``: the tasks where most methods beat the zero-shot model on ID
    validation, and the tasks where they do not."""
    per = df[df["task"] != "all"]
    ok = per["passed"].map(_as_bool)
    bad = per[~ok.to_numpy()]
    text = (f"**Trained long enough?** On {int(ok.sum())} of {len(per)} tasks most methods beat the zero-shot "
            f"model on ID validation")
    if len(bad):
        text += "; not on " + ", ".join(f"{r.task} ({int(r.methods_beating_zero_shot)} of {int(r.methods)} methods)"
                                       for r in bad.itertuples(index=False))
    return text + " (`paper_figures/training_check.csv`)."


def markers(profile: str | None = None) -> tuple[str, str]:
    """The README's results markers: the default profile's (``profile`` None), or those of a profile
    published in a folder of its own (``<!-- results:<profile>:begin -->``)."""
    if profile is None:
        return README_BEGIN, README_END
    return f"<!-- results:{profile}:begin -->", f"<!-- results:{profile}:end -->"


def replace_block(text: str, block: str, profile: str | None = None) -> str:
    """``text`` with everything between the results markers (:func:`markers`) replaced by ``block``."""
    begin, end = markers(profile)
    if begin not in text or end not in text:
        raise ValueError(f"README.md lacks the markers {begin} ... {end} (a section of the README must hold them)")
    a = text.index(begin) + len(begin)
    b = text.index(end)
    return text[:a] + "\n" + block + text[b:]
