"""From result tables to the paper's tables and claims.

Inputs are the stage tables (``build/<profile>/results/``):

* ``zero_shot.csv``  one row per (task, domain) test split of the zero-shot model;
* ``finetune.csv``   one row per fine-tuning run;
* ``evaluation.csv`` one row per (run, eval split), schema ID / DG / CF.

Every function takes DataFrames and returns DataFrames (pure pandas/numpy + ``lib.metrics``),
deterministically: bootstraps are seeded, groups are sorted.

Conventions
-----------
* Accuracies are fractions in [0, 1]; gains and drops are differences of fractions.
* ``gain = acc_finetuned - acc_zero_shot`` on every row; ``forgetting = acc_zero_shot -
  acc_finetuned`` (``metrics.forgetting``) on CF rows only (NaN elsewhere).
* Averages over a run's eval rows first, then over training tasks, and the 95% CI (Student t)
  over seeds of that task-averaged value. With one seed the CI is NaN and every verdict that
  needs one is "inconclusive".
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from . import manifest, metrics, paths

METHOD_ORDER = ["full", "clip_adapter", "lora", "bitfit", "aclip"]
METHOD_LABELS = {"full": "Full", "clip_adapter": "CLIP-Adapter", "lora": "LoRA", "bitfit": "BitFit",
                 "aclip": "A-CLIP", "pooled": "pooled"}
RUN_KEYS = ["train_task", "method", "variant", "seed"]
EVAL_KEYS = ["train_task", "method", "variant", "eval_task", "eval_domain", "schema"]
MEASURES = ["silhouette", "acs", "class_silhouette", "modality_gap", "zero_shot_acc"]
# Sign of the Spearman correlation with the fine-tuning gain that a measure of *difficulty* should
# show: ss and the modality gap grow with misalignment (more to gain); ACS, zero-shot accuracy and
# the class silhouette grow with alignment / ease (less to gain). Only ss and ACS come from the
# paper; the others are our reading, shown for reference.
EXPECTED_SIGN = {"silhouette": 1, "acs": -1, "class_silhouette": -1, "modality_gap": 1, "zero_shot_acc": -1}
VERDICTS = ("holds", "does not hold", "inconclusive")
RESULT_FILES = ("zero_shot", "finetune", "evaluation")


# ----------------------------------------------------------------------------- loading / saving
def load_results(profile: str) -> dict:
    """The three stage tables of a profile as DataFrames: keys zero_shot, finetune, evaluation."""
    rd = paths.results_dir(profile)
    producers = {"zero_shot": "01_zero_shot (make zero-shot)", "finetune": "02_finetune (make finetune)",
                 "evaluation": "03_evaluate (make evaluate)"}
    out = {}
    for name in RESULT_FILES:
        f = rd / f"{name}.csv"
        if not f.exists():
            raise FileNotFoundError(f"{f} does not exist: it is written by notebook {producers[name]} "
                                    f"with PROFILE={profile}")
        out[name] = pd.read_csv(f)
    return out


def input_fingerprints(profile: str) -> dict:
    """sha256 (16 hex) of each input table, for the provenance of derived files."""
    rd = paths.results_dir(profile)
    return {f"{n}.csv": hashlib.sha256((rd / f"{n}.csv").read_bytes()).hexdigest()[:16]
            for n in RESULT_FILES if (rd / f"{n}.csv").exists()}


def _fmt_cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "" if np.isnan(v) else str(v)
        if float(v).is_integer() and abs(v) < 1e15:
            return f"{int(v):,}" if abs(v) >= 10000 else str(int(v))
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.3f}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no ``tabulate`` needed); numbers right-aligned."""
    cols = [str(c) for c in df.columns]
    num = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns]
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in cols) + " |",
             "|" + "|".join("---:" if n else ":---" for n in num) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def save_table(df: pd.DataFrame, name: str, out_dir) -> list[Path]:
    """Write ``<name>.csv`` and ``<name>.md`` (with ``df.attrs['note']`` under the table, if any)."""
    out_dir = paths.ensure(Path(out_dir))
    csv, mdf = out_dir / f"{name}.csv", out_dir / f"{name}.md"
    df.to_csv(csv, index=False, float_format="%.6g")
    text = markdown_table(df)
    if df.attrs.get("note"):
        text += f"\n{df.attrs['note']}\n"
    mdf.write_text(text)
    return [csv, mdf]


# ----------------------------------------------------------------------------- helpers
def _order_methods(df: pd.DataFrame, col: str = "method") -> pd.DataFrame:
    order = {m: i for i, m in enumerate(METHOD_ORDER + ["pooled"])}
    key = df[col].map(lambda m: order.get(m, len(order)))
    return df.assign(_k=key).sort_values(["_k", col], kind="stable").drop(columns="_k").reset_index(drop=True)


