"""Seed-to-seed noise of every compared quantity of a published run -> ``make verify``'s tolerances.

Run from the repo root:  python bench/seed_noise.py [<published folder>] [--write]
(default folder ``paper_figures/``; ``--write`` writes ``lib/pipeline/tolerances.json``, which
``lib.pipeline.verify`` reads; without it only the table is printed).  Takes a second.

How the noise is measured (docs/reliability.md explains the choices):

* **Per run** (``runs.csv``: one row per (train_task, method, variant, seed)): for each column, the
  within-configuration seed SD, pooled over every (train_task, method, variant) with >= 2 seeds:
  ``sqrt(sum((n_g - 1) s_g^2) / sum(n_g - 1))``.  The per-method pooled SDs are printed beside it.
* **Per split** (``seed_aggregate.csv``: one row per (run configuration, eval split) with the min and
  max over its seeds): the SD of one run's accuracy on one split, from the seed range,
  ``mean(max - min) / d2(n)`` with ``d2(n)`` the expected range of ``n`` standard normal draws
  (computed here by numerical integration).
* ``lr_sweep.csv`` has seed 0 only: a sweep point is one run's ID validation accuracy, given the
  seed SD of ``runs.csv``'s ``id_acc`` (one run's ID test accuracy: the same kind of number).

The multiple ``k``: a rerun on another machine is treated as another seed, so a cell's difference
to the published one has SD ``sqrt(2) * sd``; ``k = sqrt(2) * z(1 - alpha / (2 N))`` with
``alpha = 0.05`` and ``N`` the number of compared per-run / per-split cells, so that, for normal noise,
a rerun whose every run is re-drawn fails ``make verify`` with probability <= 5% (Bonferroni over
the cells).  Tolerances written:

* per-run / per-split tables (runs, lr_sweep, seed_aggregate, gain_points, forgetting_vs_ss,
  finetune, evaluation): ``k * sd`` of the column's own quantity (``gain_headroom`` scaled by the
  largest ``gain_headroom / gain`` of the published rows);
* tables of means over tasks and seeds (headline, method_summary, comparisons, effects, alignment,
  ablations, predictors, ..., claims): ``k * sd_max / sqrt(n_seeds * n_tasks)``, ``sd_max`` the
  largest per-run seed SD of the four gains (ID gain, DG gain, CF drop, balance) and ``n_seeds *
  n_tasks`` the fewest runs behind one mean of that table (at most ``n_tasks^2 / sum(1 / n_seeds)``
  over the tasks of ``runs.csv``, when tasks have different numbers of seeds; its own ``n_seeds`` / ``n_tasks``
  columns, else the headline's); the same bound for every number of the table (estimates, interval
  bounds, p-values, correlations: no seed measurement of the latter exists; their verdicts are
  compared claim by claim); ``headline`` x100 (accuracy points; the scale is measured from
  ``headline.csv`` against ``method_summary.csv``);
* zero-shot numbers (no training, deterministic): one unit in the last digit the CSVs keep
  (``%.6g``: ``abs = 1e-6``, ``rel = 1e-5``).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import integrate, stats

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT = REPO_ROOT / "lib" / "pipeline" / "tolerances.json"
ALPHA = 0.05                   # family-wise chance that an honest rerun on another machine fails
CSV_DIGITS = 6                 # lib.analysis.report.save_table writes "%.6g"
ZERO_SHOT = {"abs": 10.0 ** -CSV_DIGITS, "rel": 10.0 ** (1 - CSV_DIGITS)}   # one unit in the last digit kept
RUN_KEY = ["train_task", "method", "variant"]
GAINS = ["id_gain", "dg_gain", "cf_drop", "balance"]
# Zero-shot columns inside per-run / per-split tables (no training, so deterministic), per table.
ZERO_SHOT_COLUMNS = {"seed_aggregate.csv": ["acc_zero_shot"],
                     "evaluation.csv": ["acc_zero_shot", "acs_zero_shot", "ss_zero_shot"],
                     "gain_points.csv": ["acc_zero_shot", "ss", "acs", "iimm", "class_ss", "modality_gap"],
                     "forgetting_vs_ss.csv": ["ss_zero_shot"],
                     "lr_sweep.csv": ["zero_shot_val_acc"]}
ZERO_SHOT_TABLES = ("zero_shot.csv", "zero_shot_summary.csv", "world_check.csv")
# Tables of means over tasks and seeds (every table of the figures stage that is not per run / per split).
MEAN_TABLES = ("headline.csv", "method_summary.csv", "comparisons.csv", "effects.csv", "alignment.csv",
               "ablations.csv", "predictors.csv", "predictor_contrasts.csv", "forgetting_spearman.csv",
               "run_flags.csv", "collapse.csv", "claims.csv", "claim_tests.csv")


def d2(n: int) -> float:
    """Expected range of n independent standard normal draws."""
    f = lambda x: 1 - stats.norm.cdf(x) ** n - (1 - stats.norm.cdf(x)) ** n   # noqa: E731
    return integrate.quad(f, -np.inf, np.inf)[0]


def pooled_sd(df: pd.DataFrame, col: str, key=RUN_KEY) -> tuple[float, int]:
    g = df.groupby(key)[col]
    var, dof = g.var(ddof=1), g.count() - 1
    ok = dof > 0
    n = int(dof[ok].sum())
    return (float(math.sqrt((var[ok] * dof[ok]).sum() / n)) if n else float("nan")), n


def sha16(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()[:16]


def _g(x: float) -> float:
    return float(f"{x:.4g}")


def measure(folder: Path) -> dict:
    runs = pd.read_csv(folder / "runs.csv")
    agg = pd.read_csv(folder / "seed_aggregate.csv")
    head = pd.read_csv(folder / "headline.csv")
    summ = pd.read_csv(folder / "method_summary.csv")
    gp = pd.read_csv(folder / "gain_points.csv") if (folder / "gain_points.csv").exists() else None
    sweep = pd.read_csv(folder / "lr_sweep.csv") if (folder / "lr_sweep.csv").exists() else None

    # ---- seed SDs
    sd = {}
    run_cols = [c for c in runs.columns if c not in (*RUN_KEY, "seed") and pd.api.types.is_float_dtype(runs[c])
                and c != "mcnemar_p"]
    for c in run_cols:
        s, dof = pooled_sd(runs, c)
        per_method = {m: _g(pooled_sd(d, c)[0]) for m, d in runs.groupby("method")}
        diffs = np.array([abs(a - b) for _, d in runs.groupby(RUN_KEY) for a, b in itertools.combinations(d[c], 2)])
        sd[f"runs.csv:{c}"] = {"sd": s, "df": dof, "per_method": per_method, "pairs": diffs,
                               "how": f"runs.csv {c}: seed SD pooled within (train_task, method, variant), {dof} df"}
    # rows with one seed have no range (study3: all but the seed-noise subset): only rows with >= 2 seeds,
    # each range divided by d2 of its own number of seeds
    multi = agg[agg["n_seeds"] >= 2]
    ns = sorted({int(n) for n in multi["n_seeds"]})
    d2s = multi["n_seeds"].map(lambda n: d2(int(n)))
    for base in ("acc_finetuned", "gain"):
        rng = multi[f"{base}_max"] - multi[f"{base}_min"]
        sd[f"seed_aggregate.csv:{base}"] = {
            "sd": float((rng / d2s).mean()), "df": int((multi["n_seeds"] - 1).sum()),
            "how": f"seed_aggregate.csv {base}: mean of seed range / d2(n_seeds) (n_seeds {ns}) over {len(multi)} "
                   f"(run configuration, eval split) rows with >= 2 seeds"}

    # ---- the multiple
    n_cells = len(runs) * len(run_cols) + len(agg) * 6
    if sweep is not None:
        n_cells += len(sweep)
    if gp is not None:
        n_cells += len(gp) * 2
    k = math.sqrt(2) * stats.norm.ppf(1 - ALPHA / (2 * n_cells))

    # ---- per-run / per-split tolerances
    tol = lambda key: {"abs": _g(k * sd[key]["sd"]), "sd": _g(sd[key]["sd"]), "source": sd[key]["how"]}  # noqa: E731
    zs = {"abs": ZERO_SHOT["abs"], "rel": ZERO_SHOT["rel"], "source": "zero-shot: deterministic; one unit in the "
          f"last of the {CSV_DIGITS} significant digits the CSVs keep"}
    tables: dict[str, dict] = {}
    tables["runs.csv"] = {c: tol(f"runs.csv:{c}") for c in run_cols}
    split = tol("seed_aggregate.csv:acc_finetuned")
    gain = tol("seed_aggregate.csv:gain")
    tables["seed_aggregate.csv"] = {**{c: dict(split) for c in ("acc_finetuned", "acc_finetuned_min", "acc_finetuned_max")},
                                    **{c: dict(gain) for c in ("gain", "gain_min", "gain_max")}}
    tables["evaluation.csv"] = {"acc_finetuned": dict(split)}
    for c, q in (("ss_finetuned", "dg_d_ss"), ("acs_finetuned", "dg_d_acs")):   # one split's alignment after training
        if f"runs.csv:{q}" in sd:
            t = tol(f"runs.csv:{q}")
            tables["evaluation.csv"][c] = {**t, "source": t["source"] + " (a run's change on its shifted domains "
                                                                         "stands in for one split's value)"}
    headroom = 1.0
    if gp is not None:
        ok = gp["gain"].abs() > 1e-9
        headroom = float((gp.loc[ok, "gain_headroom"] / gp.loc[ok, "gain"]).abs().max())
    tables["gain_points.csv"] = {"gain": dict(gain),
                                 "gain_headroom": {**gain, "abs": _g(gain["abs"] * headroom),
                                                   "source": gain["source"] + f"; x {headroom:.3g}, the largest "
                                                   "gain_headroom / gain of the published rows"}}
    cf = tol("runs.csv:cf_drop")
    tables["forgetting_vs_ss.csv"] = {c: dict(cf) for c in ("cf_drop", "cf_drop_min", "cf_drop_max")}
    tables["lr_sweep.csv"] = {"best_val_acc": {**tol("runs.csv:id_acc"), "source": sd["runs.csv:id_acc"]["how"]
                                               + " (the sweep has seed 0 only; ID test accuracy stands in for ID "
                                               "validation accuracy)"}}
    tables["finetune.csv"] = {"best_val_acc": dict(tables["lr_sweep.csv"]["best_val_acc"])}
    for name, cols in ZERO_SHOT_COLUMNS.items():
        for c in cols:
            tables[name].setdefault(c, dict(zs))
    for name in ZERO_SHOT_TABLES:
        tables[name] = {"*": dict(zs)}

    # ---- tables of means
    sd_max_key = max((f"runs.csv:{g}" for g in GAINS if f"runs.csv:{g}" in sd), key=lambda q: sd[q]["sd"])
    sd_max = sd[sd_max_key]["sd"]
    # runs behind one mean over tasks of per-task seed means: n_tasks^2 / sum over tasks of 1 / n_seeds
    # (= n_seeds * n_tasks when every task has the same seeds; study3: 8 tasks x 3 seeds + 24 x 1 -> 38.4,
    # where the tables' n_seeds column, the most seeds of any task, would say 96); fewest over methods
    default_runs = runs[runs["variant"] == "default"] if "variant" in runs.columns else runs
    n_eff = min(len(c) ** 2 / float((1.0 / c).sum())
                for _, c in ((m, d.groupby("train_task")["seed"].nunique()) for m, d in default_runs.groupby("method")))
    n_runs_head = min(int((head["n_seeds"] * head["n_tasks"]).min()), int(n_eff))
    ms = summ[summ["subset"] == summ["subset"].iloc[0]] if "subset" in summ.columns else summ
    ratio = []
    for q in GAINS:
        m = head.merge(ms[ms["quantity"] == q][["method", "value"]], on="method")
        m = m[m["value"].abs() > 1e-9]
        ratio += list(m[q] / m["value"])
    scale = float(10 ** round(math.log10(float(np.median(ratio)))))
    for name in MEAN_TABLES:
        n = n_runs_head
        if (folder / name).exists():
            t = pd.read_csv(folder / name)
            if {"n_seeds", "n_tasks"} <= set(t.columns) and len(t):
                n = min(int((t["n_seeds"] * t["n_tasks"]).min()), int(n_eff))
        x = k * sd_max / math.sqrt(n) * (scale if name == "headline.csv" else 1.0)
        tables[name] = {"*": {"abs": _g(x), "sd": _g(sd_max), "n_runs": n,
                              "source": f"mean over tasks and seeds: k x {sd_max_key.split(':')[1]} seed SD / "
                                        f"sqrt({n} runs)" + (f", x{scale:g} (accuracy points)" if name == "headline.csv"
                                                              else "")}}
    default = {"abs": _g(k * sd_max), "sd": _g(sd_max),
               "source": f"any other number: the per-run tolerance of the noisiest gain ({sd_max_key.split(':')[1]})"}
    return {"sd": sd, "k": k, "n_cells": n_cells, "tables": tables, "default": default, "scale": scale}


def document(folder: Path, m: dict) -> dict:
    files = ["runs.csv", "seed_aggregate.csv", "lr_sweep.csv", "gain_points.csv", "headline.csv", "method_summary.csv"]
    prov = {}
    mf = folder / "MANIFEST.json"
    if mf.exists():
        pb = json.loads(mf.read_text()).get("produced_by", {})
        prov = {"profile": pb.get("profile"), "commit": (pb.get("git") or {}).get("commit"), "device": pb.get("device")}
    return {
        "about": "make verify's tolerances (lib.pipeline.verify.TOLERANCES['published']), written by "
                 "`python bench/seed_noise.py --write` from the published run's seed-to-seed noise: "
                 "do not edit by hand; docs/reliability.md explains every number",
        "measured_from": {"folder": folder.name, **prov,
                          "files": {f: sha16(folder / f) for f in files if (folder / f).exists()}},
        "rule": {"alpha": ALPHA, "n_cells": m["n_cells"], "multiple": _g(m["k"]),
                 "multiple_formula": "sqrt(2) * z(1 - alpha / (2 n_cells))",
                 "headline_scale": m["scale"]},
        "seed_sd": {q: {"sd": _g(v["sd"]), "df": v["df"], **({"per_method": v["per_method"]} if "per_method" in v else {}),
                        "how": v["how"]} for q, v in m["sd"].items()},
        "default": m["default"],
        "tables": m["tables"],
    }


def report(m: dict) -> str:
    lines = [f"multiple k = sqrt(2) * z(1 - {ALPHA} / (2 * {m['n_cells']} cells)) = {m['k']:.3f}", "",
             "| quantity | seed SD | df | tolerance (k x SD) | seed pairs beyond it | noisiest method |",
             "|---|---:|---:|---:|---:|---|"]
    for q, v in m["sd"].items():
        beyond = ""
        if "pairs" in v and len(v["pairs"]):
            beyond = f"{int((v['pairs'] > m['k'] * v['sd']).sum())} of {len(v['pairs'])}"
        noisy = ""
        if "per_method" in v:
            meth = max(v["per_method"], key=v["per_method"].get)
            noisy = f"{meth} {v['per_method'][meth]:.4f}"
        lines.append(f"| {q} | {v['sd']:.4f} | {v['df']} | {m['k'] * v['sd']:.4f} | {beyond} | {noisy} |")
    lines += ["", "| table | column | tolerance | source |", "|---|---|---:|---|"]
    for name, cols in m["tables"].items():
        for c, t in cols.items():
            lines.append(f"| {name} | {c} | {t['abs']:.4g}" + (f" or {t['rel']:g} rel" if "rel" in t else "")
                         + f" | {t['source']} |")
    lines.append(f"| any other | * | {m['default']['abs']:.4g} | {m['default']['source']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    write = "--write" in argv
    rest = [a for a in argv if a != "--write"]
    folder = Path(rest[0]) if rest else REPO_ROOT / "paper_figures"
    m = measure(folder)
    sys.stdout.write(report(m))
    if write:
        OUT.write_text(json.dumps(document(folder, m), indent=1) + "\n")
        print(f"wrote {OUT.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
