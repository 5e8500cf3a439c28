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
                     n_classes=10, chance=0.1, acc=round(0.9 - 0.6 * diff / (n_tasks + 1), 3),
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
                    row = dict(train_task=train, method=method, variant=variant, seed=sd, eval_task=et,
                               eval_domain=dom, schema=schema, n_images=200, acc_zero_shot=r["acc"],
                               acc_finetuned=round(acc_ft, 4), acs_zero_shot=r["acs"],
                               acs_finetuned=round(r["acs"] + sh * (1 if schema != "CF" else -0.5), 5),
                               ss_zero_shot=r["ss"], ss_finetuned=round(r["ss"] - sh + rng.normal(0, noise / 4), 5))
                    rows.append(row)
    return pd.DataFrame(rows)


def finetune(ev: pd.DataFrame, collapsed=()) -> pd.DataFrame:
    """``collapsed``: (task, method, seed) runs to mark collapsed (adds the column when given)."""
    runs = ev[["train_task", "method", "variant", "seed"]].drop_duplicates().rename(columns={"train_task": "task"})
    runs["trainable_params"] = [PARAMS[m] // (3 if v != "default" else 1) for m, v in zip(runs["method"], runs["variant"])]
    for c, v in dict(best_val_acc=0.8, best_epoch=3, epochs=5, lr=1e-3, options="{}", train_seconds=10.0,
                     peak_memory_mb=100.0).items():
        runs[c] = v
    if collapsed:
        runs["collapsed"] = [(t, m, s) in set(collapsed) and v == "default"
                             for t, m, v, s in zip(runs["task"], runs["method"], runs["variant"], runs["seed"])]
    return runs.reset_index(drop=True)


def results(n_tasks: int = 5, seeds=(0, 1, 2), acs_order=None, collapsed=(), iimm: bool = True,
            two_shift: bool = False, ss_noise: float = 0.0, **kw) -> dict:
    zs = zero_shot(n_tasks, acs_order=acs_order, iimm=iimm, two_shift=two_shift, ss_noise=ss_noise)
    ev = evaluation(zs, seeds=seeds, **kw)
    ft = finetune(ev, collapsed)
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


def test_task_mean_ci_is_scipy_bca_over_task_means():
    """Seeds are averaged within a task first; the interval is scipy's BCa over the task means."""
    rng = np.random.default_rng(8)
    tasks = np.repeat(["a", "b", "c", "d", "e", "f"], 3)
    v = rng.uniform(0.2, 0.9, size=18)
    r = S.task_mean_ci(v, tasks)
    m = np.array([v[tasks == t].mean() for t in "abcdef"])
    ref = ss.bootstrap((m,), np.mean, n_resamples=S.N_RESAMPLES, method="BCa",
                       rng=np.random.default_rng(S.SEED)).confidence_interval
    assert r["value"] == pytest.approx(m.mean())
    assert (r["lo"], r["hi"]) == pytest.approx((ref.low, ref.high), abs=1e-12)
    assert r["n_tasks"] == 6


def test_bounded_intervals_stay_inside_bounds():
    tasks = np.repeat(["a", "b", "c", "d", "e"], 3)
    acc = np.r_[np.ones(12), [0.97, 0.99, 1.0]]           # near the upper bound
    r = S.task_mean_ci(acc, tasks, bounds=(0, 1))
    assert 0 <= r["lo"] <= r["value"] <= r["hi"] <= 1
    lo, hi = S.wilson_ci(1.0, 50)
    assert 0 <= lo < hi <= 1 and hi == 1.0
    assert S.task_mean_ci([0.5, 0.6], ["a", "b"])["lo"] != S.task_mean_ci([0.5, 0.6], ["a", "b"])["lo"]  # NaN


def test_paired_comparison_sign_test_and_wins():
    tasks = np.repeat(list("abcdef"), 2)
    diff = np.array([0.1, 0.2, 0.05, 0.0, 0.3, 0.1, -0.2, -0.1, 0.0, 0.0, 0.2, 0.4])
    r = S.paired_comparison(diff, tasks)
    assert (r["wins"], r["losses"], r["ties"]) == (4, 1, 1)
    assert r["sign_p"] == pytest.approx(ss.binomtest(4, 5, 0.5).pvalue)
    assert r["value"] == pytest.approx(np.mean([0.15, 0.025, 0.2, -0.15, 0.0, 0.3]))


def test_correlation_difference_is_paired():
    rng = np.random.default_rng(9)
    x = rng.normal(size=8)
    y = x + 0.2 * rng.normal(size=8)
    r = S.correlation_difference(x, -x, y, sign_a=1, sign_b=-1)   # the same measure both ways: diff 0
    assert r["diff"] == pytest.approx(0.0) and r["lo"] == pytest.approx(0.0) and r["hi"] == pytest.approx(0.0)


# ============================================================================= tables
def _row(train, seed, et, dom, schema, zs_acc, ft_acc, method="full", variant="default", **kw):
    r = dict(train_task=train, method=method, variant=variant, seed=seed, eval_task=et, eval_domain=dom,
             schema=schema, acc_zero_shot=zs_acc, acc_finetuned=ft_acc, acs_zero_shot=0.3, acs_finetuned=0.3,
             ss_zero_shot=0.5, ss_finetuned=0.5, n_images=10)
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
    assert not r["collapsed"]


def test_method_summary_is_mean_over_tasks_of_seed_means():
    res = results(5, seeds=(0, 1))
    t = A.compute(res)
    ms = T.subset_of(t["method_summary"])
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


def test_predictors_follow_the_gain_and_skip_a_missing_measure():
    res = results(6, iimm=False)
    t = A.compute(res)
    p = T.subset_of(t["predictors"])
    assert "iimm" not in set(p["measure"]) and {"ss", "acs", "class_ss", "modality_gap", "acc"} <= set(p["measure"])
    pooled = p[(p["method"] == "pooled") & (p["target"] == "ID+DG")].set_index(["measure", "form"])
    assert pooled.loc[("ss", T.RAW), "rho"] > 0.9          # the synthetic gain grows with ss
    assert pooled.loc[("ss", T.RAW), "n_points"] == 12 and pooled.loc[("ss", T.RAW), "n_tasks"] == 6
    assert ("acc", T.PARTIAL) not in pooled.index           # no partial of acc on itself


def test_headroom_gain_is_gain_over_headroom():
    t = A.compute(results(5))
    g = t["gain_points"]
    row = g[(g["method"] == "full")].iloc[0]
    assert row["gain_headroom"] == pytest.approx(row["gain"] / (1 - row["acc_zero_shot"]))


def test_comparison_lookup_flips_sign():
    t = A.compute(results(5))
    comp = T.subset_of(t["comparisons"])
    ab = T.comparison(comp, "cf_drop", "full", "bitfit")
    ba = T.comparison(comp, "cf_drop", "bitfit", "full")
    assert ab["diff"] == pytest.approx(-ba["diff"]) and ab["diff_lo"] == pytest.approx(-ba["diff_hi"])
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
def _verdicts(t, subset=T.ALL_RUNS):
    c = t["claims"]
    return dict(zip(c[c["subset"] == subset]["id"], c[c["subset"] == subset]["verdict"]))


def test_fewer_than_eight_tasks_is_inconclusive():
    v = _verdicts(A.compute(results(5)))
    assert set(v.values()) == {C.TOO_FEW} and set(v) == set(C.REGISTRY)


@pytest.mark.slow
def test_claims_follow_the_data_and_flip_when_it_flips():
    v = _verdicts(A.compute(results(8, seeds=(0, 1))))
    assert v["2a"] == "holds" and v["3b"] == "holds" and v["4a"] == "holds" and v["1-raw"] == "holds"
    flipped = dict(FORGET, bitfit=0.005, lora=0.2)         # BitFit now forgets least, LoRA most
    v = _verdicts(A.compute(results(8, seeds=(0, 1), forget=flipped)))
    assert v["2a"] == "does not hold" and v["3b"] == "does not hold"


def test_decide_rule():
    assert C.decide(0.1, 0.05, 0.2, 8) == ("holds", pytest.approx(0.1), False)
    assert C.decide(0.1, -0.05, 0.2, 8)[0] == "inconclusive" and C.decide(0.1, -0.05, 0.2, 8)[2]
    assert C.decide(-0.1, -0.2, -0.05, 8)[0] == "does not hold"
    assert C.decide(-0.1, -0.2, -0.05, 8, direction=-1)[0] == "holds"
    assert C.decide(0.1, 0.05, 0.2, 7)[0] == C.TOO_FEW
    assert C.decide(0.1, float("nan"), float("nan"), 9)[0] == "inconclusive"


def test_collapsed_runs_give_a_second_subset_and_counts():
    res = results(5, collapsed=[("t0", "full", 0), ("t3", "full", 1), ("t2", "lora", 2)])
    t = A.compute(res)
    assert set(t["claims"]["subset"]) == {T.ALL_RUNS, T.WITHOUT_COLLAPSED}
    assert len(t["claims"]) == 2 * len(C.REGISTRY)
    col = t["collapse"].set_index("method")
    assert col.loc["full", "collapsed_runs"] == 2 and col.loc["lora", "collapsed_runs"] == 1
    assert col.loc["full", "runs"] == 15
    ms = t["method_summary"]
    full = ms[(ms["method"] == "full") & (ms["quantity"] == "id_gain")].set_index("subset")
    assert full.loc[T.WITHOUT_COLLAPSED, "n_runs"] == 13 and full.loc[T.ALL_RUNS, "n_runs"] == 15
    assert t["headline"].set_index("method").loc["full", "collapsed_runs"] == 2


def test_claims_registry_functions_take_tables():
    t = A.compute(results(5))
    for cid, (text, fn) in C.REGISTRY.items():
        v = fn(t)
        assert isinstance(v, C.Verdict) and v.id == cid and v.claim == text and v.verdict in C.VERDICTS


# ============================================================================= output
def test_markdown_tables_are_narrow_and_claims_md(tmp_path):
    t = A.compute(results(5, collapsed=[("t0", "full", 0)]))
    written = A.save_tables(t, tmp_path)
    mds = [p for p in written if p.suffix == ".md"]
    assert {"headline.md", "method_summary.md", "predictors.md", "comparisons.md"} <= {p.name for p in mds}
    for p in mds:
        header = p.read_text().splitlines()[0]
        assert header.count("|") - 1 <= R.MAX_MD_COLUMNS, p.name
    assert not (tmp_path / "seed_aggregate.md").exists() and (tmp_path / "seed_aggregate.csv").exists()
    A.write_claims_md(t["claims"], tmp_path / "claims.md", "unit", {"git": {"commit": "abc", "dirty": False}})
    text = (tmp_path / "claims.md").read_text()
    assert "## Claim 2a" in text and C.TOO_FEW in text and "without collapsed runs" in text
    assert (tmp_path / "MANIFEST.json").exists()


def test_readme_block_replaced_between_markers(tmp_path):
    t = A.compute(results(5))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Results\n\n{R.README_BEGIN}\nSTALE-CONTENT\n{R.README_END}\n\n## After\n")
    from lib.pipeline import publish as P
    P.update_readme(t, "unit", readme)
    text = readme.read_text()
    assert "STALE-CONTENT" not in text and "## After" in text and "| Full |" in text and "tradeoff.png" in text
    assert text.count(R.README_BEGIN) == 1 and "**2a**" in text
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        P.update_readme(t, "unit", readme)


# ============================================================================= world check
def test_world_check_flags_tasks_outside_the_zero_shot_target():
    """Study v2's target: every task's ID zero-shot accuracy in [1.3 x chance, 0.90]; the summary row
    has the range, the count in range and Spearman(ss, ACS) over every (task, domain) point."""
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
    assert allr["id_acc_min"] == 0.12 and allr["id_acc_max"] == 0.95 and allr["n_points"] == 12
    assert allr["ss_acs_rho"] == pytest.approx(-1.0)