def _ci_table(df: pd.DataFrame, keys: list, cols: list, confidence: float = 0.95,
              sd: tuple = ()) -> pd.DataFrame:
    """Per group of ``keys``: ``<col>`` (mean), ``<col>_lo``, ``<col>_hi`` (metrics.mean_ci over the
    rows of the group, i.e. over seeds), ``<col>_sd`` for cols in ``sd``, and ``n_seeds``."""
    rows = []
    for k, g in df.groupby(keys, sort=True, dropna=False):
        k = k if isinstance(k, tuple) else (k,)
        r = dict(zip(keys, k))
        for c in cols:
            m, lo, hi = metrics.mean_ci(g[c].to_numpy(dtype=float), confidence)
            r[c], r[f"{c}_lo"], r[f"{c}_hi"] = m, lo, hi
            if c in sd:
                v = g[c].dropna().to_numpy(dtype=float)
                r[f"{c}_sd"] = float(np.std(v, ddof=1)) if v.size > 1 else float("nan")
        r["n_seeds"] = int(g["seed"].nunique()) if "seed" in g else len(g)
        rows.append(r)
    cols_out = list(keys) + [x for c in cols for x in (c, f"{c}_lo", f"{c}_hi")
                             + ((f"{c}_sd",) if c in sd else ())] + ["n_seeds"]
    return pd.DataFrame(rows, columns=cols_out)


def _with_deltas(ev: pd.DataFrame) -> pd.DataFrame:
    return ev if {"gain", "forgetting", "d_acs", "d_silhouette"} <= set(ev.columns) else add_deltas(ev)


# ----------------------------------------------------------------------------- per row / seed
def add_deltas(ev: pd.DataFrame) -> pd.DataFrame:
    """Adds gain (all rows), forgetting (CF rows; NaN elsewhere), d_acs, d_silhouette (fine-tuned
    minus zero-shot), and d_class_silhouette / d_modality_gap when those columns exist."""
    d = ev.copy()
    zs = d["acc_zero_shot"].to_numpy(dtype=float)
    ft = d["acc_finetuned"].to_numpy(dtype=float)
    d["gain"] = ft - zs
    d["forgetting"] = np.where(d["schema"].eq("CF").to_numpy(), metrics.forgetting(zs, ft), np.nan)
    for m in ("acs", "silhouette", "class_silhouette", "modality_gap"):
        if f"{m}_zero_shot" in d and f"{m}_finetuned" in d:
            d[f"d_{m}"] = d[f"{m}_finetuned"].astype(float) - d[f"{m}_zero_shot"].astype(float)
    return d


def seed_aggregate(ev: pd.DataFrame, cols=("acc_zero_shot", "acc_finetuned", "gain", "forgetting",
                                           "d_acs", "d_silhouette")) -> pd.DataFrame:
    """Mean and 95% CI over seeds per (train_task, method, variant, eval_task, eval_domain, schema):
    columns ``<col>_mean, <col>_lo, <col>_hi`` and ``n_seeds``."""
    d = _with_deltas(ev)
    cols = [c for c in cols if c in d]
    t = _ci_table(d, EVAL_KEYS, cols)
    t = t.rename(columns={c: f"{c}_mean" for c in cols})
    order = {"ID": 0, "DG": 1, "CF": 2}
    t = t.assign(_s=t["schema"].map(order)).sort_values(
        ["train_task", "method", "variant", "_s", "eval_task", "eval_domain"], kind="stable")
    return _order_methods(t.drop(columns="_s"))


RUN_COLUMNS = ["id_gain", "dg_gain", "cf_drop", "balance", "id_acc", "dg_acc",
               "dg_d_silhouette", "dg_d_acs", "cf_d_silhouette", "cf_d_acs",
               "dg_abs_d_silhouette", "dg_abs_d_acs", "cf_abs_d_silhouette", "cf_abs_d_acs"]


def run_level(ev: pd.DataFrame) -> pd.DataFrame:
    """One row per run (train_task, method, variant, seed), averaged over its eval rows:
    id_gain / dg_gain (mean gain on ID / DG rows), cf_drop (mean forgetting on CF rows),
    balance = dg_gain - cf_drop, id_acc / dg_acc (fine-tuned accuracy), and the alignment change
    on DG and CF data: mean signed change (``*_d_*``) and mean absolute change (``*_abs_d_*``)."""
    d = _with_deltas(ev).copy()
    d["abs_d_silhouette"] = d["d_silhouette"].abs()
    d["abs_d_acs"] = d["d_acs"].abs()
    base = d[RUN_KEYS].drop_duplicates().sort_values(RUN_KEYS).reset_index(drop=True)
    spec = {"ID": {"id_gain": "gain", "id_acc": "acc_finetuned"},
            "DG": {"dg_gain": "gain", "dg_acc": "acc_finetuned", "dg_d_silhouette": "d_silhouette",
                   "dg_d_acs": "d_acs", "dg_abs_d_silhouette": "abs_d_silhouette", "dg_abs_d_acs": "abs_d_acs"},
            "CF": {"cf_drop": "forgetting", "cf_d_silhouette": "d_silhouette", "cf_d_acs": "d_acs",
                   "cf_abs_d_silhouette": "abs_d_silhouette", "cf_abs_d_acs": "abs_d_acs"}}
    for schema, cols in spec.items():
        s = d[d["schema"] == schema].groupby(RUN_KEYS)[list(cols.values())].mean()
        s = pd.DataFrame({new: s[old] for new, old in cols.items()}) if len(s) else \
            pd.DataFrame(columns=list(cols), index=pd.MultiIndex.from_arrays([[]] * 4, names=RUN_KEYS))
        base = base.merge(s.reset_index(), on=RUN_KEYS, how="left")
    base["balance"] = base["dg_gain"] - base["cf_drop"]
    return base[RUN_KEYS + RUN_COLUMNS]


