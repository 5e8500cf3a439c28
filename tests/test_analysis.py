"""lib.analysis, lib.stats and the study figures on synthetic and hand-built tables.

Synthetic result tables (current column names; also used by test_claims_golden and
test_figures_consistency):

Task i has difficulty d_i; ss grows and zero-shot accuracy falls with it; ACS follows
``acs_order`` (decoupled from difficulty unless given the same order). The gain of method m on a
(task, domain) is gain[m] * ss (so ss, not ACS, drives it); the CF drop after tuning on a task is
forget[m] * (1 + that task's ss); shift[m] moves ss and ACS.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as ss

from lib import analysis as A
from lib import stats as S
from lib.analysis import claims as C
from lib.analysis import report as R
from lib.analysis import tables as T

METHODS = ["full", "clip_adapter", "lora", "bitfit", "aclip"]
PARAMS = {"full": 151_000_000, "clip_adapter": 262_144, "lora": 590_000, "bitfit": 120_000, "aclip": 21_000_000}
FORGET = {"full": 0.06, "clip_adapter": 0.05, "lora": 0.01, "bitfit": 0.12, "aclip": 0.02}
GAIN = {"full": 0.5, "clip_adapter": 0.4, "lora": 0.2, "bitfit": 0.35, "aclip": 0.45}
SHIFT = {"full": 0.08, "clip_adapter": 0.05, "lora": 0.01, "bitfit": 0.06, "aclip": 0.04}


def tasks(n: int, two_shift: bool = False) -> dict:
    """n tasks with one shifted domain each (two_shift: every third task has two)."""
    return {f"t{i}": ("id",) + (("s1", "s2") if two_shift and i % 3 == 2 else ("s1",)) for i in range(n)}


def zero_shot(n_tasks: int = 5, acs_order=None, seed: int = 0, iimm: bool = True, two_shift: bool = False,
              ss_noise: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_tasks)
    acs_order = rng.permutation(n_tasks) if acs_order is None else np.asarray(acs_order)
    rows = []
    for i, (task, doms) in enumerate(tasks(n_tasks, two_shift).items()):
        for j, dom in enumerate(doms):
            diff = order[i] + 0.5 * j
            a = acs_order[i] + 0.5 * j
            r = dict(task=task, domain=dom, split="test", domain_kind="ID" if j == 0 else "OOD", n_images=200,
                     n_classes=10, chance=0.1, acc=round(200 * (0.9 - 0.6 * diff / (n_tasks + 1))) / 200,
                     acs=0.32 - 0.01 * a, ss=0.2 + 0.05 * diff + ss_noise * rng.normal(), class_ss=0.1 - 0.01 * diff,
                     modality_gap=0.8 + 0.02 * diff, data_fingerprint=f"{task}{dom}")
            if iimm:
                r["iimm"] = 0.4 + 0.03 * diff + 0.01 * rng.normal()
            rows.append(r)
    return pd.DataFrame(rows)


def evaluation(zs: pd.DataFrame, seeds=(0, 1, 2), forget=None, gain=None, shift=None, ablations=("q", "first2"),
               noise: float = 0.004, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    forget, gain, shift = forget or FORGET, gain or GAIN, shift or SHIFT
    doms = {t: list(g["domain"]) for t, g in zs.groupby("task", sort=False)}
    z = zs.set_index(["task", "domain"])
    first = list(doms)[:2]
    runs = [(m, "default", s) for m in METHODS for s in seeds] + [("aclip", v, seeds[0]) for v in ablations]
    rows = []
    for train in doms:
        ss_train = z.loc[(train, doms[train][0]), "ss"]
        for method, variant, sd in runs:
            if variant != "default" and train not in first:
                continue
            vf = 0.7 if variant != "default" else 1.0
            for et, ds in doms.items():
                for dom in ds:
                    r = z.loc[(et, dom)]
                    if et == train:
                        schema = "ID" if dom == ds[0] else "DG"
                        d_acc = gain[method] * vf * r["ss"]
                    else:
                        schema = "CF"
                        d_acc = -forget[method] * vf * (1 + ss_train)
                    d_acc += rng.normal(0, noise)
                    acc_ft = float(np.clip(r["acc"] + d_acc, 0, 1))
                    sh = shift[method] * vf
                    acc_ft = round(acc_ft * 200) / 200          # whole images of 200
                    moved = round(200 * (acc_ft - r["acc"]))
                    churn = int(rng.integers(0, 6))              # images that swap both ways
                    row = dict(train_task=train, method=method, variant=variant, seed=sd, eval_task=et,
                               eval_domain=dom, schema=schema, n_images=200, acc_zero_shot=r["acc"],
                               acc_finetuned=acc_ft, n_lost=churn + max(0, -moved), n_won=churn + max(0, moved),
                               acs_zero_shot=r["acs"],
                               acs_finetuned=round(r["acs"] + sh * (1 if schema != "CF" else -0.5), 5),
                               ss_zero_shot=r["ss"], ss_finetuned=round(r["ss"] - sh + rng.normal(0, noise / 4), 5))
                    for m in ("class_ss", "modality_gap", "iimm"):     # carried along, unchanged
                        if m in r:
                            row[f"{m}_zero_shot"] = row[f"{m}_finetuned"] = r[m]
                    rows.append(row)
    return pd.DataFrame(rows)


def finetune(ev: pd.DataFrame, no_val_gain=()) -> pd.DataFrame:
    """``no_val_gain``: (task, method, seed) runs whose best validation accuracy did not beat zero-shot."""
    runs = ev[["train_task", "method", "variant", "seed"]].drop_duplicates().rename(columns={"train_task": "task"})
    runs["trainable_params"] = [PARAMS[m] // (3 if v != "default" else 1) for m, v in zip(runs["method"], runs["variant"])]
    for c, v in dict(best_val_acc=0.8, best_epoch=3, epochs=5, lr=1e-3, options="{}", train_seconds=10.0,
                     peak_memory_mb=100.0, zero_shot_val_acc=0.75).items():
        runs[c] = v
    runs["no_val_gain"] = [(t, m, s) in set(no_val_gain) and v == "default"
                           for t, m, v, s in zip(runs["task"], runs["method"], runs["variant"], runs["seed"])]
    runs["nonfinite"] = False
    runs.loc[runs["no_val_gain"], "best_val_acc"] = 0.7
    return runs.reset_index(drop=True)


def results(n_tasks: int = 5, seeds=(0, 1, 2), acs_order=None, no_val_gain=(), iimm: bool = True,
            two_shift: bool = False, ss_noise: float = 0.0, **kw) -> dict:
    zs = zero_shot(n_tasks, acs_order=acs_order, iimm=iimm, two_shift=two_shift, ss_noise=ss_noise)
    ev = evaluation(zs, seeds=seeds, **kw)
    ft = finetune(ev, no_val_gain)
    return {"zero_shot": zs, "finetune": ft, "evaluation": ev, "lr_sweep": lr_sweep(ft)}


def lr_sweep(ft: pd.DataFrame) -> pd.DataFrame:
    """A 4-point sweep per (task, method) of the default runs, the selected point at lr 1e-2."""
    rows = []
    for (t, m), _ in ft[ft["variant"] == "default"].groupby(["task", "method"], sort=False):
        for k, lr in enumerate([1e-3, 3e-3, 1e-2, 3e-2]):
            rows.append({"task": t, "method": m, "lr": lr, "seed": 0, "best_val_acc": 0.5 + 0.05 * k - 0.1 * (k == 3),
                         "best_epoch": 1, "nonfinite": k == 3 and m == "full", "selected": k == 2,
                         "zero_shot_val_acc": 0.45})
    return pd.DataFrame(rows)


# ============================================================================= lib.stats
def _brute_p(x, y):
    """Two-sided exact p of Spearman by enumerating every permutation with scipy.stats.spearmanr."""
    r0 = ss.spearmanr(x, y)[0]
    null = np.array([ss.spearmanr(x, np.asarray(y)[list(p)])[0] for p in itertools.permutations(range(len(y)))])
    return r0, float(np.mean(np.abs(null) >= abs(r0) - 1e-12))


@pytest.mark.parametrize("n,seed", [(4, 0), (5, 1), (6, 2), (7, 3)])
def test_exact_spearman_p_equals_enumeration(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = x + rng.normal(size=n)
    y[1] = y[2]                                    # a tie
    r = S.correlation(x, y)
    rho, p = _brute_p(x, y)
    assert r["rho"] == pytest.approx(rho, abs=1e-12)
    assert r["p"] == pytest.approx(p, abs=1e-12) and r["p_method"] == "exact"
    # scipy's own exact permutation test (n! <= n_resamples) agrees too
    ref = ss.permutation_test((y,), lambda a: ss.spearmanr(x, a)[0], permutation_type="pairings",
                              n_resamples=10 ** 6)
    assert r["p"] == pytest.approx(ref.pvalue, abs=1e-12)


def test_exact_spearman_p_perfect_order_n5():
    r = S.correlation(np.arange(5.0), np.arange(5.0) ** 3)
    assert r["rho"] == 1.0
    assert r["p"] == pytest.approx(2 / 120)            # not the t-approximation's ~1e-24
    assert S.correlation(np.arange(8.0), -np.arange(8.0))["p"] == pytest.approx(2 / math.factorial(8))


def test_block_permutation_p_equals_brute_force():
    """[task, slot] points: whole tasks are permuted; the same-slots fast path and the general path
    (a task with a missing slot) both equal a brute-force enumeration."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(6, 2))
    Y = X + rng.normal(size=(6, 2))
    Z = rng.normal(size=(6, 2))
    for Yc in (Y, np.where(np.arange(12).reshape(6, 2) == 5, np.nan, Y)):
        for z in (None, Z):
            r = S.correlation(X, Yc, z)
            null = []
            for p in itertools.permutations(range(6)):
                yp = Yc[list(p)].ravel()
                ok = np.isfinite(yp)
                null.append(ss.spearmanr(X.ravel()[ok], yp[ok])[0] if z is None else
                            S.partial_spearman(X.ravel()[ok], yp[ok], z.ravel()[ok]))
            ok = np.isfinite(Yc.ravel())
            rho = ss.spearmanr(X.ravel()[ok], Yc.ravel()[ok])[0] if z is None else \
                S.partial_spearman(X.ravel()[ok], Yc.ravel()[ok], z.ravel()[ok])
            assert r["rho"] == pytest.approx(rho, abs=1e-12)
            assert r["p"] == pytest.approx(np.mean(np.abs(null) >= abs(rho) - 1e-12), abs=1e-12)


