"""Every statistic of the study, computed once, into tables (``compute``).

Inputs are the stage tables of ``build/<profile>/results/``:

* ``zero_shot.csv``  one row per (task, domain) test split of the zero-shot model;
* ``finetune.csv``   one row per fine-tuning run (flags ``no_val_gain``, ``nonfinite``);
* ``evaluation.csv`` one row per (run, eval split), schema ID / DG / CF.

Conventions
-----------
* Accuracies are fractions in [0, 1]; gains and drops are differences of fractions (the
  ``headline`` table alone is in accuracy points, x100).
* ``gain = acc_finetuned - acc_zero_shot``; ``forgetting = acc_zero_shot - acc_finetuned`` on CF
  rows. DG = any non-ID domain of the trained task (1 or 2 shifted domains); CF = every other task.
* A run's value is the mean over its eval rows; a task's value the mean over its seeds; a method's
  value the mean over tasks. Tests and intervals come from ``lib.stats`` and are over **tasks**
  (seeds averaged first); every table with an interval names its method (``ci_method``).
* Runs carry two descriptive flags, ``no_val_gain`` and ``diverged`` (see :func:`run_level`). No
  statistic excludes runs by an outcome: the sensitivity analysis is leave-one-task-out
  (``lib.analysis.claims``).
* Zero-shot predictors are related to the gain with one point per task and stratum: the trained
  task's ID domain (the primary analysis), and each shifted-domain slot separately (secondary; slot 1
  = the first shifted domain in name order, e.g. ``*_mild``, slot 2 = ``*_strong`` in world v2). ID
  and shifted points are never pooled: the ID domain always gains most, a within-task effect.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import stats

METHOD_ORDER = ["full", "clip_adapter", "lora", "bitfit", "aclip"]
METHOD_LABELS = {"full": "Full", "clip_adapter": "CLIP-Adapter", "lora": "LoRA", "bitfit": "BitFit",
                 "aclip": "A-CLIP", "pooled": "pooled", "bitfit_excess": "BitFit - others"}
RUN_KEYS = ["train_task", "method", "variant", "seed"]
RESULT_FILES = ("zero_shot", "finetune", "evaluation")
FLAGS = ["no_val_gain", "nonfinite", "diverged"]
MCNEMAR_ALPHA = 0.05   # a run is 'diverged' when its ID test accuracy is below zero-shot at this level

# zero-shot measures that may predict the gain, in display order; a missing column is skipped
MEASURES = ["ss", "acs", "iimm", "class_ss", "modality_gap", "acc"]
MEASURE_LABELS = {"ss": "modality ss", "acs": "ACS", "iimm": "IIMM", "class_ss": "class silhouette",
                  "modality_gap": "modality gap", "acc": "zero-shot accuracy"}
# Sign of the Spearman correlation with the gain that a measure of *difficulty* should show: ss,
# the modality gap and IIMM grow with misalignment (more to gain); ACS, zero-shot accuracy and the
# class silhouette grow with ease (less to gain). ss and ACS are the paper's; the rest our reading.
EXPECTED_SIGN = {"ss": 1, "acs": -1, "iimm": 1, "class_ss": -1, "modality_gap": 1, "acc": -1}
# gain forms of the predictor analysis
RAW, HEADROOM, PARTIAL = "raw gain", "headroom-normalised gain", "partial (controls zero-shot acc)"
FORMS = (RAW, HEADROOM, PARTIAL)
STRATUM_NAMES = {0: "ID"}   # slot -> stratum name; shifted slots are "shift<slot>"
ALIGNMENT_MEASURES = ("ss", "acs")

# run-level quantities (per run: mean over its eval rows) and their bounds
RUN_COLUMNS = ["id_gain", "dg_gain", "cf_drop", "balance", "id_acc", "dg_acc",
               "dg_d_ss", "dg_d_acs", "cf_d_ss", "cf_d_acs", "cf_abs_d_ss", "cf_abs_d_acs"]
BOUNDS = {"id_gain": (-1, 1), "dg_gain": (-1, 1), "cf_drop": (-1, 1), "balance": (-2, 2), "id_acc": (0, 1),
          "dg_acc": (0, 1), "dg_d_ss": (-2, 2), "dg_d_acs": (-2, 2), "cf_d_ss": (-2, 2), "cf_d_acs": (-2, 2),
          "cf_abs_d_ss": (0, 2), "cf_abs_d_acs": (0, 2)}
HEADLINE = [("id_gain", "ID gain"), ("dg_gain", "DG gain"), ("cf_drop", "CF drop"), ("balance", "balance")]
COMPARED = ["id_gain", "dg_gain", "cf_drop", "balance", "cf_abs_d_ss", "cf_abs_d_acs"]

ZS_REQUIRED = ["task", "domain", "domain_kind", "acc"]
EV_REQUIRED = ["train_task", "method", "variant", "seed", "eval_task", "eval_domain", "schema",
               "acc_zero_shot", "acc_finetuned", "n_lost", "n_won"]
FT_REQUIRED = ["task", "method", "variant", "seed", "no_val_gain", "nonfinite"]
OLD_NAMES = {"zero_shot_acc": "acc", "silhouette": "ss", "class_silhouette": "class_ss",
             "silhouette_zero_shot": "ss_zero_shot", "silhouette_finetuned": "ss_finetuned"}


# ----------------------------------------------------------------------------- checks
def check_inputs(res: dict) -> None:
    """Clear early errors for missing tables or columns (with the producing stage to rerun)."""
    producers = {"zero_shot": "01_zero_shot", "finetune": "02_finetune (python -m lib.pipeline.aggregate finetune)",
                 "evaluation": "03_evaluate"}
    need = {"zero_shot": ZS_REQUIRED, "finetune": FT_REQUIRED, "evaluation": EV_REQUIRED}
    for name, cols in need.items():
        if name not in res:
            raise KeyError(f"no {name} table: it is written by {producers[name]}")
        df = res[name]
        old = sorted(c for c in OLD_NAMES if c in df.columns and OLD_NAMES[c] not in df.columns)
        if old:
            raise ValueError(f"{name}.csv uses old column names {old} (now "
                             f"{[OLD_NAMES[c] for c in old]}): rerun {producers[name]} with the current code")
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ValueError(f"{name}.csv lacks columns {missing}: rerun {producers[name]}")
    if len(res["evaluation"]) == 0:
        raise ValueError("evaluation.csv has no rows: run 03_evaluate after fine-tuning")
    bad = sorted(set(res["evaluation"]["schema"]) - {"ID", "DG", "CF"})
    if bad:
        raise ValueError(f"evaluation.csv has unknown schema values {bad}; valid: ID, DG, CF")


def present_measures(zs: pd.DataFrame) -> list[str]:
    """The predictor columns this zero-shot table has with at least one finite value."""
    return [m for m in MEASURES if m in zs.columns and np.isfinite(pd.to_numeric(zs[m], errors="coerce")).any()]


def order_methods(df: pd.DataFrame, col: str = "method", then: list | None = None) -> pd.DataFrame:
    order = {m: i for i, m in enumerate(METHOD_ORDER + ["pooled"])}
    d = df.assign(_k=df[col].map(lambda m: order.get(m, len(order))))
    return d.sort_values(["_k", col] + (then or []), kind="stable").drop(columns="_k").reset_index(drop=True)


def methods_in(df: pd.DataFrame, col: str = "method") -> list[str]:
    present = list(dict.fromkeys(df[col]))
    return [m for m in METHOD_ORDER if m in present] + sorted(m for m in present if m not in METHOD_ORDER)


# ----------------------------------------------------------------------------- per row / run
def add_deltas(ev: pd.DataFrame) -> pd.DataFrame:
    """gain (all rows), forgetting (CF rows, NaN elsewhere), and ``d_<m>`` = fine-tuned minus
    zero-shot for every alignment measure present."""
    d = ev.copy()
    zs, ft = d["acc_zero_shot"].to_numpy(float), d["acc_finetuned"].to_numpy(float)
    d["gain"] = ft - zs
    d["forgetting"] = np.where(d["schema"].eq("CF").to_numpy(), zs - ft, np.nan)
    for m in ("acs", "ss", "class_ss", "modality_gap", "iimm"):
        if f"{m}_zero_shot" in d and f"{m}_finetuned" in d:
            d[f"d_{m}"] = d[f"{m}_finetuned"].astype(float) - d[f"{m}_zero_shot"].astype(float)
    return d


def run_level(ev: pd.DataFrame, ft: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per run: ``RUN_COLUMNS`` (each the mean over the run's ID / DG / CF rows; balance =
    dg_gain - cf_drop) and the descriptive flags: ``no_val_gain`` (finetune.csv: the best validation
    accuracy is not above the zero-shot model's on the same split), ``nonfinite`` (the loss or weights
    became non-finite) and ``diverged`` (non-finite, or the ID test accuracy is below the zero-shot
    model's by an exact McNemar test at ``MCNEMAR_ALPHA`` on the discordant images n_lost / n_won)."""
    d = add_deltas(ev)
    for m in ALIGNMENT_MEASURES:
        if f"d_{m}" not in d:
            d[f"d_{m}"] = np.nan
        d[f"abs_d_{m}"] = d[f"d_{m}"].abs()
    base = d[RUN_KEYS].drop_duplicates().sort_values(RUN_KEYS).reset_index(drop=True)
    spec = {"ID": {"id_gain": "gain", "id_acc": "acc_finetuned"},
            "DG": {"dg_gain": "gain", "dg_acc": "acc_finetuned", "dg_d_ss": "d_ss", "dg_d_acs": "d_acs"},
            "CF": {"cf_drop": "forgetting", "cf_d_ss": "d_ss", "cf_d_acs": "d_acs",
                   "cf_abs_d_ss": "abs_d_ss", "cf_abs_d_acs": "abs_d_acs"}}
    for schema, cols in spec.items():
        s = d[d["schema"] == schema].groupby(RUN_KEYS)[list(cols.values())].mean()
        s = pd.DataFrame({new: s[old] for new, old in cols.items()}, index=s.index).reset_index()
        base = base.merge(s, on=RUN_KEYS, how="left") if len(s) else base.assign(**{c: np.nan for c in cols})
    base["balance"] = base["dg_gain"] - base["cf_drop"]
    idr = d[d["schema"] == "ID"].groupby(RUN_KEYS)[["n_lost", "n_won"]].sum().reset_index()
    base = base.merge(idr, on=RUN_KEYS, how="left")
    base["mcnemar_p"] = [stats.mcnemar_p(a, b) if np.isfinite(a) and np.isfinite(b) else np.nan
                         for a, b in zip(base["n_lost"].astype(float), base["n_won"].astype(float))]
    base["no_val_gain"], base["nonfinite"] = False, False
    if ft is not None and len(ft):
        f = ft.rename(columns={"task": "train_task"})[RUN_KEYS + ["no_val_gain", "nonfinite"]]
        f = f.assign(no_val_gain=f["no_val_gain"].map(_as_bool), nonfinite=f["nonfinite"].map(_as_bool))
        base = base.drop(columns=["no_val_gain", "nonfinite"]).merge(f, on=RUN_KEYS, how="left")
        base[["no_val_gain", "nonfinite"]] = base[["no_val_gain", "nonfinite"]].fillna(False).astype(bool)
    below = (base["n_lost"] > base["n_won"]) & (base["mcnemar_p"] < MCNEMAR_ALPHA)
    base["diverged"] = base["nonfinite"] | below.fillna(False).astype(bool)
    return base[RUN_KEYS + RUN_COLUMNS + FLAGS + ["n_lost", "n_won", "mcnemar_p"]]