def seed_level(ev: pd.DataFrame, variant: str | None = "default") -> pd.DataFrame:
    """Per (method, variant, seed): the run-level columns averaged over training tasks (NaN-skipping),
    plus n_tasks. ``variant=None`` keeps every variant."""
    r = run_level(ev)
    if variant is not None:
        r = r[r["variant"] == variant]
    g = r.groupby(["method", "variant", "seed"], sort=True)
    out = g[RUN_COLUMNS].mean()
    out["n_tasks"] = g["train_task"].nunique()
    return out.reset_index()


def method_summary(ev: pd.DataFrame, variant: str = "default") -> pd.DataFrame:
    """Per method: ID gain, DG gain, CF drop (forgetting), balance (DG gain - CF drop), and the
    change of ss / ACS on DG and CF data, each averaged over eval rows within a run, then over
    tasks; 95% CI over seeds of the task-averaged value (``_lo``/``_hi``); ``cf_drop_sd`` is the
    standard deviation of the CF drop over seeds."""
    s = seed_level(ev, variant)
    t = _ci_table(s, ["method"], RUN_COLUMNS, sd=("cf_drop",))
    t["n_tasks"] = t["method"].map(s.groupby("method")["n_tasks"].max())
    t.insert(1, "variant", variant)
    return _order_methods(t)


def alignment_table(ev: pd.DataFrame, variant: str = "default") -> pd.DataFrame:
    """Alignment before vs after fine-tuning, per method and schema (DG, CF) and measure (ss, ACS):
    zero-shot and fine-tuned means (rows -> runs -> tasks -> seeds), CI over seeds of the
    fine-tuned value and of the change."""
    d = _with_deltas(ev)
    d = d[(d["variant"] == variant) & d["schema"].isin(["DG", "CF"])]
    rows = []
    for measure in ("silhouette", "acs"):
        cols = [f"{measure}_zero_shot", f"{measure}_finetuned", f"d_{measure}"]
        run = d.groupby(RUN_KEYS + ["schema"])[cols].mean().reset_index()
        sd = run.groupby(["method", "schema", "seed"])[cols].mean().reset_index()
        t = _ci_table(sd, ["method", "schema"], cols)
        t = t.rename(columns=lambda c: c.replace(f"{measure}_", "").replace(f"d_{measure}", "change"))
        t.insert(2, "measure", measure)
        rows.append(t)
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    return _order_methods(out) if len(out) else out


# ----------------------------------------------------------------------------- predictors
def gain_points(zs: pd.DataFrame, ev: pd.DataFrame, variant: str = "default") -> pd.DataFrame:
    """One point per (method, task, domain) of the trained task: seed-averaged gain (ID rows for the ID
    domain, DG rows for shifted domains) next to the zero-shot measures of that task/domain; plus
    method 'pooled' = mean gain over methods."""
    d = _with_deltas(ev)
    d = d[(d["variant"] == variant) & d["schema"].isin(["ID", "DG"])]
    keys = ["method", "train_task", "eval_domain", "schema"]
    per_seed = d.groupby(keys + ["seed"])["gain"].mean().reset_index()
    g = per_seed.groupby(keys).agg(gain=("gain", "mean"), n_seeds=("seed", "nunique")).reset_index()
    pooled = g.groupby(["train_task", "eval_domain", "schema"]).agg(
        gain=("gain", "mean"), n_seeds=("n_seeds", "min"), n_methods=("method", "nunique")).reset_index()
    pooled["method"] = "pooled"
    g["n_methods"] = 1
    g = pd.concat([g, pooled], ignore_index=True)
    g = g.rename(columns={"train_task": "task", "eval_domain": "domain"})
    mcols = [m for m in MEASURES if m in zs]
    z = zs[["task", "domain"] + mcols]
    out = g.merge(z, on=["task", "domain"], how="left")
    return _order_methods(out.sort_values(["method", "task", "schema", "domain"], kind="stable"))


def _target_rows(points: pd.DataFrame, target: str) -> pd.DataFrame:
    return points if target == "ID+DG" else points[points["schema"] == target]


def predictors(zs: pd.DataFrame, ev: pd.DataFrame, variant: str = "default", n_boot: int = 2000,
               seed: int = 0) -> pd.DataFrame:
    """How well each zero-shot measure predicts the fine-tuning gain across tasks and domains:
    Spearman rho with a percentile-bootstrap 95% CI (``metrics.spearman_bootstrap``) per method and
    pooled (mean gain over methods), for targets ID (ID-domain points), DG (shifted-domain points)
    and ID+DG (all). ``expected_sign`` is the sign a difficulty measure should have."""
    pts = gain_points(zs, ev, variant)
    rows = []
    methods = list(_order_methods(pd.DataFrame({"method": pts["method"].unique()}))["method"])
    for measure in [m for m in MEASURES if m in zs]:
        for method in methods:
            pm = pts[pts["method"] == method]
            for target in ("ID", "DG", "ID+DG"):
                sub = _target_rows(pm, target)
                r = metrics.spearman_bootstrap(sub[measure].to_numpy(float), sub["gain"].to_numpy(float),
                                               n_boot=n_boot, seed=seed)
                rows.append({"measure": measure, "method": method, "target": target, **r,
                             "expected_sign": EXPECTED_SIGN.get(measure, 0)})
    cols = ["measure", "method", "target", "rho", "lo", "hi", "p", "n", "expected_sign"]
    return pd.DataFrame(rows, columns=cols)