def test_monte_carlo_p_above_eight_tasks():
    rng = np.random.default_rng(6)
    x = rng.normal(size=11)
    r = S.correlation(x, x + 0.3 * rng.normal(size=11))
    assert r["p_method"] == "monte carlo" and 0 < r["p"] < 0.01
    y = rng.normal(size=11)
    assert S.correlation(x, y)["p"] == S.correlation(x, y)["p"]      # deterministic given the seed
    assert S.correlation(x, y, seed=1)["p"] != S.correlation(x, y, seed=2)["p"]


def test_partial_spearman_is_the_correlation_of_rank_residuals():
    rng = np.random.default_rng(7)
    z = rng.normal(size=30)
    x = z + rng.normal(size=30)
    y = z + rng.normal(size=30)
    rx, ry, rz = (ss.rankdata(v) for v in (x, y, z))
    res = lambda a: a - np.polyval(np.polyfit(rz, a, 1), rz)  # noqa: E731
    assert S.partial_spearman(x, y, z) == pytest.approx(np.corrcoef(res(rx), res(ry))[0, 1], abs=1e-12)


def test_task_mean_ci_is_the_t_interval_over_task_means():
    """Seeds are averaged within a task first; the interval is the t interval over the task means."""
    rng = np.random.default_rng(8)
    tasks = np.repeat(["a", "b", "c", "d", "e", "f"], 3)
    v = rng.uniform(0.2, 0.9, size=18)
    r = S.task_mean_ci(v, tasks)
    m = np.array([v[tasks == t].mean() for t in "abcdef"])
    ref = ss.t.interval(0.95, 5, loc=m.mean(), scale=ss.sem(m))
    assert r["value"] == pytest.approx(m.mean())
    assert (r["lo"], r["hi"]) == pytest.approx(ref, abs=1e-12)
    assert r["n_tasks"] == 6 and r["ci_method"] == S.T_TASKS


