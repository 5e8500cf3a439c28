"""Golden-file test of the claims: the committed tables under tests/data/golden/ (8 synthetic tasks,
2 seeds, one collapsed BitFit run; made with ``test_analysis.results(8, seeds=(0, 1), ss_noise=0.03,
collapsed=[("t1", "bitfit", 0)], ablations=(), noise=0.01, shift=..., forget=...)``) must give the
verdicts, values, task counts and near-threshold flags pinned in ``verdicts.csv``.

A change of a rule, a threshold or a statistic shows up here as a changed verdict or value; if the
change is intended, rewrite verdicts.csv from ``lib.analysis.compute`` and say why in the commit."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lib import analysis as A
from lib.analysis import claims as C

GOLDEN = Path(__file__).parent / "data" / "golden"


@pytest.fixture(scope="module")
def golden_tables():
    return A.compute(A.load_results(GOLDEN))


@pytest.mark.slow
def test_golden_verdicts(golden_tables):
    got = golden_tables["claims"].set_index(["id", "subset"])
    want = pd.read_csv(GOLDEN / "verdicts.csv").set_index(["id", "subset"])
    assert list(got.index) == list(want.index)
    assert got["verdict"].to_dict() == want["verdict"].to_dict()
    assert got["near_threshold"].astype(bool).to_dict() == want["near_threshold"].astype(bool).to_dict()
    assert got["n_tasks"].astype(int).to_dict() == want["n_tasks"].astype(int).to_dict()
    np.testing.assert_allclose(got["value"].to_numpy(float), want["value"].to_numpy(float), rtol=1e-6, atol=1e-9)
    # the fixture exercises every verdict that 8 tasks allow
    assert {"holds", "does not hold", "inconclusive"} <= set(want["verdict"])


def test_golden_value_by_hand(golden_tables):
    """Claim 2a's value recomputed from evaluation.csv with plain pandas: the smallest over methods of
    the mean over tasks of the seed-mean paired CF-drop difference BitFit - method."""
    ev = pd.read_csv(GOLDEN / "evaluation.csv")
    cf = ev[ev["schema"] == "CF"].assign(drop=lambda d: d["acc_zero_shot"] - d["acc_finetuned"])
    run = cf.groupby(["train_task", "method", "seed"])["drop"].mean().unstack("method")
    diffs = {m: (run["bitfit"] - run[m]).groupby("train_task").mean().mean() for m in run.columns if m != "bitfit"}
    c = golden_tables["claims"].set_index(["id", "subset"]).loc[("2a", "all runs")]
    assert c["value"] == pytest.approx(min(diffs.values()), abs=1e-12)


def test_fewer_tasks_make_every_verdict_inconclusive():
    res = A.load_results(GOLDEN)
    keep = [f"t{i}" for i in range(C.MIN_TASKS - 1)]
    res = {"zero_shot": res["zero_shot"][res["zero_shot"]["task"].isin(keep)],
           "finetune": res["finetune"][res["finetune"]["task"].isin(keep)],
           "evaluation": res["evaluation"][res["evaluation"]["train_task"].isin(keep)
                                           & res["evaluation"]["eval_task"].isin(keep)]}
    t = A.compute(res)
    assert set(t["claims"]["verdict"]) == {C.TOO_FEW}
    assert set(t["claims"]["n_tasks"]) == {C.MIN_TASKS - 1}