def _spearman_rows(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata
    r = rankdata(a, axis=1)
    return r - r.mean(axis=1, keepdims=True)


def paired_rho_difference(x1, x2, y, sign1: int = 1, sign2: int = 1, n_boot: int = 2000, seed: int = 0,
                          confidence: float = 0.95) -> dict:
    """diff = sign1*rho(x1, y) - sign2*rho(x2, y) with a paired percentile bootstrap CI (the same
    resampled points for both correlations). Returns dict(diff, lo, hi, n)."""
    x1, x2, y = (np.asarray(v, dtype=float).reshape(-1) for v in (x1, x2, y))
    ok = ~(np.isnan(x1) | np.isnan(x2) | np.isnan(y))
    x1, x2, y = x1[ok], x2[ok], y[ok]
    n = int(y.size)
    nan = float("nan")
    if n < 3:
        return dict(diff=nan, lo=nan, hi=nan, n=n)

    def rho(a, b):
        ra, rb = _spearman_rows(a), _spearman_rows(b)
        den = np.sqrt((ra * ra).sum(1) * (rb * rb).sum(1))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0, (ra * rb).sum(1) / den, np.nan)

    diff = float(sign1 * rho(x1[None], y[None])[0] - sign2 * rho(x2[None], y[None])[0])
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    b = sign1 * rho(x1[idx], y[idx]) - sign2 * rho(x2[idx], y[idx])
    b = b[np.isfinite(b)]
    if b.size == 0:
        return dict(diff=diff, lo=nan, hi=nan, n=n)
    a = (1 - confidence) / 2
    lo, hi = (float(v) for v in np.quantile(b, [a, 1 - a]))
    return dict(diff=diff, lo=lo, hi=hi, n=n)


# ----------------------------------------------------------------------------- forgetting vs ss
def forgetting_vs_ss(zs: pd.DataFrame, ev: pd.DataFrame, variant: str = "default", n_boot: int = 2000,
                     seed: int = 0) -> pd.DataFrame:
    """Per (method, train_task): mean CF forgetting (CI over seeds) next to the trained task's ID
    zero-shot ss (and ACS); columns rho, rho_lo, rho_hi, rho_p, rho_n hold the per-method Spearman
    of forgetting vs ss over tasks (repeated on each row of the method)."""
    r = run_level(ev)
    r = r[r["variant"] == variant]
    t = _ci_table(r, ["method", "train_task"], ["cf_drop"])
    zid = zs[zs["domain_kind"] == "ID"].drop_duplicates("task").set_index("task")
    t["ss_zero_shot"] = t["train_task"].map(zid["silhouette"])
    t["acs_zero_shot"] = t["train_task"].map(zid["acs"])
    for m, g in t.groupby("method"):
        s = metrics.spearman_bootstrap(g["ss_zero_shot"].to_numpy(float), g["cf_drop"].to_numpy(float),
                                       n_boot=n_boot, seed=seed)
        for k in ("rho", "lo", "hi", "p", "n"):
            t.loc[g.index, "rho" if k == "rho" else f"rho_{k}"] = s[k]
    t = t[["method", "train_task", "ss_zero_shot", "acs_zero_shot", "cf_drop", "cf_drop_lo", "cf_drop_hi",
           "n_seeds", "rho", "rho_lo", "rho_hi", "rho_p", "rho_n"]] if len(t) else t
    return _order_methods(t.sort_values(["method", "ss_zero_shot"], kind="stable")) if len(t) else t


def forgetting_spearman(fvs: pd.DataFrame) -> pd.DataFrame:
    """The per-method Spearman table of ``forgetting_vs_ss``."""
    if fvs.empty:
        return pd.DataFrame(columns=["method", "rho", "lo", "hi", "p", "n"])
    t = fvs.drop_duplicates("method")[["method", "rho", "rho_lo", "rho_hi", "rho_p", "rho_n"]]
    return t.rename(columns={"rho_lo": "lo", "rho_hi": "hi", "rho_p": "p", "rho_n": "n"}).reset_index(drop=True)