def test_bounded_intervals_stay_inside_bounds():
    tasks = np.repeat(["a", "b", "c", "d", "e"], 3)
    acc = np.r_[np.ones(12), [0.97, 0.99, 1.0]]           # near the upper bound
    r = S.task_mean_ci(acc, tasks, bounds=(0, 1))
    assert 0 <= r["lo"] <= r["value"] <= r["hi"] <= 1
    lo, hi = S.wilson_ci(1.0, 50)
    assert 0 <= lo < hi <= 1 and hi == 1.0
    assert S.task_mean_ci([0.5, 0.6], ["a", "b"])["lo"] != S.task_mean_ci([0.5, 0.6], ["a", "b"])["lo"]  # NaN


@pytest.mark.parametrize("n,seed", [(6, 0), (8, 1), (12, 2), (20, 3)])
def test_signed_rank_p_equals_scipy_exact_wilcoxon(n, seed):
    d = np.random.default_rng(seed).normal(0.3, 1, size=n)
    for alt in ("two-sided", "greater", "less"):
        ref = ss.wilcoxon(d, method="exact", alternative=alt).pvalue
        assert S.signed_rank_p(d, alt) == pytest.approx(ref, abs=1e-9)


def test_signed_rank_p_with_ties_and_zeros_equals_brute_force_sign_flips():
    d = np.array([0.1, -0.1, 0.2, 0.2, 0.0, 0.3, -0.05, 0.2])
    nz = d[d != 0]
    r = ss.rankdata(np.abs(nz))
    t0 = r[nz > 0].sum()
    null = [r[np.array(sg) > 0].sum() for sg in itertools.product([-1, 1], repeat=nz.size)]
    c = r.sum() / 2
    brute = np.mean(np.abs(np.array(null) - c) >= abs(t0 - c) - 1e-9)
    assert S.signed_rank_p(d) == pytest.approx(brute, abs=1e-12)


