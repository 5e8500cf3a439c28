"""Sensitivity of the claims to tasks that share a renderer family: every claim's rule applied again
with each test's p-value from an analysis that treats the family, not the task, as the unit.

``python bench/cluster_sensitivity.py [<published folder>]`` (default ``paper_figures/study4``) reads
the published tables of a run (``runs.csv``, ``gain_points.csv``, ``forgetting_vs_ss.csv`` and the
claims' tables) and prints, per claim, the published verdict and the verdict when

* every paired comparison and one-sample effect (claims 2a, 3a, 3b, 3c, 4a, 4b) is tested on the 8
  family means of its per-task values: a one-sample t-test (7 df) and, for the equivalence tests, two
  one-sided t-tests within +/- the smallest effect of interest. The most conservative reading of
  clustering: 96 tasks count as 8 units;
* every Spearman correlation the claims read (claim 1's S, claim 2b) gets the p of a permutation test
  that permutes the outcome only *within* families (5,000 permutations, seed 0): the family-to-family
  differences cannot create the correlation. Claim 1's contrast D keeps its published p (no
  within-family version of Zou's interval is implemented here).

Estimates and intervals stay the published ones (the rules read the p-values and the estimates'
signs). Written after study4's results were seen, because its ``family_clustering.csv`` showed the
family effect's F test below 0.05 for 25 of 80 quantities (study3: 1 of 80): a sensitivity analysis,
not a verdict. Hand-written because no library runs a stratified permutation Spearman test; the t-tests
are scipy's.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as ss

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lib import config  # noqa: E402
from lib.analysis import claims as C  # noqa: E402
from lib.analysis import tables as T  # noqa: E402
from lib.analysis.manipulation import family_of  # noqa: E402

N_PERM = 5000


def family_means(values: pd.Series) -> np.ndarray:
    """The mean of a per-task series (indexed by task) over each renderer family's tasks."""
    return values.groupby([family_of(t) for t in values.index]).mean().to_numpy(float)


def family_p(values: pd.Series, margin: float | None = None) -> tuple[float, float]:
    """Two-sided one-sample t-test p of the family means (7 df for 8 families) and, with ``margin``, the
    TOST p within +/- margin (the larger of the two one-sided p's); NaN where undefined."""
    m = family_means(values)
    if len(m) < 3 or not np.isfinite(m).all() or np.std(m) == 0:
        return float("nan"), float("nan")
    p = float(ss.ttest_1samp(m, 0.0).pvalue)
    if margin is None:
        return p, float("nan")
    lo = ss.ttest_1samp(m, -margin, alternative="greater").pvalue
    hi = ss.ttest_1samp(m, margin, alternative="less").pvalue
    return p, float(max(lo, hi))


def stratified_spearman_p(x: pd.Series, y: pd.Series, seed: int = 0) -> float:
    """Two-sided p of Spearman's rho(x, y) over tasks when y is permuted within renderer families."""
    d = pd.DataFrame({"x": x, "y": y}).dropna()
    rx, ry = ss.rankdata(d["x"]), ss.rankdata(d["y"])
    rx = (rx - rx.mean()) / np.sqrt(((rx - rx.mean()) ** 2).sum())
    ry = (ry - ry.mean()) / np.sqrt(((ry - ry.mean()) ** 2).sum())
    obs = abs(float(rx @ ry))
    fam = np.array([family_of(t) for t in d.index])
    idx = [np.flatnonzero(fam == f) for f in np.unique(fam)]
    rng = np.random.default_rng(seed)
    perm = np.empty((N_PERM, len(ry)))
    for b in range(N_PERM):
        out = ry.copy()
        for ix in idx:
            out[ix] = ry[rng.permutation(ix)]
        perm[b] = out
    hits = int((np.abs(perm @ rx) >= obs - 1e-12).sum())
    return (1 + hits) / (1 + N_PERM)


def clustered_tables(folder: Path) -> dict:
    """The published tables the claims read, with every p-value replaced as the module says."""
    t = {name: pd.read_csv(folder / f"{name}.csv") for name in
         ("comparisons", "effects", "predictors", "predictor_contrasts", "forgetting_spearman", "runs",
          "gain_points", "forgetting_vs_ss")}
    runs = t["runs"]
    comp, eff = t["comparisons"].copy(), t["effects"].copy()
    for table in (comp, eff):   # a comparison's values are method - versus, an effect's the method's own
        for i, r in table.iterrows():
            v = T.task_values(runs, r["quantity"], r["method"], r.get("versus"))
            p, tost = family_p(v, r["sesoi"] if np.isfinite(r["sesoi"]) else None)
            table.loc[i, ["p", "tost_p"]] = [p, tost if np.isfinite(r["tost_p"]) else np.nan]
    pts = t["gain_points"]
    pooled = pts[(pts["method"] == "pooled") & (pts["stratum"] == T.CLAIM_STRATUM)].set_index("task")
    pred = t["predictors"].copy()
    sel = (pred["method"] == "pooled") & (pred["stratum"] == T.CLAIM_STRATUM) & (pred["form"] == T.CLAIM_FORM)
    for i in pred.index[sel]:
        measure = pred.loc[i, "measure"]
        if measure in pooled:
            pred.loc[i, "p"] = stratified_spearman_p(pooled[measure], pooled["gain"])
    fsp = t["forgetting_spearman"].copy()
    f = t["forgetting_vs_ss"]
    if T.EXCESS in set(fsp["method"]) and T.EXCESS in set(f["method"]):
        e = f[f["method"] == T.EXCESS].set_index("train_task")
        fsp.loc[fsp["method"] == T.EXCESS, "p"] = stratified_spearman_p(e["ss_zero_shot"], e["cf_drop"])
    return {**t, "comparisons": comp, "effects": eff, "predictors": pred, "forgetting_spearman": fsp}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    folder = Path(argv[0]) if argv else ROOT / "paper_figures" / "study4"
    published = pd.read_csv(folder / "claims.csv").set_index("id")
    profile = "study4" if folder.name == "study4" else "study3"
    t = clustered_tables(folder)
    t["claim_rule"] = C.claim_rule(config.load_profile(profile))
    rows = []
    for v in C._verdicts(t):
        worst = max((x for x in v.tests if x.direction != 0), key=lambda x: x.p, default=None)
        rows.append(f"| {v.id} | {published.loc[v.id, 'verdict']} | {v.verdict} | "
                    f"{v.binding} (p {v.p:.2g}, Holm {v.p_holm:.2g}) | "
                    f"{'' if worst is None else f'{worst.name}: p {worst.p:.2g}'} |")
    print(f"Claims of {folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder} with the family as the "
          f"unit ({t['claim_rule']} rule; paired tests on 8 family means, correlations permuted within families):\n")
    print("| claim | published verdict | families as units | binding test | largest p of a claimed-side test |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