# ----------------------------------------------------------------------------- ablations
def ablation_table(ev: pd.DataFrame, ft: pd.DataFrame, method: str = "aclip") -> pd.DataFrame:
    """A-CLIP ablation variants next to A-CLIP (default) and the other methods: ID gain, DG gain,
    CF drop, balance, trainable parameters. All rows are restricted to the tasks and seeds the
    ablations were run on (``tasks``, ``seeds`` columns; ``attrs['note']`` says which), so the
    default rows can differ from ``method_summary``."""
    cols = ["label", "method", "variant", "kind", "trainable_params", "id_gain", "id_gain_lo", "id_gain_hi",
            "dg_gain", "dg_gain_lo", "dg_gain_hi", "cf_drop", "cf_drop_lo", "cf_drop_hi", "balance",
            "balance_lo", "balance_hi", "n_seeds", "n_tasks", "seeds", "tasks"]
    abl = ev[(ev["method"] == method) & (ev["variant"] != "default")]
    if abl.empty:
        out = pd.DataFrame(columns=cols)
        out.attrs["note"] = f"No ablation runs of {method} in this profile."
        return out
    tasks = sorted(abl["train_task"].unique())
    seeds = sorted(int(s) for s in abl["seed"].unique())
    sub = ev[ev["train_task"].isin(tasks) & ev["seed"].isin(seeds)
             & ((ev["variant"] == "default") | (ev["method"] == method))]
    s = seed_level(sub, variant=None)
    t = _ci_table(s, ["method", "variant"], ["id_gain", "dg_gain", "cf_drop", "balance"])
    t["n_tasks"] = [int(s[(s["method"] == m) & (s["variant"] == v)]["n_tasks"].max())
                    for m, v in zip(t["method"], t["variant"])]
    params = ft.groupby(["method", "variant"])["trainable_params"].median() if len(ft) else pd.Series(dtype=float)
    t["trainable_params"] = [params.get((m, v), np.nan) for m, v in zip(t["method"], t["variant"])]
    t["kind"] = np.where(t["variant"] == "default", "method (default)", f"{METHOD_LABELS.get(method, method)} ablation")
    t["label"] = [METHOD_LABELS.get(m, m) if v == "default" else f"{METHOD_LABELS.get(m, m)} · {v}"
                  for m, v in zip(t["method"], t["variant"])]
    t["seeds"] = ",".join(map(str, seeds))
    t["tasks"] = ",".join(tasks)
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    t["_k"] = [(0 if v == "default" else 1, order.get(m, 99), v) for m, v in zip(t["method"], t["variant"])]
    t = t.sort_values("_k").drop(columns="_k").reset_index(drop=True)[cols]
    one = "one seed (no CI)" if len(seeds) == 1 else f"{len(seeds)} seeds (95% CI over seeds)"
    t.attrs["note"] = (f"Ablations were run on seed(s) {', '.join(map(str, seeds))} and task(s) "
                       f"{', '.join(tasks)}: every row, the default methods included, uses only those "
                       f"seeds and tasks ({one}).")
    return t


# ----------------------------------------------------------------------------- claims
def _ci(v, lo, hi, pct: bool = False) -> str:
    k = 100 if pct else 1
    if not np.isfinite(v):
        return "n/a"
    s = f"{v * k:+.3f}" if not pct else f"{v * k:+.1f}"
    if np.isfinite(lo) and np.isfinite(hi):
        s += f" [{lo * k:+.3f}, {hi * k:+.3f}]" if not pct else f" [{lo * k:+.1f}, {hi * k:+.1f}]"
    return s


def _lab(m: str) -> str:
    return METHOD_LABELS.get(m, m)


def _rank_verdict(summary: pd.DataFrame, col: str, target: str, direction: str) -> tuple[str, str]:
    """Is ``target`` the method with the largest (direction='max') / smallest ('min') ``col``?
    holds: it is, and its 95% CI does not overlap the runner-up's; does not hold: another method's
    CI lies entirely beyond the target's in that direction; inconclusive otherwise."""
    s = summary.set_index("method")
    if target not in s.index or not np.isfinite(s.loc[target, col]):
        return "inconclusive", f"no {col} for {_lab(target)}"
    sign = 1.0 if direction == "max" else -1.0

    def score(m):
        v, lo, hi = (float(s.loc[m, c]) for c in (col, f"{col}_lo", f"{col}_hi"))
        return (sign * v, *sorted((sign * lo, sign * hi)))  # (value, lo, hi) on the "more is more" scale

    others = [m for m in s.index if m != target and np.isfinite(s.loc[m, col])]
    if not others:
        return "inconclusive", f"no other method has {col}"
    tv, tlo, thi = score(target)
    best = max(others, key=lambda m: score(m)[0])
    bv, blo, bhi = score(best)
    word = "largest" if direction == "max" else "smallest"
    if tv > bv:
        if np.isfinite(tlo) and np.isfinite(bhi) and tlo > bhi:
            return "holds", f"{_lab(target)} has the {word} {col}, CI separate from {_lab(best)}'s"
        why = "CIs overlap" if np.isfinite(tlo) and np.isfinite(bhi) else "no CI (one seed)"
        return "inconclusive", f"{_lab(target)} has the {word} {col} but {why} with runner-up {_lab(best)}"
    if np.isfinite(blo) and np.isfinite(thi) and blo > thi:
        return "does not hold", f"{_lab(best)} has a {'larger' if sign > 0 else 'smaller'} {col} than " \
                                f"{_lab(target)}, CIs separate"
    why = "CIs overlap" if np.isfinite(blo) and np.isfinite(thi) else "no CI (one seed)"
    return "inconclusive", f"{_lab(best)}, not {_lab(target)}, has the {word} {col}, but {why}"


def _combine(verdicts: list[str]) -> str:
    if verdicts and all(v == "holds" for v in verdicts):
        return "holds"
    if any(v == "does not hold" for v in verdicts):
        return "does not hold"
    return "inconclusive"