def test_hodges_lehmann_interval_inverts_the_signed_rank_test():
    """The 95% interval excludes 0 exactly when the exact two-sided p < 0.05 (no ties)."""
    rng = np.random.default_rng(11)
    for n in (6, 8, 10, 32):
        for shift in (0.0, 0.4, 0.8, 1.2):
            for _ in range(10):
                d = rng.normal(shift, 1, size=n)
                est, lo, hi = S.hodges_lehmann(d)
                assert lo <= est <= hi
                assert (S.signed_rank_p(d) < 0.05) == (lo > 0 or hi < 0)
    i, j = np.triu_indices(5)
    d = np.array([1.0, 2, 3, 4, 10])
    assert S.hodges_lehmann(d)[0] == pytest.approx(np.median((d[i] + d[j]) / 2))


def test_paired_test_averages_seeds_within_tasks_and_counts_wins():
    tasks = np.repeat(list("abcdef"), 2)
    diff = np.array([0.1, 0.2, 0.05, 0.0, 0.3, 0.1, -0.2, -0.1, 0.0, 0.0, 0.2, 0.4])
    r = S.paired_test(diff, tasks)
    per = np.array([0.15, 0.025, 0.2, -0.15, 0.0, 0.3])
    assert (r["wins"], r["losses"], r["ties"]) == (4, 1, 1) and r["n_tasks"] == 6
    assert r["mean"] == pytest.approx(per.mean()) and r["sd"] == pytest.approx(per.std(ddof=1))
    assert r["p"] == pytest.approx(S.signed_rank_p(per))