def _as_bool(v) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    return bool(v) if pd.notna(v) else False


def seed_aggregate(ev: pd.DataFrame) -> pd.DataFrame:
    """Per (run configuration, eval split): zero-shot accuracy, and the fine-tuned accuracy and gain
    as mean / min / max over seeds (no interval from 2-3 seeds; CSV only)."""
    d = add_deltas(ev)
    keys = ["train_task", "method", "variant", "eval_task", "eval_domain", "schema"]
    g = d.groupby(keys, sort=True)
    out = g.agg(acc_zero_shot=("acc_zero_shot", "mean"), acc_finetuned=("acc_finetuned", "mean"),
                acc_finetuned_min=("acc_finetuned", "min"), acc_finetuned_max=("acc_finetuned", "max"),
                gain=("gain", "mean"), gain_min=("gain", "min"), gain_max=("gain", "max"),
                n_seeds=("seed", "nunique")).reset_index()
    out = out.assign(_s=out["schema"].map({"ID": 0, "DG": 1, "CF": 2}))
    out = out.sort_values(["train_task", "_s", "eval_task", "eval_domain"], kind="stable").drop(columns="_s")
    return order_methods(out, then=["variant"])


# ----------------------------------------------------------------------------- method level
def method_summary(runs: pd.DataFrame, variant: str = "default") -> pd.DataFrame:
    """Long table, one row per (method, quantity): the mean over tasks of the per-task seed mean and
    its t interval over tasks (``value``, ``lo``, ``hi``, ``ci_method``), n_tasks, n_seeds, n_runs."""
    r = runs[runs["variant"] == variant]
    rows = []
    for m in methods_in(r):
        g = r[r["method"] == m]
        for q in RUN_COLUMNS:
            ci = stats.task_mean_ci(g[q], g["train_task"], bounds=BOUNDS[q])
            rows.append(dict(method=m, quantity=q, value=ci["value"], lo=ci["lo"], hi=ci["hi"],
                             ci_method=ci["ci_method"], n_tasks=ci["n_tasks"], n_seeds=int(g["seed"].nunique()),
                             n_runs=len(g)))
    return pd.DataFrame(rows, columns=["method", "quantity", "value", "lo", "hi", "ci_method", "n_tasks", "n_seeds",
                                       "n_runs"])


def wide(summary: pd.DataFrame, quantities=None) -> pd.DataFrame:
    """``method_summary`` (one subset) pivoted to one row per method: q, q_lo, q_hi (no computation)."""
    s = summary if quantities is None else summary[summary["quantity"].isin(quantities)]
    out = pd.DataFrame({"method": methods_in(s)})
    for q in dict.fromkeys(s["quantity"]):
        sub = s[s["quantity"] == q].set_index("method")
        for suffix, col in (("", "value"), ("_lo", "lo"), ("_hi", "hi")):
            out[q + suffix] = out["method"].map(sub[col])
    return out


def comparisons(runs: pd.DataFrame, variant: str = "default", equivalence: bool = True,
                tost: bool | None = None) -> pd.DataFrame:
    """Paired method comparisons: for each pair (method before versus in ``METHOD_ORDER``) and
    quantity, diff = method - versus per (task, seed) on the runs both have, averaged per task; the
    Hodges-Lehmann estimate over tasks with the interval of the inverted exact signed-rank test and its
    p (``lib.stats.paired_test``), the mean and between-task SD of the per-task differences, per-task
    wins / losses / ties.
    With ``equivalence`` (not while leaving one task out: no verdict reads them; NaN there), the minimal
    detectable shift (``lib.stats.mde_signed_rank``), and for the quantities in accuracy points
    (``EFFECT_QUANTITIES``) the equivalence test within +/- ``SESOI`` (TOST) and its 90% interval: the
    post hoc reading of ``lib.analysis.claims.equivalence_posthoc``. ``tost`` (default: ``equivalence``)
    computes the equivalence tests without the MDEs: the claim rule v4 reads them, also while leaving
    one task out."""
    tost = equivalence if tost is None else tost
    r = runs[runs["variant"] == variant]
    ms = methods_in(r)
    rows = []
    for i, a in enumerate(ms):
        for b in ms[i + 1:]:
            pair = _paired(r, a, b)
            for q in COMPARED:
                diff = (pair[f"{q}_a"] - pair[f"{q}_b"]).to_numpy(float)
                c = stats.paired_test(diff, pair["train_task"].to_numpy(), mde=equivalence)
                e = (stats.equivalence_test(diff, SESOI, pair["train_task"].to_numpy())
                     if tost and q in EFFECT_QUANTITIES else {})
                rows.append(dict(quantity=q, method=a, versus=b, estimate=c["estimate"], lo=c["lo"], hi=c["hi"],
                                 p=c["p"], mean=c["mean"], sd=c["sd"], wins=c["wins"], losses=c["losses"],
                                 ties=c["ties"], n_tasks=c["n_tasks"], mde=c["mde"],
                                 ci_method=c["ci_method"], p_method=c["p_method"],
                                 tost_p=e.get("p_tost", np.nan), tost_lo90=e.get("lo90", np.nan),
                                 tost_hi90=e.get("hi90", np.nan), sesoi=SESOI if e else np.nan))
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def _paired(r: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """The (task, seed) runs that methods ``a`` and ``b`` both have, side by side (suffixes _a, _b)."""
    return r[r["method"] == a].merge(r[r["method"] == b], on=["train_task", "seed"], suffixes=("_a", "_b"))


def task_values(runs: pd.DataFrame, quantity: str, a: str, b: str | None = None,
                variant: str = "default") -> pd.Series:
    """The per-task values a test of ``comparisons`` (``b`` given: a - b on the runs both have) or of
    ``effects`` (``b`` None: method ``a``'s values) runs over: each task's mean over its seeds, indexed
    by task (sorted)."""
    r = runs[runs["variant"] == variant]
    if b is None:
        g = r[r["method"] == a]
        v, t = g[quantity].to_numpy(float), g["train_task"].to_numpy()
    else:
        pair = _paired(r, a, b)
        v, t = (pair[f"{quantity}_a"] - pair[f"{quantity}_b"]).to_numpy(float), pair["train_task"].to_numpy()
    names, means = stats.task_means(v, t)
    return pd.Series(means, index=pd.Index(names, name="train_task"), name=quantity)


COMPARISON_COLUMNS = ["quantity", "method", "versus", "estimate", "lo", "hi", "p", "mean", "sd", "wins", "losses",
                      "ties", "n_tasks", "mde", "ci_method", "p_method", "tost_p", "tost_lo90", "tost_hi90", "sesoi"]


def comparison(comp: pd.DataFrame, quantity: str, a: str, b: str) -> dict | None:
    """The row of ``comparisons`` for a - b (sign flipped, wins and losses swapped, if stored as b - a)."""
    hit = comp[(comp["quantity"] == quantity) & (comp["method"] == a) & (comp["versus"] == b)]
    if len(hit):
        return hit.iloc[0].to_dict()
    hit = comp[(comp["quantity"] == quantity) & (comp["method"] == b) & (comp["versus"] == a)]
    if not len(hit):
        return None
    r = hit.iloc[0].to_dict()
    out = {**r, "method": a, "versus": b, "estimate": -r["estimate"], "lo": -r["hi"], "hi": -r["lo"],
           "mean": -r["mean"], "wins": r["losses"], "losses": r["wins"]}
    if "tost_lo90" in r:   # the equivalence interval turns too (its p is symmetric)
        out.update(tost_lo90=-r["tost_hi90"], tost_hi90=-r["tost_lo90"])
    return out


def run_flags(runs: pd.DataFrame, variant: str = "default") -> pd.DataFrame:
    """Per method: runs, and how many carry each descriptive flag (``FLAGS``)."""
    r = runs[runs["variant"] == variant]
    g = r.groupby("method")
    out = pd.DataFrame({"runs": g.size(), **{f: g[f].sum().astype(int) for f in FLAGS}}).reset_index()
    return order_methods(out)[["method", "runs"] + FLAGS]


# Train long enough (study v3, docs/world.md): on every task, MORE THAN this share of the methods beat
# the zero-shot model on ID validation (a method beats it on a task when most of its default-variant
# runs there do not carry no_val_gain)
TRAINING_MAJORITY = 0.5


def training_check(runs: pd.DataFrame, variant: str = "default") -> pd.DataFrame:
    """Per task: how many methods' best ID-validation accuracy beats the zero-shot model's (``no_val_gain``
    False for most of the method's runs on the task), and whether more than :data:`TRAINING_MAJORITY` of
    the methods do; a last row ``task = 'all'``: the tasks that pass, and whether every task does."""
    r = runs[runs["variant"] == variant]
    beats = (~r["no_val_gain"].astype(bool)).groupby([r["train_task"], r["method"]]).mean() > 0.5
    per = beats.groupby(level=0).agg(["sum", "size"])
    out = pd.DataFrame({"task": per.index, "methods": per["size"].to_numpy(),
                        "methods_beating_zero_shot": per["sum"].astype(int).to_numpy()})
    out["passed"] = out["methods_beating_zero_shot"] > TRAINING_MAJORITY * out["methods"]
    summary = {"task": "all", "methods": np.nan, "methods_beating_zero_shot": int(out["passed"].sum()),
               "passed": bool(out["passed"].all())}
    return pd.concat([out, pd.DataFrame([summary])], ignore_index=True)


def sweep_tradeoff(sw: pd.DataFrame) -> pd.DataFrame:
    """Each method's trade-off along the learning rate (study v3: ``sweep_evaluation.csv``, every sweep
    point on the first ``sweep_eval_images`` test images of each split). Per (method, task, lr): ID gain
    (the ID split), DG gain (mean over the shifted domains) and CF drop (mean over the panel's other
    tasks: zero-shot minus fine-tuned), in accuracy; then per (method, lr) their means over the tasks
    that tried the rate, with ``n_tasks`` and ``selected`` (how many of those tasks selected it)."""
    cols = ["method", "lr", "n_tasks", "selected", "id_gain", "dg_gain", "cf_drop"]
    if sw is None or not len(sw):
        return pd.DataFrame(columns=cols)
    d = sw.assign(gain=sw["acc_finetuned"].astype(float) - sw["acc_zero_shot"].astype(float))
    per = d.groupby(["method", "task", "lr", "schema"])["gain"].mean().unstack("schema")
    sel = d.groupby(["method", "task", "lr"])["selected"].first().map(_as_bool)
    per = per.reindex(columns=["ID", "DG", "CF"])
    t = pd.DataFrame({"id_gain": per["ID"], "dg_gain": per["DG"], "cf_drop": -per["CF"], "selected": sel}).reset_index()
    g = t.groupby(["method", "lr"])
    out = pd.DataFrame({"n_tasks": g.size(), "selected": g["selected"].sum().astype(int),
                        **{c: g[c].mean() for c in ("id_gain", "dg_gain", "cf_drop")}}).reset_index()
    return order_methods(out)[cols]


def headline(summary: pd.DataFrame, flags: pd.DataFrame) -> pd.DataFrame:
    """One row per method in accuracy points (x100): ID gain, DG gain, CF drop, balance with their
    t intervals over tasks; flagged runs; tasks and seeds."""
    w = wide(summary, [q for q, _ in HEADLINE])
    out = pd.DataFrame({"method": w["method"]})
    for q, _ in HEADLINE:
        for s in ("", "_lo", "_hi"):
            out[q + s] = w[q + s] * 100.0
    c = flags.set_index("method")
    for f in ("no_val_gain", "diverged", "runs"):
        out[f if f == "runs" else f + "_runs"] = out["method"].map(c[f]).fillna(0).astype(int)
    n = summary.drop_duplicates("method").set_index("method")
    out["n_tasks"] = out["method"].map(n["n_tasks"]).astype(int)
    out["n_seeds"] = out["method"].map(n["n_seeds"]).astype(int)
    out["ci_method"] = stats.T_TASKS
    return out


def alignment(ev: pd.DataFrame, runs: pd.DataFrame, variant: str = "default") -> pd.DataFrame:
    """ss and ACS before and after fine-tuning per method on DG data and CF data: zero-shot and
    fine-tuned means over tasks (rows -> run -> task), t intervals over tasks of the fine-tuned
    value and of the change."""
    d = add_deltas(ev)
    keep = runs.loc[runs["variant"] == variant, RUN_KEYS]
    d = d.merge(keep, on=RUN_KEYS)
    d = d[d["schema"].isin(["DG", "CF"])]
    rows = []
    for meas in ALIGNMENT_MEASURES:
        if f"{meas}_zero_shot" not in d or f"{meas}_finetuned" not in d:
            continue
        cols = [f"{meas}_zero_shot", f"{meas}_finetuned", f"d_{meas}"]
        run = d.groupby(RUN_KEYS + ["schema"])[cols].mean().reset_index()
        for (m, sch), g in run.groupby(["method", "schema"]):
            z = stats.task_means(g[cols[0]], g["train_task"])[1]
            f = stats.task_mean_ci(g[cols[1]], g["train_task"], bounds=(-1, 1))
            c = stats.task_mean_ci(g[cols[2]], g["train_task"], bounds=(-2, 2))
            rows.append(dict(method=m, schema=sch, measure=meas, zero_shot=float(np.mean(z)),
                             finetuned=f["value"], finetuned_lo=f["lo"], finetuned_hi=f["hi"],
                             change=c["value"], change_lo=c["lo"], change_hi=c["hi"], n_tasks=f["n_tasks"],
                             ci_method=f["ci_method"]))
    cols = ["method", "schema", "measure", "zero_shot", "finetuned", "finetuned_lo", "finetuned_hi", "change",
            "change_lo", "change_hi", "n_tasks", "ci_method"]
    out = pd.DataFrame(rows, columns=cols)
    return order_methods(out, then=["measure", "schema"]) if len(out) else out


# ----------------------------------------------------------------------------- zero-shot
def zero_shot_summary(zs: pd.DataFrame) -> pd.DataFrame:
    """The zero-shot table to read: accuracy with its Wilson interval over the split's images,
    and every alignment measure present."""
    out = zs[["task", "domain", "domain_kind"] + [c for c in ("n_images",) if c in zs]].copy()
    out["acc"] = zs["acc"].astype(float)
    if "n_images" in zs:
        ci = [stats.wilson_ci(a, n) for a, n in zip(zs["acc"], zs["n_images"])]
        out["acc_lo"], out["acc_hi"] = [c[0] for c in ci], [c[1] for c in ci]
    for m in present_measures(zs):
        if m != "acc":
            out[m] = zs[m].astype(float)
    return out.reset_index(drop=True)


# Study v2's zero-shot target for every task's ID accuracy: between 1.3x chance and 90%.
ZS_TARGET = (1.3, 0.90)


def world_check(zs: pd.DataFrame) -> pd.DataFrame:
    """The world's zero-shot design check, one row per task (ID accuracy, chance, the target
    [1.3 x chance, 90%], in range) and a last row ``task = 'all'``: the ID accuracies' range and
    standard deviation, tasks in range, and the Spearman rho of zero-shot ss with ACS over the tasks'
    ID domains (Fisher-z interval, exact permutation p)."""
    zid = zs[zs["domain_kind"] == "ID"].drop_duplicates("task")
    chance = (zid["chance"].astype(float) if "chance" in zid else 1.0 / zid["n_classes"].astype(float)
              if "n_classes" in zid else pd.Series(np.nan, index=zid.index))
    lo_mult, hi = ZS_TARGET
    rows = pd.DataFrame({"task": zid["task"].to_numpy(), "id_acc": zid["acc"].astype(float).to_numpy(),
                         "chance": chance.to_numpy(), "target_lo": lo_mult * chance.to_numpy(), "target_hi": hi})
    rows["in_range"] = (rows["id_acc"] >= rows["target_lo"]) & (rows["id_acc"] <= rows["target_hi"])
    summary = {"task": "all", "id_acc": np.nan, "chance": np.nan, "target_lo": np.nan, "target_hi": hi,
               "in_range": bool(rows["in_range"].all()), "tasks_in_range": int(rows["in_range"].sum()),
               "n_tasks": len(rows), "id_acc_min": rows["id_acc"].min(), "id_acc_max": rows["id_acc"].max(),
               "id_acc_sd": rows["id_acc"].std(ddof=1) if len(rows) > 1 else np.nan}
    if {"ss", "acs"} <= set(zs.columns):
        r = stats.rank_correlation(zid["ss"].astype(float), zid["acs"].astype(float))
        summary.update(ss_acs_rho=r["rho"], ss_acs_lo=r["lo"], ss_acs_hi=r["hi"], ss_acs_p=r["p"],
                       n_points=r["n_tasks"], ci_method=r["ci_method"])
    return pd.concat([rows, pd.DataFrame([summary])], ignore_index=True)


# ----------------------------------------------------------------------------- predictors
def gain_points(zs: pd.DataFrame, ev: pd.DataFrame, runs: pd.DataFrame, variant: str = "default") -> pd.DataFrame:
    """One point per (method, trained task, domain of that task): the seed-averaged gain (ID rows for
    the ID domain, DG rows for each shifted domain), its headroom-normalised form gain / (1 -
    zero-shot accuracy) (NaN without headroom), the slot (0 = ID, 1.. = shifted domains in name
    order), its stratum and the zero-shot measures of that task/domain; plus method 'pooled' = mean
    over methods."""
    d = add_deltas(ev)
    d = d.merge(runs.loc[runs["variant"] == variant, RUN_KEYS], on=RUN_KEYS)
    d = d[d["schema"].isin(["ID", "DG"]) & (d["eval_task"] == d["train_task"])]
    keys = ["method", "train_task", "eval_domain", "schema"]
    per_seed = d.groupby(keys + ["seed"]).agg(gain=("gain", "mean"), acc0=("acc_zero_shot", "mean")).reset_index()
    g = per_seed.groupby(keys).agg(gain=("gain", "mean"), acc_zero_shot=("acc0", "mean"),
                                   n_seeds=("seed", "nunique")).reset_index()
    pooled = g.groupby(["train_task", "eval_domain", "schema"]).agg(
        gain=("gain", "mean"), acc_zero_shot=("acc_zero_shot", "mean"), n_seeds=("n_seeds", "min")).reset_index()
    pooled["method"] = "pooled"
    g = pd.concat([g, pooled], ignore_index=True).rename(columns={"train_task": "task", "eval_domain": "domain"})
    head = 1.0 - g["acc_zero_shot"]
    g["gain_headroom"] = np.where(head > 1e-9, g["gain"] / head.where(head > 1e-9, 1.0), np.nan)
    g["slot"] = 0
    dg = g["schema"] == "DG"
    g.loc[dg, "slot"] = g[dg].groupby(["method", "task"])["domain"].rank(method="dense").astype(int)
    g["stratum"] = g["slot"].map(stratum_name)
    mcols = [m for m in present_measures(zs) if m != "acc"]
    z = zs[["task", "domain"] + mcols]
    out = g.merge(z, on=["task", "domain"], how="left")
    cols = ["method", "task", "domain", "schema", "slot", "stratum", "gain", "gain_headroom", "acc_zero_shot",
            "n_seeds"] + mcols
    return order_methods(out[cols], then=["task", "slot"])


def stratum_name(slot: int) -> str:
    return STRATUM_NAMES.get(int(slot), f"shift{int(slot)}")


def strata(pts: pd.DataFrame) -> list[str]:
    return [stratum_name(s) for s in sorted(pts["slot"].unique())]


def predictor_arrays(pts: pd.DataFrame, measure: str, form: str, stratum: str = "ID"):
    """(x, y, z): one value per task (sorted) in ``stratum`` for ``stats.rank_correlation``: x = the
    measure, y = the gain (raw, or headroom-normalised), z = the zero-shot accuracy for the partial
    form (else None). A task without a point in the stratum is NaN (dropped by the test)."""
    p = pts[pts["stratum"] == stratum].set_index("task")
    tasks = sorted(pts["task"].unique())
    col = lambda c: p[c].reindex(tasks).to_numpy(float)  # noqa: E731
    x = col("acc_zero_shot" if measure == "acc" else measure)
    y = col("gain_headroom" if form == HEADROOM else "gain")
    z = col("acc_zero_shot") if form == PARTIAL else None
    return x, y, z


PREDICTOR_COLUMNS = ["measure", "method", "stratum", "form", "rho", "lo", "hi", "p", "n_tasks", "mde",
                     "expected_sign", "ci_method", "p_method"]


# what the claims read of the predictor tables (claim 1: the pooled ID points' raw gain); leaving one
# task out (claim_tables(full=False)) computes only these rows: each test's p has its own fixed seed
# (lib.stats), so a row computed alone is the row computed among all of them
CLAIM_STRATUM, CLAIM_FORM = "ID", RAW


def predictors(pts: pd.DataFrame, measures: list[str], only: tuple[str, str] | None = None) -> pd.DataFrame:
    """Spearman rho of each zero-shot measure with the gain over tasks, one point per task in each
    stratum (ID, then each shifted-domain slot; never pooled), for the mean over methods (every form:
    raw gain, headroom-normalised gain, partial rho of the raw gain given zero-shot accuracy) and per
    method (raw and headroom-normalised): rho, Fisher-z interval, exact permutation p, n_tasks and the
    smallest |rho| detectable with 80% power. ``only`` = (stratum, form): that stratum and form alone."""
    rows = []
    for meas in measures:
        for m in methods_in(pts):
            pm = pts[pts["method"] == m]
            for stratum in strata(pm):
                for form in (FORMS if m == "pooled" else (RAW, HEADROOM)):
                    if form == PARTIAL and meas == "acc":
                        continue
                    if only is not None and (stratum, form) != only:
                        continue
                    x, y, z = predictor_arrays(pm, meas, form, stratum)
                    r = stats.rank_correlation(x, y, z)
                    rows.append(dict(measure=meas, method=m, stratum=stratum, form=form, rho=r["rho"], lo=r["lo"],
                                     hi=r["hi"], p=r["p"], n_tasks=r["n_tasks"], mde=r["mde"],
                                     expected_sign=EXPECTED_SIGN.get(meas, 0), ci_method=r["ci_method"],
                                     p_method=r["p_method"]))
    return pd.DataFrame(rows, columns=PREDICTOR_COLUMNS)


def predictor_contrasts(pts: pd.DataFrame, a: str = "ss", b: str = "acs", method: str = "pooled",
                        only: tuple[str, str] | None = None) -> pd.DataFrame:
    """Strength contrast |rho(a, gain)| - |rho(b, gain)| per stratum and form (raw, headroom) for the
    mean over methods: Zou's interval for dependent correlations and its p (> 0: a tracks the gain
    more strongly than b, whatever the direction; the direction is judged by the claim rule)."""
    rows = []
    pm = pts[pts["method"] == method]
    if a in pts and b in pts and len(pm):
        for stratum in strata(pm):
            for form in (RAW, HEADROOM):
                if only is not None and (stratum, form) != only:
                    continue
                xa, y, _ = predictor_arrays(pm, a, form, stratum)
                xb, _, _ = predictor_arrays(pm, b, form, stratum)
                r = stats.abs_correlation_difference(xa, xb, y)
                rows.append(dict(contrast=f"|{a}| - |{b}|", method=method, stratum=stratum, form=form, diff=r["diff"],
                                 lo=r["lo"], hi=r["hi"], p=r["p"], n_tasks=r["n_tasks"], mde=r["mde"],
                                 ci_method=r["ci_method"], p_method=r["p_method"]))
    return pd.DataFrame(rows, columns=["contrast", "method", "stratum", "form", "diff", "lo", "hi", "p", "n_tasks",
                                       "mde", "ci_method", "p_method"])


# ----------------------------------------------------------------------------- forgetting vs ss
EXCESS = "bitfit_excess"


def forgetting_vs_ss(zs: pd.DataFrame, runs: pd.DataFrame, variant: str = "default", spearman_of=None):
    """Per (method, trained task): the seed-mean CF drop (and its min / max over seeds) next to the
    task's ID-domain zero-shot ss, plus ``bitfit_excess`` = BitFit's CF drop minus the mean of the
    other methods' (the interaction of claim 2b); per method (and for the excess) the Spearman rho
    over tasks with its Fisher-z interval and exact p (``spearman_of``: those methods' rho only).
    Returns (points, spearman)."""
    r = runs[runs["variant"] == variant]
    pts = r.groupby(["method", "train_task"]).agg(cf_drop=("cf_drop", "mean"), cf_drop_min=("cf_drop", "min"),
                                                  cf_drop_max=("cf_drop", "max"),
                                                  n_seeds=("seed", "nunique")).reset_index()
    if "bitfit" in set(pts["method"]) and pts["method"].nunique() > 1:
        w = pts.pivot(index="train_task", columns="method", values="cf_drop")
        others = [m for m in w.columns if m != "bitfit"]
        ex = (w["bitfit"] - w[others].mean(axis=1)).dropna()
        pts = pd.concat([pts, pd.DataFrame({"method": EXCESS, "train_task": ex.index, "cf_drop": ex.to_numpy(),
                                            "cf_drop_min": np.nan, "cf_drop_max": np.nan, "n_seeds": np.nan})],
                        ignore_index=True)
    zid = zs[zs["domain_kind"] == "ID"].drop_duplicates("task").set_index("task")
    pts["ss_zero_shot"] = pts["train_task"].map(zid["ss"]) if "ss" in zid else np.nan
    pts = order_methods(pts.sort_values("ss_zero_shot", kind="stable"))
    rows = []
    for m in list(dict.fromkeys(pts["method"])):
        if spearman_of is not None and m not in spearman_of:
            continue
        g = pts[pts["method"] == m]
        c = stats.rank_correlation(g["ss_zero_shot"].to_numpy(float), g["cf_drop"].to_numpy(float))
        rows.append(dict(method=m, rho=c["rho"], lo=c["lo"], hi=c["hi"], p=c["p"], n_tasks=c["n_tasks"], mde=c["mde"],
                         ci_method=c["ci_method"], p_method=c["p_method"]))
    sp = pd.DataFrame(rows, columns=["method", "rho", "lo", "hi", "p", "n_tasks", "mde", "ci_method", "p_method"])
    return pts[["method", "train_task", "ss_zero_shot", "cf_drop", "cf_drop_min", "cf_drop_max", "n_seeds"]], sp


# ----------------------------------------------------------------------------- ablations
ABLATION_QUANTITIES = ["id_gain", "dg_gain", "cf_drop", "balance"]


def ablation_table(runs: pd.DataFrame, ft: pd.DataFrame, method: str = "aclip") -> pd.DataFrame:
    """Ablation variants of ``method`` next to the default methods, per task the ablations ran on
    (3 tasks are too few for an interval over tasks): ID gain, DG gain, CF drop, balance as the mean
    over the seeds with its t interval over seeds, trainable parameters."""
    q = ABLATION_QUANTITIES
    cols = ["task", "label", "method", "variant", "trainable_params"] + [c + s for c in q for s in ("", "_lo", "_hi")] + \
           ["n_seeds", "seeds", "ci_method"]
    abl = runs[(runs["method"] == method) & (runs["variant"] != "default")]
    if abl.empty:
        out = pd.DataFrame(columns=cols)
        out.attrs["note"] = f"No ablation runs of {METHOD_LABELS.get(method, method)} in this profile."
        return out
    tasks = sorted(abl["train_task"].unique())
    seeds = sorted(int(s) for s in abl["seed"].unique())
    sub = runs[runs["train_task"].isin(tasks) & runs["seed"].isin(seeds)
               & ((runs["variant"] == "default") | (runs["method"] == method))]
    params = ft.groupby(["method", "variant"])["trainable_params"].median() if "trainable_params" in ft else {}
    rows = []
    for (t, m, v), g in sub.groupby(["train_task", "method", "variant"]):
        r = dict(task=t, method=m, variant=v, label=METHOD_LABELS.get(m, m) + ("" if v == "default" else f" · {v}"),
                 trainable_params=float(params.get((m, v), np.nan)) if len(params) else np.nan)
        for c in q:
            r[c] = float(g[c].mean())
            r[c + "_lo"], r[c + "_hi"] = stats.t_interval(g[c], bounds=BOUNDS[c])
        r.update(n_seeds=int(g["seed"].nunique()), seeds=",".join(map(str, sorted(g["seed"].astype(int)))),
                 ci_method=stats.T_SEEDS)
        rows.append(r)
    t = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    t["_k"] = [(task, 0 if v == "default" else 1, order.get(m, 99), v)
               for task, m, v in zip(t["task"], t["method"], t["variant"])]
    t = t.sort_values("_k").drop(columns="_k").reset_index(drop=True)[cols]
    t.attrs["note"] = (f"Ablations ran on seed(s) {', '.join(map(str, seeds))} of task(s) {', '.join(tasks)}; every "
                       f"row, the default methods included, is one task with the mean over those seeds and its t "
                       f"interval over seeds (no interval over {len(tasks)} tasks).")
    return t


# ----------------------------------------------------------------------------- seed noise
SEED_NOISE_QUANTITIES = ["id_gain", "dg_gain", "cf_drop"]


def seed_noise(runs: pd.DataFrame, variant: str = "default") -> pd.DataFrame:
    """Per method and quantity: the seed-to-seed SD *within* a task beside the SD *between* tasks.

    ``seed_sd``: pooled over the tasks with at least two seeds (the profile's seed-noise subset), the
    square root of the mean of their per-task sample variances (ddof 1; ``seed_tasks`` tasks, ``seeds``
    runs); ``task_sd``: the SD over all tasks of the per-task seed means (``n_tasks``), the spread every
    test over tasks works against; ``ratio`` = seed_sd / task_sd (one seed's noise as a share of the
    between-task spread). Empty when no task has two seeds."""
    r = runs[runs["variant"] == variant]
    rows = []
    for m in methods_in(r):
        g = r[r["method"] == m]
        for q in SEED_NOISE_QUANTITIES:
            by = g.groupby("train_task")[q]
            n = by.count()
            var = by.var(ddof=1)[n >= 2].dropna()
            if not len(var):
                continue
            means = by.mean().dropna()
            seed_sd = float(np.sqrt(var.mean()))
            task_sd = float(means.std(ddof=1)) if len(means) >= 2 else float("nan")
            rows.append(dict(method=m, quantity=q, seed_sd=seed_sd, seed_tasks=int(len(var)),
                             seeds=int(n[var.index].sum()), task_sd=task_sd, n_tasks=int(len(means)),
                             ratio=seed_sd / task_sd if task_sd > 0 else float("nan")))
    return pd.DataFrame(rows, columns=["method", "quantity", "seed_sd", "seed_tasks", "seeds", "task_sd", "n_tasks",
                                       "ratio"])


# ----------------------------------------------------------------------------- one-sample effects
SESOI = 0.02   # pre-registered smallest effect of interest: 2 accuracy points (claim 4b's "no DG gain")
EFFECT_QUANTITIES = ["id_gain", "dg_gain", "cf_drop", "balance"]


def effects(runs: pd.DataFrame, variant: str = "default", mde: bool = True) -> pd.DataFrame:
    """Per method and quantity, the per-task seed means tested against 0: Hodges-Lehmann estimate, the
    inverted exact signed-rank interval and p, and the equivalence test (TOST) within +/- ``SESOI``
    with its 90% interval; mean, between-task SD and the minimal detectable shift (80% power, two-sided
    0.05, either direction: ``lib.stats.mde_signed_rank``; NaN without ``mde``, as while leaving one task
    out)."""
    r = runs[runs["variant"] == variant]
    rows = []
    for m in methods_in(r):
        g = r[r["method"] == m]
        for q in EFFECT_QUANTITIES:
            c = stats.paired_test(g[q].to_numpy(float), g["train_task"].to_numpy(), mde=mde)
            e = stats.equivalence_test(g[q].to_numpy(float), SESOI, g["train_task"].to_numpy())
            rows.append(dict(method=m, quantity=q, estimate=c["estimate"], lo=c["lo"], hi=c["hi"], p=c["p"],
                             tost_p=e["p_tost"], tost_lo90=e["lo90"], tost_hi90=e["hi90"], sesoi=SESOI,
                             mean=c["mean"], sd=c["sd"], n_tasks=c["n_tasks"],
                             mde=c["mde"], ci_method=c["ci_method"],
                             p_method=c["p_method"]))
    return pd.DataFrame(rows, columns=["method", "quantity", "estimate", "lo", "hi", "p", "tost_p", "tost_lo90",
                                       "tost_hi90", "sesoi", "mean", "sd", "n_tasks", "mde", "ci_method", "p_method"])


# ----------------------------------------------------------------------------- everything, once
def claim_tables(zs: pd.DataFrame, runs: pd.DataFrame, pts: pd.DataFrame, full: bool = True,
                 tost: bool = False) -> dict:
    """The tables the claims read, from the zero-shot table, the run-level table and the gain points
    (:func:`gain_points`). ``full=False`` (leave-one-task-out) computes only the rows the claims read:
    the pooled ID raw-gain predictors of ss and ACS and their contrast, BitFit's excess forgetting's rho
    (and, with ``tost``, the comparisons' equivalence tests: claim rule v4 reads them)."""
    only = None if full else (CLAIM_STRATUM, CLAIM_FORM)
    fpts, fsp = forgetting_vs_ss(zs, runs, spearman_of=None if full else (EXCESS,))
    pred_pts = pts if full else pts[pts["method"] == "pooled"]
    measures = present_measures(zs) if full else [m for m in ("ss", "acs") if m in present_measures(zs)]
    return {"method_summary": method_summary(runs), "comparisons": comparisons(runs, equivalence=full, tost=full or tost),
            "effects": effects(runs, mde=full),
            "gain_points": pts, "predictors": predictors(pred_pts, measures, only),
            "predictor_contrasts": predictor_contrasts(pts, only=only), "forgetting_vs_ss": fpts, "forgetting_spearman": fsp}


def compute(res: dict) -> dict:
    """Every statistic of the study from ``load_results``'s dict (inputs kept under their names).
    ``claims`` (``lib.analysis.claims``) and every figure read only these tables."""
    check_inputs(res)
    zs, ft, ev = res["zero_shot"], res["finetune"], res["evaluation"]
    runs = run_level(ev, ft)
    out = {**res, "runs": runs, "seed_aggregate": seed_aggregate(ev), "zero_shot_summary": zero_shot_summary(zs),
           "world_check": world_check(zs), "ablations": ablation_table(runs, ft), "alignment": alignment(ev, runs),
           "run_flags": run_flags(runs), "training_check": training_check(runs),
           **claim_tables(zs, runs, gain_points(zs, ev, runs))}
    sn = seed_noise(runs)
    if len(sn):  # a profile with a seed-noise subset (study v3), or several seeds per task
        out["seed_noise"] = sn
    tr = sweep_tradeoff(res.get("sweep_evaluation"))
    if len(tr):  # study v3: every sweep point evaluated (world v2's profiles have no such rows)
        out["sweep_tradeoff"] = tr
    out["headline"] = headline(out["method_summary"], out["run_flags"])
    return out
