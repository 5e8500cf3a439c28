"""bench/cluster_sensitivity.py: the family-level tests it substitutes are what they say (a t-test and a
TOST on the family means; a Spearman test that permutes only within families) and the published study4
verdicts are re-read from its tables."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as ss

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("cluster_sensitivity", ROOT / "bench" / "cluster_sensitivity.py")
CS = importlib.util.module_from_spec(spec)
sys.modules["cluster_sensitivity"] = CS
spec.loader.exec_module(CS)

FAMS = ["objects", "digits", "landcover", "pathology", "camera_trap", "traffic_signs", "flowers", "textures"]
TASKS = [f"{f}_{k}" for f in FAMS for k in "efghijklmnop"]


def test_family_p_is_the_t_test_of_the_family_means_and_its_tost():
    rng = np.random.default_rng(0)
    v = pd.Series(0.01 + 0.02 * rng.standard_normal(len(TASKS)), index=TASKS)
    means = v.groupby([t.rsplit("_", 1)[0] for t in TASKS]).mean().to_numpy()
    p, tost = CS.family_p(v, 0.02)
    assert p == ss.ttest_1samp(means, 0.0).pvalue
    assert tost == max(ss.ttest_1samp(means, -0.02, alternative="greater").pvalue,
                       ss.ttest_1samp(means, 0.02, alternative="less").pvalue)
    assert np.isnan(CS.family_p(v)[1])


def test_stratified_spearman_ignores_a_correlation_carried_by_families_only():
    """x and y share a family effect and nothing within families: a plain Spearman test finds it, the
    within-family permutation does not; a within-family correlation is found."""
    rng = np.random.default_rng(1)
    fam = np.repeat(np.arange(8), 12)
    shared = rng.standard_normal(8)[fam] * 3
    x = pd.Series(shared + rng.standard_normal(96), index=TASKS)
    y = pd.Series(shared + rng.standard_normal(96), index=TASKS)
    assert ss.spearmanr(x, y).pvalue < 1e-6
    assert CS.stratified_spearman_p(x, y) > 0.05
    y2 = pd.Series(shared + x.to_numpy() + 0.5 * rng.standard_normal(96), index=TASKS)
    assert CS.stratified_spearman_p(x, y2) < 0.01


def test_reads_the_published_study4_claims(capsys):
    assert CS.main([str(ROOT / "paper_figures" / "study4")]) == 0
    out = capsys.readouterr().out
    assert out.count("\n| ") >= 9 and "| 3a | holds |" in out