def test_rank_correlation_interval_and_mde():
    rng = np.random.default_rng(9)
    x = rng.normal(size=8)
    y = x + 0.5 * rng.normal(size=8)
    r = S.rank_correlation(x, y)
    z, se = np.arctanh(r["rho"]), np.sqrt((1 + r["rho"] ** 2 / 2) / 5)
    assert (r["lo"], r["hi"]) == pytest.approx((np.tanh(z - 1.959964 * se), np.tanh(z + 1.959964 * se)), abs=1e-5)
    assert r["p"] == S.correlation(x, y)["p"] and r["p_method"] == "exact permutation"
    assert r["mde"] == S.mde_correlation(8)   # simulated: tests/test_power.py


def test_abs_correlation_difference_compares_strength_whatever_the_sign():
    rng = np.random.default_rng(10)
    y = rng.normal(size=12)
    x = y + 0.1 * rng.normal(size=12)
    r = S.abs_correlation_difference(x, -x, y)               # the same measure both ways: no difference
    assert r["diff"] == pytest.approx(0.0) and r["p"] == pytest.approx(1.0)
    strong_wrong = -y + 0.05 * rng.normal(size=12)           # strongly negative: strong, whatever the sign
    weak = rng.normal(size=12)
    r = S.abs_correlation_difference(strong_wrong, weak, y)
    assert r["diff"] > 0 and r["rho_1"] < -0.9
    assert (r["p"] < 0.05) == (r["lo"] > 0 or r["hi"] < 0)


@pytest.mark.slow  # 300 simulated data sets with exact permutation p-values: the fast tier's slowest test
def test_p_and_interval_agree_on_synthetic_data():
    """One estimand per number: p < 0.05 iff 0 lies outside the 95% interval (exactly for the
    signed-rank and Zou forms; for Spearman, whose p is an exact permutation test and whose interval
    is Fisher z, disagreements are rare and only near the boundary)."""
    rng = np.random.default_rng(12)
    disagree = 0
    for k in range(300):
        n = (8, 16, 32)[k % 3]
        x = rng.normal(size=n)
        y = rng.uniform(0, 0.8) * x + rng.normal(size=n)
        r = S.rank_correlation(x, y)
        if (r["p"] < 0.05) != (r["lo"] > 0 or r["hi"] < 0):
            disagree += 1
            assert 0.01 < r["p"] < 0.12
        z = rng.normal(size=n) + 0.5 * x
        d = S.abs_correlation_difference(x, z, y)
        assert (d["p"] < 0.05) == (d["lo"] > 0 or d["hi"] < 0)
    assert disagree <= 15


def test_holm_is_statsmodels_and_equivalence_needs_both_sides():
    from statsmodels.stats.multitest import multipletests
    p = [0.01, 0.04, 0.03, float("nan")]
    adj = S.holm(p)
    assert np.allclose(adj[:3], multipletests(p[:3], method="holm")[1]) and np.isnan(adj[3])
    rng = np.random.default_rng(0)      # the hand-written Holm equals statsmodels' (ties, ones, NaN anywhere)
    for m in (1, 2, 5, 12, 40):
        for _ in range(25):
            q = rng.choice([rng.uniform(0, 1, m), rng.uniform(0, 0.05, m), np.round(rng.uniform(0, 0.2, m), 2)])
            q[rng.uniform(size=m) < 0.15] = np.nan
            fin = np.isfinite(q)
            got = S.holm(q)
            assert np.array_equal(np.isnan(got), ~fin)
            if fin.any():
                assert np.allclose(got[fin], multipletests(q[fin], method="holm")[1], rtol=0, atol=1e-15)
    assert S.holm([]).size == 0 and np.isnan(S.holm([np.nan])).all()
    close = np.array([0.001, -0.002, 0.003, 0.0, 0.002, -0.001, 0.001, 0.002])
    assert S.equivalence_test(close, 0.02)["p_tost"] < 0.05
    assert S.equivalence_test(close + 0.05, 0.02)["p_tost"] > 0.5


def test_mcnemar_is_exact_on_the_discordant_images():
    assert S.mcnemar_p(20, 5) == pytest.approx(ss.binomtest(5, 25, 0.5).pvalue)
    assert S.mcnemar_p(0, 0) == 1.0