def _value_list(summary: pd.DataFrame, col: str, pct: bool = True) -> str:
    return "; ".join(f"{_lab(r.method)} {_ci(getattr(r, col), getattr(r, col + '_lo'), getattr(r, col + '_hi'), pct)}"
                     for r in summary.itertuples())


def _interval_sign(v, lo, hi) -> str:
    """'pos' when the CI is above 0, 'neg' when below 0, '?' otherwise (incl. no CI)."""
    if np.isfinite(lo) and lo > 0:
        return "pos"
    if np.isfinite(hi) and hi < 0:
        return "neg"
    return "?"


MIN_POINTS = 5


def claims(zs: pd.DataFrame, ev: pd.DataFrame, ft: pd.DataFrame, variant: str = "default",
           n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """The four claims of the paper (REFERENCE.md), each with the statistic computed here, its value,
    a verdict (holds / does not hold / inconclusive) derived from the statistic, and why (the rule and
    its thresholds). Gains and drops in the ``value`` texts are in accuracy points (x100)."""
    summ = method_summary(ev, variant)
    pts = gain_points(zs, ev, variant)
    rows = []

    # 1 ---------------------------------------------------------------- ss vs ACS as difficulty measures
    pooled = pts[pts["method"] == "pooled"]
    st = "Spearman rho of zero-shot ss (expected +) and ACS (expected -) with the fine-tuning gain, " \
         "over (task, domain) points (ID and DG), gain averaged over seeds and methods; paired " \
         f"bootstrap ({n_boot}) of diff = rho_ss - (-rho_ACS)"
    if {"silhouette", "acs"} <= set(pooled.columns) and len(pooled):
        rs = metrics.spearman_bootstrap(pooled["silhouette"], pooled["gain"], n_boot=n_boot, seed=seed)
        ra = metrics.spearman_bootstrap(pooled["acs"], pooled["gain"], n_boot=n_boot, seed=seed)
        dd = paired_rho_difference(pooled["silhouette"], pooled["acs"], pooled["gain"], 1, -1, n_boot, seed)
        n = rs["n"]
        val = (f"rho_ss = {_ci(rs['rho'], rs['lo'], rs['hi'])}; rho_ACS = {_ci(ra['rho'], ra['lo'], ra['hi'])}; "
               f"diff = {_ci(dd['diff'], dd['lo'], dd['hi'])}; n = {n} points")
        if n < MIN_POINTS:
            verdict, why = "inconclusive", f"n = {n} < {MIN_POINTS} points"
        elif np.isfinite(dd["lo"]) and dd["lo"] > 0 and np.isfinite(rs["lo"]) and rs["lo"] > 0:
            verdict, why = "holds", "diff CI above 0 (ss agrees with the gain better than ACS) and rho_ss CI above 0"
        elif np.isfinite(dd["hi"]) and dd["hi"] < 0:
            verdict, why = "does not hold", "diff CI below 0: ACS tracks the gain better than ss"
        else:
            verdict, why = "inconclusive", "diff CI contains 0, or rho_ss CI is not above 0"
        why += (f". Rule: holds if n >= {MIN_POINTS}, the 95% CI of diff > 0 and that of rho_ss > 0; "
                "does not hold if the CI of diff < 0; inconclusive otherwise.")
    else:
        val, verdict, why = "n/a", "inconclusive", "no ss/ACS or no ID/DG evaluation rows"
    rows.append(("1", "Zero-shot ss tracks task difficulty (fine-tuning gain) better than ACS.", st, val,
                 verdict, why))

    # 2a --------------------------------------------------------------- BitFit forgets most
    st = "CF drop (zero-shot minus fine-tuned accuracy on every other task), averaged over tasks, 95% CI over seeds"
    if len(summ) and "bitfit" in set(summ["method"]):
        verdict, why = _rank_verdict(summ, "cf_drop", "bitfit", "max")
        val = _value_list(summ, "cf_drop") + "; sd over seeds: " + "; ".join(
            f"{_lab(r.method)} {r.cf_drop_sd * 100:.1f}" for r in summ.itertuples())
    else:
        val, verdict, why = "n/a", "inconclusive", "no BitFit runs"
    why += ". Rule: holds if BitFit's mean CF drop is the largest and its CI does not overlap the runner-up's; " \
           "does not hold if another method's CI lies entirely above BitFit's; inconclusive otherwise."
    rows.append(("2a", "BitFit forgets most.", st, val, verdict, why))

    # 2b --------------------------------------------------------------- ... especially on high-ss tasks
    fvs = forgetting_vs_ss(zs, ev, variant, n_boot, seed)
    st = "Spearman rho over training tasks of BitFit's CF drop (seed mean) vs the trained task's zero-shot ss (ID domain)"
    b = fvs[fvs["method"] == "bitfit"] if len(fvs) else fvs
    if len(b):
        r = b.iloc[0]
        val = f"rho = {_ci(r['rho'], r['rho_lo'], r['rho_hi'])}, p = {r['rho_p']:.3g}, n = {int(r['rho_n'])} tasks; " \
              "other methods: " + "; ".join(f"{_lab(x.method)} {x.rho:+.2f}" for x in
                                            forgetting_spearman(fvs).itertuples() if x.method != "bitfit")
        sgn = _interval_sign(r["rho"], r["rho_lo"], r["rho_hi"])
        if r["rho_n"] < MIN_POINTS:
            verdict, why = "inconclusive", f"n = {int(r['rho_n'])} < {MIN_POINTS} tasks"
        else:
            verdict, why = {"pos": ("holds", "rho CI above 0"), "neg": ("does not hold", "rho CI below 0")}.get(
                sgn, ("inconclusive", "rho CI contains 0"))
    else:
        val, verdict, why = "n/a", "inconclusive", "no BitFit runs"
    why += f". Rule: n >= {MIN_POINTS} tasks and bootstrap 95% CI of rho above 0 (holds) / below 0 (does not hold)."
    rows.append(("2b", "BitFit forgets most after tuning on tasks with high zero-shot ss.", st, val, verdict, why))

    # 3a / 3b / 3c ----------------------------------------------------- LoRA
    has_lora = len(summ) and "lora" in set(summ["method"])
    st = "mean |change| of ss and of ACS on CF data (fine-tuned minus zero-shot, absolute, averaged over " \
         "eval rows, then tasks), 95% CI over seeds"
    if has_lora:
        v1, w1 = _rank_verdict(summ, "cf_abs_d_silhouette", "lora", "min")
        v2, w2 = _rank_verdict(summ, "cf_abs_d_acs", "lora", "min")
        val = "|d ss|: " + _value_list(summ, "cf_abs_d_silhouette", False) + " || |d ACS|: " + \
              _value_list(summ, "cf_abs_d_acs", False)
        verdict, why = _combine([v1, v2]), f"ss: {v1} ({w1}); ACS: {v2} ({w2})"
    else:
        val, verdict, why = "n/a", "inconclusive", "no LoRA runs"
    why += ". Rule, for each measure: holds if LoRA's is the smallest with a CI separate from the runner-up's, " \
           "does not hold if another method's CI lies entirely below LoRA's; the claim holds if both hold and " \
           "does not hold if either does not."
    rows.append(("3a", "LoRA changes the embedding space least (ss and ACS on CF data).", st, val, verdict, why))

    st = "CF drop averaged over tasks, 95% CI over seeds"
    if has_lora:
        verdict, why = _rank_verdict(summ, "cf_drop", "lora", "min")
        val = _value_list(summ, "cf_drop")
    else:
        val, verdict, why = "n/a", "inconclusive", "no LoRA runs"
    why += ". Rule: holds if LoRA's CF drop is the smallest with a CI separate from the runner-up's; does not " \
           "hold if another method's CI lies entirely below LoRA's."
    rows.append(("3b", "LoRA forgets least.", st, val, verdict, why))

    st = "LoRA's ID and DG gain (95% CI over seeds) vs the mean gain of the other methods"
    if has_lora:
        parts, vs = [], []
        lo_ = summ.set_index("method")
        for col in ("id_gain", "dg_gain"):
            other = float(lo_.drop("lora")[col].mean())
            v, lo, hi = (float(lo_.loc["lora", c]) for c in (col, f"{col}_lo", f"{col}_hi"))
            if np.isfinite(hi) and hi < other:
                vs.append("holds")
            elif np.isfinite(lo) and lo > other:
                vs.append("does not hold")
            else:
                vs.append("inconclusive")
            parts.append(f"{col}: LoRA {_ci(v, lo, hi, True)} vs others' mean {other * 100:+.1f}")
        val, verdict = "; ".join(parts), _combine(vs)
        why = f"ID: {vs[0]}, DG: {vs[1]}"
    else:
        val, verdict, why = "n/a", "inconclusive", "no LoRA runs"
    why += ". Rule, for ID and DG: holds if LoRA's CI lies below the mean of the other methods' gains, does " \
           "not hold if it lies above; combined: holds if both hold, does not hold if either does not."
    rows.append(("3c", "LoRA has smaller ID/DG gains than the other methods.", st, val, verdict, why))

    # 4a / 4b ---------------------------------------------------------- A-CLIP balance; Adapter/full cost
    st = "balance = DG gain - CF drop per run, averaged over tasks, 95% CI over seeds"
    if len(summ) and "aclip" in set(summ["method"]):
        verdict, why = _rank_verdict(summ, "balance", "aclip", "max")
        val = _value_list(summ, "balance")
    else:
        val, verdict, why = "n/a", "inconclusive", "no A-CLIP runs"
    why += ". Rule: holds if A-CLIP's balance is the largest with a CI separate from the runner-up's; does " \
           "not hold if another method's CI lies entirely above A-CLIP's."
    rows.append(("4a", "A-CLIP gives the best balance of DG gain and forgetting, averaged over tasks.", st, val,
                 verdict, why))

    st = "DG gain and CF drop of CLIP-Adapter and Full (95% CI over seeds), A-CLIP for reference"
    present = [m for m in ("clip_adapter", "full") if len(summ) and m in set(summ["method"])]
    if present:
        s = summ.set_index("method")
        vs, parts = [], []
        for m in present:
            g = _interval_sign(s.loc[m, "dg_gain"], s.loc[m, "dg_gain_lo"], s.loc[m, "dg_gain_hi"])
            f = _interval_sign(s.loc[m, "cf_drop"], s.loc[m, "cf_drop_lo"], s.loc[m, "cf_drop_hi"])
            vs.append("holds" if g == f == "pos" else "does not hold" if "neg" in (g, f) else "inconclusive")
            parts.append(f"{_lab(m)}: DG gain {_ci(s.loc[m, 'dg_gain'], s.loc[m, 'dg_gain_lo'], s.loc[m, 'dg_gain_hi'], True)}"
                         f", CF drop {_ci(s.loc[m, 'cf_drop'], s.loc[m, 'cf_drop_lo'], s.loc[m, 'cf_drop_hi'], True)}")
        if "aclip" in s.index:
            parts.append(f"A-CLIP: DG gain {s.loc['aclip', 'dg_gain'] * 100:+.1f}, CF drop "
                         f"{s.loc['aclip', 'cf_drop'] * 100:+.1f}")
        val, verdict = "; ".join(parts), _combine(vs) if len(present) == 2 else "inconclusive"
        why = ", ".join(f"{_lab(m)}: {v}" for m, v in zip(present, vs))
    else:
        val, verdict, why = "n/a", "inconclusive", "no CLIP-Adapter / Full runs"
    why += ". Rule, per method: holds if the CIs of both DG gain and CF drop lie above 0; does not hold if " \
           "either lies below 0; combined: holds if both methods hold, does not hold if either does not."
    rows.append(("4b", "CLIP-Adapter and full fine-tuning gain DG at a forgetting cost.", st, val, verdict, why))

    out = pd.DataFrame(rows, columns=["id", "claim", "statistic", "value", "verdict", "why"])
    assert out["verdict"].isin(VERDICTS).all()
    out.attrs["note"] = ("Verdicts are computed from the statistics (rules in 'why'); gains and drops in "
                         "accuracy points. 'inconclusive' means the data cannot decide, e.g. one seed.")
    return out


def claims_markdown(claims_df: pd.DataFrame, profile: str | None = None, provenance: dict | None = None) -> str:
    """The claims as Markdown: a generated-file header, the profile, provenance, one section per claim."""
    lines = ["# The paper's claims, tested on this profile's data", "",
             "> Generated from the result tables by `lib.analysis.claims` (notebook 04_figures). "
             "Do not edit by hand: rerun the notebook.", ""]
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
    lines += ["", "Verdicts: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS) + ".", ""]
    if claims_df.attrs.get("note"):
        lines += [claims_df.attrs["note"], ""]
    for r in claims_df.itertuples():
        cid = getattr(r, "id", "")
        lines += [f"## Claim {cid}: {r.claim}", "",
                  f"- **Verdict: {r.verdict}**",
                  f"- Statistic: {r.statistic}",
                  f"- Value: {r.value}",
                  f"- Why: {r.why}", ""]
    return "\n".join(lines)


def write_claims_md(claims_df: pd.DataFrame, path, profile: str, provenance: dict | None = None) -> Path:
    """Write ``claims.md`` (``claims_markdown``) to ``path``."""
    path = Path(path)
    paths.ensure(path.parent)
    path.write_text(claims_markdown(claims_df, profile, provenance))
    manifest.write_manifest(path.parent, {"notebook": "04_figures", "profile": profile, **(provenance or {})})  # written last
    return path


# ----------------------------------------------------------------------------- everything at once
def all_tables(res: dict, n_boot: int = 2000, seed: int = 0) -> dict:
    """Every derived table from ``load_results``'s dict (the inputs are kept under their names)."""
    zs, ft, ev = res["zero_shot"], res["finetune"], add_deltas(res["evaluation"])
    fvs = forgetting_vs_ss(zs, ev, n_boot=n_boot, seed=seed)
    return {**res, "evaluation": ev,
            "seed_aggregate": seed_aggregate(ev),
            "method_summary": method_summary(ev),
            "alignment": alignment_table(ev),
            "predictors": predictors(zs, ev, n_boot=n_boot, seed=seed),
            "forgetting_vs_ss": fvs,
            "forgetting_spearman": forgetting_spearman(fvs),
            "ablations": ablation_table(ev, ft),
            "claims": claims(zs, ev, ft, n_boot=n_boot, seed=seed)}


DERIVED_TABLES = ("seed_aggregate", "method_summary", "alignment", "predictors", "forgetting_vs_ss",
                  "forgetting_spearman", "ablations", "claims")


def save_tables(tables: dict, out_dir) -> list[Path]:
    """save_table for every derived table of ``all_tables``."""
    out = []
    for name in DERIVED_TABLES:
        if name in tables:
            out += save_table(tables[name], name, out_dir)
    return out


def show(df: pd.DataFrame, decimals: int = 3) -> pd.DataFrame:
    """A rounded copy for display."""
    return df.round(decimals)


def publish_figures(profile: str, dest: Path | None = None) -> Path:
    """Copy ``figures_dir(profile)`` to ``paper_figures/`` (atomically replaced)."""
    src = paths.figures_dir(profile)
    dest = Path(dest or paths.PAPER_FIGURES)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest
