"""Every statistic of the study, computed once, into tables (``compute``).

Inputs are the stage tables of ``build/<profile>/results/``:

* ``zero_shot.csv``  one row per (task, domain) test split of the zero-shot model;
* ``finetune.csv``   one row per fine-tuning run (optional column ``collapsed``);
* ``evaluation.csv`` one row per (run, eval split), schema ID / DG / CF.

Conventions
-----------
* Accuracies are fractions in [0, 1]; gains and drops are differences of fractions (the
  ``headline`` table alone is in accuracy points, x100).
* ``gain = acc_finetuned - acc_zero_shot``; ``forgetting = acc_zero_shot - acc_finetuned`` on CF
  rows. DG = any non-ID domain of the trained task (1 or 2 shifted domains); CF = every other task.
* A run's value is the mean over its eval rows; a task's value the mean over its seeds; a method's
  value the mean over tasks. Intervals come from ``lib.stats``: the bootstrap over **tasks** (BCa),
  seeds nested inside (see that module).
* When ``finetune.csv`` has a ``collapsed`` column every statistic is computed twice, on all runs
  and without the collapsed runs (column ``subset``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import stats

METHOD_ORDER = ["full", "clip_adapter", "lora", "bitfit", "aclip"]
METHOD_LABELS = {"full": "Full", "clip_adapter": "CLIP-Adapter", "lora": "LoRA", "bitfit": "BitFit",
                 "aclip": "A-CLIP", "pooled": "pooled"}
RUN_KEYS = ["train_task", "method", "variant", "seed"]
RESULT_FILES = ("zero_shot", "finetune", "evaluation")
ALL_RUNS, WITHOUT_COLLAPSED = "all runs", "without collapsed runs"

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
TARGETS = ("ID", "DG", "ID+DG")
ALIGNMENT_MEASURES = ("ss", "acs")

# run-level quantities (per run: mean over its eval rows) and their bounds
RUN_COLUMNS = ["id_gain", "dg_gain", "cf_drop", "balance", "id_acc", "dg_acc",
               "dg_d_ss", "dg_d_acs", "cf_d_ss", "cf_d_acs", "cf_abs_d_ss", "cf_abs_d_acs"]
BOUNDS = {"id_gain": (-1, 1), "dg_gain": (-1, 1), "cf_drop": (-1, 1), "balance": (-2, 2), "id_acc": (0, 1),
          "dg_acc": (0, 1), "dg_d_ss": (-2, 2), "dg_d_acs": (-2, 2), "cf_d_ss": (-2, 2), "cf_d_acs": (-2, 2),
          "cf_abs_d_ss": (0, 2), "cf_abs_d_acs": (0, 2)}
DIFF_BOUNDS = {k: (-(b[1] - b[0]), b[1] - b[0]) for k, b in BOUNDS.items()}
HEADLINE = [("id_gain", "ID gain"), ("dg_gain", "DG gain"), ("cf_drop", "CF drop"), ("balance", "balance")]
COMPARED = ["id_gain", "dg_gain", "cf_drop", "balance", "cf_abs_d_ss", "cf_abs_d_acs"]

ZS_REQUIRED = ["task", "domain", "domain_kind", "acc"]
EV_REQUIRED = ["train_task", "method", "variant", "seed", "eval_task", "eval_domain", "schema",
               "acc_zero_shot", "acc_finetuned"]
FT_REQUIRED = ["task", "method", "variant", "seed"]
OLD_NAMES = {"zero_shot_acc": "acc", "silhouette": "ss", "class_silhouette": "class_ss",
             "silhouette_zero_shot": "ss_zero_shot", "silhouette_finetuned": "ss_finetuned"}


# ----------------------------------------------------------------------------- checks
def check_inputs(res: dict) -> None:
    """Clear early errors for missing tables or columns (with the producing stage to rerun)."""
    producers = {"zero_shot": "01_zero_shot", "finetune": "02_finetune (lib.aggregate)",
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
    dg_gain - cf_drop) and ``collapsed`` (from finetune.csv, False when it has no such column)."""
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
    base["collapsed"] = False
    if ft is not None and "collapsed" in ft.columns and len(ft):
        c = ft.rename(columns={"task": "train_task"})[RUN_KEYS + ["collapsed"]]
        c = c.assign(collapsed=c["collapsed"].map(_as_bool))
        base = base.drop(columns="collapsed").merge(c, on=RUN_KEYS, how="left")
        base["collapsed"] = base["collapsed"].fillna(False).astype(bool)
    return base[RUN_KEYS + RUN_COLUMNS + ["collapsed"]]


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
    its BCa interval over tasks (``value``, ``lo``, ``hi``), n_tasks, n_seeds, n_runs."""
    r = runs[runs["variant"] == variant]
    rows = []
    for m in methods_in(r):
        g = r[r["method"] == m]
        for q in RUN_COLUMNS:
            ci = stats.task_mean_ci(g[q], g["train_task"], bounds=BOUNDS[q])
            rows.append(dict(method=m, quantity=q, value=ci["value"], lo=ci["lo"], hi=ci["hi"],
                             n_tasks=ci["n_tasks"], n_seeds=int(g["seed"].nunique()), n_runs=len(g)))
    return pd.DataFrame(rows, columns=["method", "quantity", "value", "lo", "hi", "n_tasks", "n_seeds", "n_runs"])


def wide(summary: pd.DataFrame, quantities=None) -> pd.DataFrame:
    """``method_summary`` (one subset) pivoted to one row per method: q, q_lo, q_hi (no computation)."""
    s = summary if quantities is None else summary[summary["quantity"].isin(quantities)]
    out = pd.DataFrame({"method": methods_in(s)})
    for q in dict.fromkeys(s["quantity"]):
        sub = s[s["quantity"] == q].set_index("method")
        for suffix, col in (("", "value"), ("_lo", "lo"), ("_hi", "hi")):
            out[q + suffix] = out["method"].map(sub[col])
    return out


def comparisons(runs: pd.DataFrame, variant: str = "default") -> pd.DataFrame:
    """Paired method comparisons: for each pair (method before versus in ``METHOD_ORDER``) and
    quantity, diff = method - versus per (task, seed) on the runs both have; the mean over tasks
    with its BCa interval over tasks, per-task wins / losses / ties and the sign test across tasks."""
    r = runs[runs["variant"] == variant]
    ms = methods_in(r)
    rows = []
    for i, a in enumerate(ms):
        for b in ms[i + 1:]:
            pair = r[r["method"] == a].merge(r[r["method"] == b], on=["train_task", "seed"], suffixes=("_a", "_b"))
            for q in COMPARED:
                diff = (pair[f"{q}_a"] - pair[f"{q}_b"]).to_numpy(float)
                c = stats.paired_comparison(diff, pair["train_task"].to_numpy(), bounds=DIFF_BOUNDS[q])
                rows.append(dict(quantity=q, method=a, versus=b, diff=c["value"], diff_lo=c["lo"], diff_hi=c["hi"],
                                 wins=c["wins"], losses=c["losses"], ties=c["ties"], sign_p=c["sign_p"],
                                 n_tasks=c["n_tasks"]))
    cols = ["quantity", "method", "versus", "diff", "diff_lo", "diff_hi", "wins", "losses", "ties", "sign_p",
            "n_tasks"]
    return pd.DataFrame(rows, columns=cols)


def comparison(comp: pd.DataFrame, quantity: str, a: str, b: str) -> dict | None:
    """The row of ``comparisons`` for a - b (sign flipped, wins and losses swapped, if stored as b - a)."""
    hit = comp[(comp["quantity"] == quantity) & (comp["method"] == a) & (comp["versus"] == b)]
    if len(hit):
        return hit.iloc[0].to_dict()
    hit = comp[(comp["quantity"] == quantity) & (comp["method"] == b) & (comp["versus"] == a)]
    if not len(hit):
        return None
    r = hit.iloc[0].to_dict()
    return {**r, "method": a, "versus": b, "diff": -r["diff"], "diff_lo": -r["diff_hi"], "diff_hi": -r["diff_lo"],
            "wins": r["losses"], "losses": r["wins"]}


def collapse_counts(runs: pd.DataFrame, variant: str = "default") -> pd.DataFrame:
    r = runs[runs["variant"] == variant]
    g = r.groupby("method")
    out = pd.DataFrame({"collapsed_runs": g["collapsed"].sum().astype(int), "runs": g.size()}).reset_index()
    return order_methods(out)


def headline(summary: pd.DataFrame, collapse: pd.DataFrame) -> pd.DataFrame:
    """One row per method in accuracy points (x100): ID gain, DG gain, CF drop, balance with their
    intervals over tasks; collapsed runs; tasks and seeds."""
    w = wide(summary, [q for q, _ in HEADLINE])
    out = pd.DataFrame({"method": w["method"]})
    for q, _ in HEADLINE:
        for s in ("", "_lo", "_hi"):
            out[q + s] = w[q + s] * 100.0
    c = collapse.set_index("method")
    out["collapsed_runs"] = out["method"].map(c["collapsed_runs"]).fillna(0).astype(int)
    out["runs"] = out["method"].map(c["runs"]).fillna(0).astype(int)
    n = summary.drop_duplicates("method").set_index("method")
    out["n_tasks"] = out["method"].map(n["n_tasks"]).astype(int)
    out["n_seeds"] = out["method"].map(n["n_seeds"]).astype(int)
    return out


def alignment(ev: pd.DataFrame, runs: pd.DataFrame, variant: str = "default") -> pd.DataFrame:
    """ss and ACS before and after fine-tuning per method on DG data and CF data: zero-shot and
    fine-tuned means over tasks (rows -> run -> task), BCa intervals over tasks of the fine-tuned
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
                             change=c["value"], change_lo=c["lo"], change_hi=c["hi"], n_tasks=f["n_tasks"]))
    cols = ["method", "schema", "measure", "zero_shot", "finetuned", "finetuned_lo", "finetuned_hi", "change",
            "change_lo", "change_hi", "n_tasks"]
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
    standard deviation, tasks in range, and the Spearman rho of zero-shot ss with ACS over every
    (task, domain) point (tasks resampled as units; exact permutation p when few tasks)."""
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
        tasks = list(zid["task"])
        g = {t: zs[zs["task"] == t].sort_values(["domain_kind", "domain"]) for t in tasks}
        width = max(len(v) for v in g.values())
        X = np.full((len(tasks), width), np.nan)
        Y = np.full((len(tasks), width), np.nan)
        for i, t in enumerate(tasks):
            X[i, :len(g[t])], Y[i, :len(g[t])] = g[t]["ss"].astype(float), g[t]["acs"].astype(float)
        r = stats.correlation(X, Y)
        summary.update(ss_acs_rho=r["rho"], ss_acs_lo=r["lo"], ss_acs_hi=r["hi"], ss_acs_p=r["p"],
                       n_points=r["n_points"])
    return pd.concat([rows, pd.DataFrame([summary])], ignore_index=True)


# ----------------------------------------------------------------------------- predictors
def gain_points(zs: pd.DataFrame, ev: pd.DataFrame, runs: pd.DataFrame, variant: str = "default") -> pd.DataFrame:
    """One point per (method, trained task, domain of that task): the seed-averaged gain (ID rows for
    the ID domain, DG rows for each shifted domain), its headroom-normalised form gain / (1 -
    zero-shot accuracy) (NaN without headroom), the slot (0 = ID, 1.. = shifted domains in name
    order) and the zero-shot measures of that task/domain; plus method 'pooled' = mean over methods."""
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
    mcols = [m for m in present_measures(zs) if m != "acc"]
    z = zs[["task", "domain"] + mcols]
    out = g.merge(z, on=["task", "domain"], how="left")
    cols = ["method", "task", "domain", "schema", "slot", "gain", "gain_headroom", "acc_zero_shot", "n_seeds"] + mcols
    return order_methods(out[cols], then=["task", "slot"])


def _blocks(pts: pd.DataFrame, col: str, tasks: list, slots: list) -> np.ndarray:
    t = pts.set_index(["task", "slot"])[col]
    return np.array([[float(t.get((k, s), np.nan)) for s in slots] for k in tasks], dtype=np.float64)


def _target_slots(pts: pd.DataFrame, target: str) -> list:
    allslots = sorted(pts["slot"].unique())
    return {"ID": [0], "DG": [s for s in allslots if s > 0], "ID+DG": allslots}[target]


def predictor_arrays(pts: pd.DataFrame, measure: str, form: str, target: str):
    """(x, y, z) as [task, slot] arrays for ``stats.correlation``: x = the measure, y = the gain
    (raw, or headroom-normalised), z = the zero-shot accuracy for the partial form (else None)."""
    tasks = sorted(pts["task"].unique())
    slots = _target_slots(pts, target)
    x = _blocks(pts, "acc_zero_shot" if measure == "acc" else measure, tasks, slots)
    y = _blocks(pts, "gain_headroom" if form == HEADROOM else "gain", tasks, slots)
    z = _blocks(pts, "acc_zero_shot", tasks, slots) if form == PARTIAL else None
    return x, y, z


def predictors(pts: pd.DataFrame, measures: list[str]) -> pd.DataFrame:
    """Spearman rho of each zero-shot measure with the gain over (task, domain) points, per method and
    pooled, per target (ID points, DG points, both) and form (raw gain, headroom-normalised gain,
    partial rho of the raw gain controlling for zero-shot accuracy) for the mean over methods; per
    method ID+DG points, raw and headroom-normalised gain: rho, BCa interval over tasks (a task's
    points resampled together), exact task-permutation p, n_points, n_tasks."""
    rows = []
    for meas in measures:
        for m in methods_in(pts):
            pm = pts[pts["method"] == m]
            # every target and form for the mean over methods; per method the main ones
            for target in (TARGETS if m == "pooled" else ("ID+DG",)):
                for form in (FORMS if m == "pooled" else (RAW, HEADROOM)):
                    if form == PARTIAL and meas == "acc":
                        continue
                    x, y, z = predictor_arrays(pm, meas, form, target)
                    r = stats.correlation(x, y, z)
                    rows.append(dict(measure=meas, method=m, target=target, form=form, rho=r["rho"], lo=r["lo"],
                                     hi=r["hi"], p=r["p"], n_points=r["n_points"], n_tasks=r["n_tasks"],
                                     expected_sign=EXPECTED_SIGN.get(meas, 0)))
    cols = ["measure", "method", "target", "form", "rho", "lo", "hi", "p", "n_points", "n_tasks", "expected_sign"]
    return pd.DataFrame(rows, columns=cols)


def predictor_contrasts(pts: pd.DataFrame, a: str = "ss", b: str = "acs", method: str = "pooled",
                        target: str = "ID+DG") -> pd.DataFrame:
    """diff = sign_a * rho(a, gain) - sign_b * rho(b, gain) (both on the 'difficulty' scale: > 0 means
    a tracks the gain better than b), per form, with a BCa interval over tasks (paired: the same
    resampled tasks for both correlations)."""
    rows = []
    pm = pts[pts["method"] == method]
    if a in pts and b in pts and len(pm):
        sa, sb = EXPECTED_SIGN[a], EXPECTED_SIGN[b]
        for form in FORMS:
            xa, y, z = predictor_arrays(pm, a, form, target)
            xb, _, _ = predictor_arrays(pm, b, form, target)
            r = stats.correlation_difference(xa, xb, y, z, sign_a=sa, sign_b=sb)
            rows.append(dict(contrast=f"{a} vs {b}", method=method, target=target, form=form, diff=r["diff"],
                             lo=r["lo"], hi=r["hi"], n_tasks=r["n_tasks"]))
    return pd.DataFrame(rows, columns=["contrast", "method", "target", "form", "diff", "lo", "hi", "n_tasks"])


# ----------------------------------------------------------------------------- forgetting vs ss
def forgetting_vs_ss(zs: pd.DataFrame, runs: pd.DataFrame, variant: str = "default"):
    """Per (method, trained task): the seed-mean CF drop (and its min / max over seeds) next to the
    task's ID-domain zero-shot ss; and per method the Spearman rho over tasks (BCa interval, exact
    p). Returns (points, spearman)."""
    r = runs[runs["variant"] == variant]
    pts = r.groupby(["method", "train_task"]).agg(cf_drop=("cf_drop", "mean"), cf_drop_min=("cf_drop", "min"),
                                                  cf_drop_max=("cf_drop", "max"),
                                                  n_seeds=("seed", "nunique")).reset_index()
    zid = zs[zs["domain_kind"] == "ID"].drop_duplicates("task").set_index("task")
    pts["ss_zero_shot"] = pts["train_task"].map(zid["ss"]) if "ss" in zid else np.nan
    pts = order_methods(pts.sort_values("ss_zero_shot", kind="stable"))
    rows = []
    for m in methods_in(pts):
        g = pts[pts["method"] == m]
        c = stats.correlation(g["ss_zero_shot"].to_numpy(float), g["cf_drop"].to_numpy(float))
        rows.append(dict(method=m, rho=c["rho"], lo=c["lo"], hi=c["hi"], p=c["p"], n_tasks=c["n_tasks"]))
    sp = pd.DataFrame(rows, columns=["method", "rho", "lo", "hi", "p", "n_tasks"])
    return pts[["method", "train_task", "ss_zero_shot", "cf_drop", "cf_drop_min", "cf_drop_max", "n_seeds"]], sp


# ----------------------------------------------------------------------------- ablations
def ablation_table(runs: pd.DataFrame, ft: pd.DataFrame, method: str = "aclip") -> pd.DataFrame:
    """Ablation variants of ``method`` next to the default methods, every row restricted to the tasks
    and seeds the ablations ran on: ID gain, DG gain, CF drop, balance (interval over tasks when
    there are at least ``stats.MIN_TASKS_CI`` tasks), trainable parameters."""
    q = ["id_gain", "dg_gain", "cf_drop", "balance"]
    cols = ["label", "method", "variant", "trainable_params"] + [c + s for c in q for s in ("", "_lo", "_hi")] + \
           ["n_tasks", "n_seeds", "seeds", "tasks"]
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
    for (m, v), g in sub.groupby(["method", "variant"]):
        r = dict(method=m, variant=v, label=METHOD_LABELS.get(m, m) + ("" if v == "default" else f" · {v}"),
                 trainable_params=float(params.get((m, v), np.nan)) if len(params) else np.nan)
        for c in q:
            ci = stats.task_mean_ci(g[c], g["train_task"], bounds=BOUNDS[c])
            r[c], r[c + "_lo"], r[c + "_hi"] = ci["value"], ci["lo"], ci["hi"]
        r.update(n_tasks=int(g["train_task"].nunique()), n_seeds=int(g["seed"].nunique()),
                 seeds=",".join(map(str, seeds)), tasks=",".join(tasks))
        rows.append(r)
    t = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    t["_k"] = [(0 if v == "default" else 1, order.get(m, 99), v) for m, v in zip(t["method"], t["variant"])]
    t = t.sort_values("_k").drop(columns="_k").reset_index(drop=True)[cols]
    t.attrs["note"] = (f"Ablations ran on seed(s) {', '.join(map(str, seeds))} and task(s) {', '.join(tasks)}: every "
                       f"row, the default methods included, uses only those seeds and tasks"
                       + ("" if len(tasks) >= stats.MIN_TASKS_CI else
                          f" (fewer than {stats.MIN_TASKS_CI} tasks: no interval)") + ".")
    return t


# ----------------------------------------------------------------------------- everything, once
STAT_TABLES = ("method_summary", "comparisons", "predictors", "predictor_contrasts", "forgetting_spearman",
               "forgetting_vs_ss", "gain_points", "alignment", "collapse")


def _subsets(runs: pd.DataFrame) -> dict:
    out = {ALL_RUNS: runs}
    if runs["collapsed"].any():
        out[WITHOUT_COLLAPSED] = runs[~runs["collapsed"]]
    return out


def compute(res: dict) -> dict:
    """Every statistic of the study from ``load_results``'s dict (inputs kept under their names).

    The tables with a ``subset`` column hold the statistics on all runs and, when finetune.csv
    marks collapsed runs, without them. ``claims`` (``lib.analysis.claims``) and every figure read
    only these tables."""
    check_inputs(res)
    zs, ft, ev = res["zero_shot"], res["finetune"], res["evaluation"]
    runs = run_level(ev, ft)
    measures = present_measures(zs)
    per = {name: [] for name in STAT_TABLES}
    for subset, r in _subsets(runs).items():
        pts = gain_points(zs, ev, r)
        fpts, fsp = forgetting_vs_ss(zs, r)
        got = {"method_summary": method_summary(r), "comparisons": comparisons(r), "gain_points": pts,
               "predictors": predictors(pts, measures), "predictor_contrasts": predictor_contrasts(pts),
               "forgetting_vs_ss": fpts, "forgetting_spearman": fsp, "alignment": alignment(ev, r),
               "collapse": collapse_counts(runs)}
        for name, df in got.items():
            per[name].append(df.assign(subset=subset))
    out = {**res, "runs": runs, "seed_aggregate": seed_aggregate(ev), "zero_shot_summary": zero_shot_summary(zs),
           "world_check": world_check(zs),
           "ablations": ablation_table(runs, ft)}
    for name, dfs in per.items():
        out[name] = pd.concat(dfs, ignore_index=True)
    out["collapse"] = out["collapse"][out["collapse"]["subset"] == ALL_RUNS].drop(columns="subset")
    out["headline"] = headline(subset_of(out["method_summary"]), out["collapse"])
    return out


def subset_of(df: pd.DataFrame, subset: str = ALL_RUNS) -> pd.DataFrame:
    """Rows of one subset (without the column)."""
    return df[df["subset"] == subset].drop(columns="subset").reset_index(drop=True)