# ============================================================================= tables
def _row(train, seed, et, dom, schema, zs_acc, ft_acc, method="full", variant="default", **kw):
    r = dict(train_task=train, method=method, variant=variant, seed=seed, eval_task=et, eval_domain=dom,
             schema=schema, acc_zero_shot=zs_acc, acc_finetuned=ft_acc, acs_zero_shot=0.3, acs_finetuned=0.3,
             ss_zero_shot=0.5, ss_finetuned=0.5, n_images=10, n_lost=0, n_won=0)
    r.update(kw)
    return r


def test_run_level_by_hand_with_two_shifted_domains():
    """DG = every non-ID domain of the trained task (two here); CF = every other task."""
    rows = [_row("A", 0, "A", "a0", "ID", 0.5, 0.6),
            _row("A", 0, "A", "a1", "DG", 0.4, 0.45), _row("A", 0, "A", "a2", "DG", 0.4, 0.55),
            _row("A", 0, "B", "b0", "CF", 0.6, 0.58, ss_finetuned=0.4, acs_finetuned=0.35),
            _row("A", 0, "B", "b1", "CF", 0.6, 0.56, ss_finetuned=0.6, acs_finetuned=0.25)]
    r = T.run_level(pd.DataFrame(rows)).iloc[0]
    assert r["id_gain"] == pytest.approx(0.1)
    assert r["dg_gain"] == pytest.approx(0.1)            # mean of +0.05 and +0.15
    assert r["cf_drop"] == pytest.approx(0.03)           # mean of 0.02 and 0.04
    assert r["balance"] == pytest.approx(0.07)
    assert r["cf_abs_d_ss"] == pytest.approx(0.1) and r["cf_d_ss"] == pytest.approx(0.0)
    assert r["cf_abs_d_acs"] == pytest.approx(0.05)
    assert not r["diverged"] and not r["no_val_gain"]


def test_diverged_needs_a_significant_mcnemar_loss_or_nonfinite():
    rows = [_row("A", s, "A", "a0", "ID", 0.8, 0.8 - 0.1 * s, n_images=100, n_lost=3 + 10 * s, n_won=3)
            for s in range(3)]
    ft = pd.DataFrame({"task": "A", "method": "full", "variant": "default", "seed": [0, 1, 2],
                       "no_val_gain": [False, True, False], "nonfinite": [False, False, True]})
    r = T.run_level(pd.DataFrame(rows), ft).set_index("seed")
    assert r["diverged"].tolist() == [False, True, True]      # seed 1: 13 lost vs 3 won (McNemar p 0.02)
    assert r["no_val_gain"].tolist() == [False, True, False]
    assert r.loc[1, "mcnemar_p"] == pytest.approx(ss.binomtest(3, 16).pvalue)


def test_method_summary_is_mean_over_tasks_of_seed_means():
    res = results(5, seeds=(0, 1))
    t = A.compute(res)
    ms = t["method_summary"]
    runs = t["runs"][t["runs"]["variant"] == "default"]
    full = runs[runs["method"] == "full"]
    expect = full.groupby("train_task")["cf_drop"].mean().mean()
    row = ms[(ms["method"] == "full") & (ms["quantity"] == "cf_drop")].iloc[0]
    assert row["value"] == pytest.approx(expect)
    assert row["lo"] <= row["value"] <= row["hi"] and row["n_tasks"] == 5 and row["n_seeds"] == 2
    # the headline is the same numbers in points
    h = t["headline"].set_index("method")
    assert h.loc["full", "cf_drop"] == pytest.approx(100 * row["value"])
    assert h.loc["full", "cf_drop_hi"] == pytest.approx(100 * row["hi"])


def test_predictors_follow_the_gain_per_stratum_and_skip_a_missing_measure():
    res = results(6, iimm=False)
    t = A.compute(res)
    p = t["predictors"]
    assert "iimm" not in set(p["measure"]) and {"ss", "acs", "class_ss", "modality_gap", "acc"} <= set(p["measure"])
    assert set(p["stratum"]) == {"ID", "shift1"}             # never pooled across domains
    pooled = p[(p["method"] == "pooled") & (p["stratum"] == "ID")].set_index(["measure", "form"])
    assert pooled.loc[("ss", T.RAW), "rho"] > 0.9          # the synthetic gain grows with ss
    assert pooled.loc[("ss", T.RAW), "n_tasks"] == 6 and pooled.loc[("ss", T.RAW), "ci_method"] == S.FISHER_BW
    assert ("acc", T.PARTIAL) not in pooled.index           # no partial of acc on itself


@pytest.fixture(scope="module")
def _computed5():
    return A.compute(results(5))


@pytest.fixture
def computed5(_computed5):
    """``A.compute(results(5))``, computed once for this module (the fast tier's most expensive
    call); each test gets its own copies of the tables."""
    return {k: (v.copy() if hasattr(v, "copy") else v) for k, v in _computed5.items()}


def test_headroom_gain_is_gain_over_headroom(computed5):
    t = computed5
    g = t["gain_points"]
    row = g[(g["method"] == "full")].iloc[0]
    assert row["gain_headroom"] == pytest.approx(row["gain"] / (1 - row["acc_zero_shot"]))


def test_comparison_lookup_flips_sign(computed5):
    t = computed5
    comp = t["comparisons"]
    ab = T.comparison(comp, "cf_drop", "full", "bitfit")
    ba = T.comparison(comp, "cf_drop", "bitfit", "full")
    assert ab["estimate"] == pytest.approx(-ba["estimate"]) and ab["lo"] == pytest.approx(-ba["hi"], nan_ok=True)
    assert np.isnan(ab["lo"])                                # 5 tasks: too few for a 95% signed-rank interval
    assert (ab["wins"], ab["losses"]) == (ba["losses"], ba["wins"])


def test_old_column_names_give_a_clear_error():
    res = results(5)
    res["zero_shot"] = res["zero_shot"].rename(columns={"acc": "zero_shot_acc", "ss": "silhouette"})
    with pytest.raises(ValueError, match="old column names.*rerun 01_zero_shot"):
        A.compute(res)
    res = results(5)
    res["evaluation"] = res["evaluation"].drop(columns="acc_finetuned")
    with pytest.raises(ValueError, match="lacks columns.*acc_finetuned"):
        A.compute(res)


# ============================================================================= claims
def _verdicts(t):
    return dict(zip(t["claims"]["id"], t["claims"]["verdict"]))


def test_fewer_than_eight_tasks_is_inconclusive(computed5):
    v = _verdicts(computed5)
    assert set(v.values()) == {C.TOO_FEW} and set(v) == set(C.REGISTRY)


@pytest.mark.slow
def test_claims_follow_the_data_and_flip_when_it_flips():
    v = _verdicts(A.compute(results(8, seeds=(0, 1))))
    assert v["2a"] == "holds" and v["3b"] == "holds" and v["4a"] == "holds"
    flipped = dict(FORGET, bitfit=0.005, lora=0.2)         # BitFit now forgets least, LoRA most
    v = _verdicts(A.compute(results(8, seeds=(0, 1), forget=flipped)))
    assert v["2a"] == "does not hold" and v["3b"] == "does not hold"


def test_flags_are_counted_and_no_run_is_excluded():
    res = results(5, no_val_gain=[("t0", "full", 0), ("t3", "full", 1), ("t2", "lora", 2)])
    t = A.compute(res)
    fl = t["run_flags"].set_index("method")
    assert fl.loc["full", "no_val_gain"] == 2 and fl.loc["lora", "no_val_gain"] == 1 and fl.loc["full", "runs"] == 15
    assert "subset" not in t["method_summary"] and len(t["claims"]) == len(C.REGISTRY)
    assert t["method_summary"].set_index(["method", "quantity"]).loc[("full", "id_gain"), "n_runs"] == 15
    assert t["headline"].set_index("method").loc["full", "no_val_gain_runs"] == 2


def test_claims_registry_functions_take_tables(computed5):
    t = computed5
    for cid, (text, fn) in C.REGISTRY.items():
        v = fn(t)
        assert isinstance(v, C.Verdict) and v.id == cid and v.claim == text and v.verdict in C.VERDICTS


# ============================================================================= output
def test_markdown_tables_are_narrow_and_claims_md(tmp_path):
    t = A.compute(results(5, no_val_gain=[("t0", "full", 0)]))
    written = A.save_tables(t, tmp_path)
    mds = [p for p in written if p.suffix == ".md"]
    assert {"headline.md", "method_summary.md", "predictors.md", "claim_tests.md"} <= {p.name for p in mds}
    for p in mds:
        header = p.read_text().splitlines()[0]
        assert header.count("|") - 1 <= R.MAX_MD_COLUMNS, p.name
    assert not (tmp_path / "seed_aggregate.md").exists() and (tmp_path / "seed_aggregate.csv").exists()
    A.write_claims_md(t["claims"], tmp_path / "claims.md", "unit", {"git": {"commit": "abc", "dirty": False}})
    text = (tmp_path / "claims.md").read_text()
    assert "## Claim 2a" in text and C.TOO_FEW in text and "Holm p" in text and "| test |" in text
    assert (tmp_path / "MANIFEST.json").exists()


def test_readme_block_replaced_between_markers(tmp_path, computed5):
    t = computed5
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Results\n\n{R.README_BEGIN}\nSTALE-CONTENT\n{R.README_END}\n\n## After\n")
    from lib.pipeline import publish as P
    P.update_readme(t, "unit", readme)
    text = readme.read_text()
    assert "STALE-CONTENT" not in text and "## After" in text and "| Full |" in text and "tradeoff.png" in text
    assert text.count(R.README_BEGIN) == 1 and "**2a**" in text
    assert "Tasks as units" not in text           # task names without renderer families: no clustering line
    P.update_readme({**t, "family_clustering": pd.DataFrame(
        [dict(quantity="cf_drop", method="lora", versus="full", n_tasks=32, n_families=8, icc=-0.1, f_p=0.6,
              design_effect=1.0)])}, "unit", readme)
    assert "**Tasks as units**" in readme.read_text() and "32 tasks in 8 renderer families" in readme.read_text()
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        P.update_readme(t, "unit", readme)


# ============================================================================= world check
def test_world_check_flags_tasks_outside_the_zero_shot_target():
    """Study v2's target: every task's ID zero-shot accuracy in [1.3 x chance, 0.90]; the summary row
    has the range, the count in range and Spearman(ss, ACS) over the tasks' ID domains."""
    rows = []
    accs = {"a": 0.95, "b": 0.12, "c": 0.50, "d": 0.89}       # a above 90%, b below 1.3 x 0.1
    for i, (t, acc) in enumerate(accs.items()):
        for k, (dom, kind) in enumerate([("id", "ID"), ("m", "OOD"), ("s", "OOD")]):
            rows.append({"task": t, "domain": dom, "domain_kind": kind, "chance": 0.1,
                         "acc": acc if kind == "ID" else acc / 2, "ss": 0.1 * i + 0.01 * k, "acs": 0.5 - 0.1 * i - 0.01 * k})
    wc = T.world_check(pd.DataFrame(rows))
    per = wc[wc["task"] != "all"].set_index("task")
    assert per["in_range"].to_dict() == {"a": False, "b": False, "c": True, "d": True}
    assert per.loc["b", "target_lo"] == pytest.approx(0.13)
    allr = wc[wc["task"] == "all"].iloc[0]
    assert allr["tasks_in_range"] == 2 and not allr["in_range"]
    assert allr["id_acc_min"] == 0.12 and allr["id_acc_max"] == 0.95 and allr["n_points"] == 4
    assert allr["ss_acs_rho"] == pytest.approx(-1.0)


def test_learning_rates_print_in_scientific_notation(tmp_path):
    sweep = lr_sweep(finetune(evaluation(zero_shot(3), seeds=(0,), ablations=())))
    R.save_table(sweep, "lr_sweep", tmp_path)
    text = (tmp_path / "lr_sweep.md").read_text()
    assert "| 1e-03 |" in text and "| 0.001 |" not in text and "| 0.000 |" not in text
