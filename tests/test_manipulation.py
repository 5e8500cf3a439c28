"""lib.analysis.manipulation: the pre-registered manipulation checks on synthetic zero-shot tables
(8 tasks, one per cell; 40 tasks, five per cell) and, when a mini run exists, on its real table.
Fast, no torch."""
from __future__ import annotations

import importlib.util
import itertools

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats as st
from statsmodels.stats.multitest import multipletests
from statsmodels.stats import proportion as smp

from lib import paths, schema
from lib.analysis import manipulation as M

N_IMAGES = 300
EFFECTS = {"coverage": 0.20, "caption_noise": -0.10, "diversity": -0.08}   # the pre-registered signs
CELLS = list(itertools.product(*[(M.REFERENCE[f], M.DIRECTION[f][0]) for f in M.FACTORS]))


def design(per_cell: int) -> dict:
    """Task -> cell, ``per_cell`` tasks in each of the 8 cells."""
    return {f"t{c}_{k}": dict(zip(M.FACTORS, cell)) for c, cell in enumerate(CELLS) for k in range(per_cell)}


def cfg_of(des: dict | None) -> dict:
    world = {"levels": {"coverage": {"low": 0.08, "high": 1.0}, "caption_noise": {"clean": 0.0, "noisy": 0.5},
                        "diversity": {"tight": 0.7, "varied": 1.0}}}
    if des is not None:
        world["design"] = des
    return {"name": "synthetic", "world": world}


def k_over_n(a: float) -> float:
    return round(float(np.clip(a, 0, 1)) * N_IMAGES) / N_IMAGES


def zero_shot(des: dict, effects: dict = EFFECTS, base: float = 0.55, noise: float = 0.01, mild_drop: float = 0.10,
              strong_drop: float = 0.25, seed: int = 0, n_classes: int = 8) -> pd.DataFrame:
    """A zero_shot.csv-like table: three domains per task [ID, s_mild, s_strong], ID accuracy =
    base + the effects of the task's non-reference levels + N(0, noise), each accuracy k / 300."""
    rng = np.random.default_rng(seed)
    rows = []
    for t, cell in des.items():
        a = base + sum(e for f, e in effects.items() if cell[f] != M.REFERENCE[f]) + rng.normal(0, noise)
        for dom, kind, acc in ((f"{t}_id", "ID", a), ("s_mild", "OOD", a - mild_drop), ("s_strong", "OOD", a - strong_drop)):
            rows.append(dict(task=t, domain=dom, split="test", domain_kind=kind, n_images=N_IMAGES, n_classes=n_classes,
                             chance=1.0 / n_classes, acc=k_over_n(acc), acs=0.5 + 0.2 * acc + rng.normal(0, 0.01),
                             ss=0.3 - 0.2 * acc + rng.normal(0, 0.01)))
    return pd.DataFrame(rows)


def set_acc(zs: pd.DataFrame, task: str, suffix: str, acc: float) -> pd.DataFrame:
    zs = zs.copy()
    zs.loc[(zs["task"] == task) & zs["domain"].str.endswith(suffix), "acc"] = k_over_n(acc)
    return zs


def row(df: pd.DataFrame, check: str) -> pd.Series:
    hit = df[df["check"] == check]
    assert len(hit) == 1, check
    return hit.iloc[0]


def decided_checks(df):
    return dict(zip(M.decided(df)["check"], M.decided(df)["passed"]))


PER_CELL = [1, 5]   # 8 tasks (saturated main effects, 4 residual df) and 40 tasks


# ----------------------------------------------------------------------------- (a) all pass
@pytest.mark.parametrize("per_cell", PER_CELL)
def test_all_checks_pass(per_cell):
    des = design(per_cell)
    df = M.manipulation_checks(zero_shot(des), cfg_of(des))
    assert list(df.columns) == ["check", "statistic", "value", "lo", "hi", "p", "passed"] == M.COLUMNS
    n = len(des)
    expected = ([f"factor_{f}" for f in M.FACTORS] + [f"shift_{t}" for t in des] + ["id_acc_range", "id_acc_spread"]
                + [f"factor_{f}_{m} (reported)" for m in M.REPORTED_MEASURES for f in M.FACTORS])
    assert list(df["check"]) == expected
    dec = decided_checks(df)
    assert len(dec) == 3 + n + 2 and all(v is True or v is np.True_ for v in dec.values()), df
    for f, e in EFFECTS.items():
        r = row(df, f"factor_{f}")
        assert r["lo"] < r["value"] < r["hi"] and abs(r["value"] - e) < 0.03 and r["p"] < M.ALPHA
        assert f"{4 if per_cell == 1 else 36} residual df" in r["statistic"] and "Holm" in r["statistic"]
    rep = df[df["check"].str.endswith("(reported)")]
    assert len(rep) == 6 and rep["passed"].isna().all() and np.isfinite(rep["value"]).all()
    assert row(df, "id_acc_range")["value"] == 1.0 and "all in range" in row(df, "id_acc_range")["statistic"]
    assert row(df, "id_acc_spread")["value"] <= M.MAX_GAP
    text = M.checks_summary(df)
    assert f"{len(dec)} of {len(dec)} passed" in text and "none failed" in text and "6 further rows" in text


# ----------------------------------------------------------------------------- (b) a wrong sign
@pytest.mark.parametrize("per_cell", PER_CELL)
def test_wrong_sign_factor_fails(per_cell):
    des = design(per_cell)
    df = M.manipulation_checks(zero_shot(des, effects={**EFFECTS, "diversity": +0.08}), cfg_of(des))
    r = row(df, "factor_diversity")
    assert r["passed"] is False and r["value"] > 0 and "wrong sign" in r["statistic"]
    assert r["p"] > 0.5          # one-sided in the pre-registered direction: the estimate is on the other side
    assert row(df, "factor_coverage")["passed"] is True and row(df, "factor_caption_noise")["passed"] is True
    assert "`factor_diversity`" in M.checks_summary(df)


# ----------------------------------------------------------------------------- (c) a shift that raises accuracy
@pytest.mark.parametrize("per_cell", PER_CELL)
def test_raising_shift_fails_that_task_only(per_cell):
    des = design(per_cell)
    zs = zero_shot(des)
    bad = list(des)[2]
    a_id = float(zs.loc[(zs["task"] == bad) & (zs["domain_kind"] == "ID"), "acc"].iloc[0])
    zs = set_acc(zs, bad, "_strong", a_id + 0.05)
    df = M.manipulation_checks(zs, cfg_of(des))
    r = row(df, f"shift_{bad}")
    assert r["passed"] is False and r["value"] < 0 and "order fails" in r["statistic"] and r["p"] > 0.5
    others = df[df["check"].str.startswith("shift_") & (df["check"] != f"shift_{bad}")]
    assert len(others) == len(des) - 1 and (others["passed"] == True).all()  # noqa: E712
    assert len(df[df["check"].str.startswith("shift_")]) == len(des)   # reported, not dropped
    # mild outside [strong, ID] fails too, even with strong well below ID
    zs2 = set_acc(zero_shot(des), bad, "_mild", a_id + 0.02)
    r2 = row(M.manipulation_checks(zs2, cfg_of(des)), f"shift_{bad}")
    assert r2["passed"] is False and r2["value"] > 0.2 and "mild" in r2["statistic"]


# ----------------------------------------------------------------------------- (d) clustered accuracies
@pytest.mark.parametrize("per_cell", PER_CELL)
def test_clustered_accuracies_fail_spread(per_cell):
    des = design(per_cell)
    zs = zero_shot(des, effects={"coverage": 0.45, "caption_noise": 0.0, "diversity": 0.0}, base=0.35)
    df = M.manipulation_checks(zs, cfg_of(des))
    r = row(df, "id_acc_spread")
    ids = np.sort(zs.loc[zs["domain_kind"] == "ID", "acc"].to_numpy())
    k = int(np.argmax(np.diff(ids)))
    assert r["passed"] is False and r["value"] > 0.3
    assert (r["lo"], r["hi"]) == (ids[k], ids[k + 1]) and r["value"] == pytest.approx(ids[k + 1] - ids[k])
    assert row(df, "id_acc_range")["passed"] is True
    # a gap of exactly MAX_GAP (k / n accuracies) passes
    zs3 = zs.copy()
    tasks = list(des)
    for i, t in enumerate(tasks):
        zs3 = set_acc(zs3, t, "_id", 0.30 + M.MAX_GAP * (i % 2))
    r3 = row(M.manipulation_checks(zs3, cfg_of(des)), "id_acc_spread")
    assert r3["passed"] is True and r3["value"] == pytest.approx(M.MAX_GAP)


def test_range_names_failing_tasks():
    des = design(1)
    zs = set_acc(zero_shot(des), "t0_0", "_id", 0.95)
    zs = set_acc(zs, "t0_0", "_mild", 0.90)
    zs = set_acc(zs, "t7_0", "_id", 0.12)   # chance 1/8: 1.3 x chance = 0.1625
    zs = set_acc(zs, "t7_0", "_mild", 0.11)
    zs = set_acc(zs, "t7_0", "_strong", 0.10)
    r = row(M.manipulation_checks(zs, cfg_of(des)), "id_acc_range")
    assert r["passed"] is False and r["value"] == 6 / 8 and (r["lo"], r["hi"]) == (0.12, 0.95)
    assert "t0_0 (0.950 > 0.90)" in r["statistic"] and "t7_0 (0.120 < 0.163)" in r["statistic"]


# ----------------------------------------------------------------------------- (e) no design
@pytest.mark.parametrize("per_cell", PER_CELL)
@pytest.mark.parametrize("cfg", [cfg_of(None), {"name": "paper", "data": {"source": "real"}}])
def test_no_design_only_checks_2_to_4(per_cell, cfg):
    des = design(per_cell)
    df = M.manipulation_checks(zero_shot(des), cfg)
    assert list(df["check"]) == [f"shift_{t}" for t in des] + ["id_acc_range", "id_acc_spread"]
    assert (df["passed"] == True).all()   # noqa: E712


def test_real_data_without_graded_shift_is_not_decided():
    """A real-data task (ImageNet: four unordered OOD sets) has no *_strong domain: its row is reported."""
    des = design(1)
    zs = zero_shot(des)
    zs = zs[~((zs["task"] == "t0_0") & (zs["domain_kind"] == "OOD"))]
    zs = pd.concat([zs, pd.DataFrame([dict(task="t0_0", domain="imagenet_sketch", split="test", domain_kind="OOD",
                                           n_images=N_IMAGES, n_classes=8, chance=0.125, acc=0.3)])])
    df = M.manipulation_checks(zs, {"name": "paper"})
    r = row(df, "shift_t0_0")
    assert pd.isna(r["passed"]) and "not applicable" in r["statistic"]
    assert "Holm-adjusted over 7 tasks" in row(df, "shift_t1_0")["statistic"]


# ----------------------------------------------------------------------------- Holm, against statsmodels
@pytest.mark.parametrize("per_cell", PER_CELL)
def test_holm_matches_statsmodels(per_cell):
    des = design(per_cell)
    zs = zero_shot(des, effects={"coverage": 0.05, "caption_noise": -0.01, "diversity": +0.01}, noise=0.03, seed=3)
    zs = set_acc(zs, list(des)[0], "_strong", 0.55)     # one shift near zero, so the adjustment matters
    df = M.manipulation_checks(zs, cfg_of(des))
    # factors: one-sided t p in the pre-registered direction, Holm over the three
    zid = zs[zs["domain_kind"] == "ID"]
    d = pd.DataFrame({"task": zid["task"].to_numpy(), "id_acc": zid["acc"].to_numpy()})
    for f in M.FACTORS:
        d[f] = d["task"].map(lambda t: des[t][f])
    fit = smf.ols("id_acc ~ C(coverage, Treatment('low')) + C(caption_noise) + C(diversity)", data=d).fit()
    names = {"coverage": "C(coverage, Treatment('low'))[T.high]", "caption_noise": "C(caption_noise)[T.noisy]",
             "diversity": "C(diversity)[T.varied]"}
    raw = [st.t.sf(fit.tvalues[names[f]] * M.DIRECTION[f][1], fit.df_resid) for f in M.FACTORS]
    want = multipletests(raw, method="holm")[1]
    got = [row(df, f"factor_{f}")["p"] for f in M.FACTORS]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert not np.allclose(got, raw)
    ci = fit.conf_int(0.05)
    for f in M.FACTORS:
        r = row(df, f"factor_{f}")
        assert r["value"] == pytest.approx(fit.params[names[f]])
        assert (r["lo"], r["hi"]) == pytest.approx((ci.loc[names[f], 0], ci.loc[names[f], 1]))
        assert r["passed"] == bool(r["p"] < 0.05 and np.sign(r["value"]) == M.DIRECTION[f][1])
    # shifts: one-sided score test ID > strong per task, Holm over the tasks; Newcombe interval
    raw, cis = [], []
    for t in des:
        g = zs[zs["task"] == t]
        k1 = round(g.loc[g["domain_kind"] == "ID", "acc"].iloc[0] * N_IMAGES)
        k2 = round(g.loc[g["domain"].str.endswith("_strong"), "acc"].iloc[0] * N_IMAGES)
        raw.append(smp.test_proportions_2indep(k1, N_IMAGES, k2, N_IMAGES, method="score", compare="diff",
                                               alternative="larger").pvalue)
        cis.append(smp.confint_proportions_2indep(k1, N_IMAGES, k2, N_IMAGES, method="newcomb", compare="diff"))
    sh = df[df["check"].str.startswith("shift_")]
    np.testing.assert_allclose(sh["p"], multipletests(raw, method="holm")[1], rtol=1e-10)
    np.testing.assert_allclose(sh[["lo", "hi"]].to_numpy(), np.array(cis, dtype=float), rtol=1e-10)
    assert sh["p"].iloc[0] > 0.05 and sh["passed"].iloc[0] is False


# ----------------------------------------------------------------------------- undecidable designs
def test_too_few_residual_df_is_not_decided():
    """Four tasks in four cells: the main-effects model is estimable but leaves 0 residual df."""
    cells = [("low", "clean", "tight"), ("high", "clean", "tight"), ("low", "noisy", "tight"), ("low", "clean", "varied")]
    des = {f"t{i}": dict(zip(M.FACTORS, c)) for i, c in enumerate(cells)}
    df = M.manipulation_checks(zero_shot(des), cfg_of(des))
    for f in M.FACTORS:
        r = row(df, f"factor_{f}")
        assert r["passed"] is False and "0 residual df" in r["statistic"] and "NOT DECIDED" in r["statistic"]
        assert np.isfinite(r["value"]) and np.isnan(r["p"])
    assert all(row(df, f"shift_{t}")["passed"] is True for t in des)


def test_one_level_and_confounded_factors():
    one = {t: {**c, "diversity": "tight"} for t, c in design(1).items()}   # diversity never varied
    df = M.manipulation_checks(zero_shot(one), cfg_of(one))
    r = row(df, "factor_diversity")
    assert r["passed"] is False and "only level tight" in r["statistic"]
    # coverage and caption noise remain testable (8 tasks, 3 params: 5 residual df); Holm family stays 3
    assert row(df, "factor_coverage")["passed"] is True and "5 residual df" in row(df, "factor_coverage")["statistic"]
    conf = {f"t{i}": dict(zip(M.FACTORS, c)) for i, c in
            enumerate([("low", "clean", "tight"), ("high", "noisy", "tight")] * 3 + [("low", "clean", "varied")] * 2)}
    df2 = M.manipulation_checks(zero_shot(conf), cfg_of(conf))
    assert all("confounded" in row(df2, f"factor_{f}")["statistic"] for f in ("coverage", "caption_noise"))


def test_bad_design_is_refused():
    des = design(1)
    with pytest.raises(ValueError, match="no cell"):
        M.manipulation_checks(zero_shot(des), cfg_of({t: c for t, c in list(des.items())[1:]}))
    with pytest.raises(ValueError, match="coverage"):
        M.manipulation_checks(zero_shot(des), cfg_of({t: {**c, "coverage": "medium"} for t, c in des.items()}))


def test_only_test_split_is_used():
    des = design(1)
    zs = zero_shot(des)
    val = zs.assign(split="val", acc=0.99)
    a = M.manipulation_checks(zs, cfg_of(des))
    b = M.manipulation_checks(pd.concat([val, zs]), cfg_of(des))
    pd.testing.assert_frame_equal(a, b)


# ----------------------------------------------------------------------------- constants, one place
def test_constants_and_docstring_agree():
    assert (M.ALPHA, M.MAX_GAP, M.ID_LO_MULT, M.ID_HI) == (0.05, 0.15, 1.3, 0.90)
    doc = M.__doc__
    for text in (f"{M.ID_LO_MULT:g} x chance", f"{M.ID_HI:.2f}", f"{M.MAX_GAP:.2f}", f"{M.ALPHA}"):
        assert text in doc, text
    for name in ("ALPHA", "ID_LO_MULT", "ID_HI", "MAX_GAP", "REFERENCE", "DIRECTION", "MIN_RESIDUAL_DF"):
        assert f"``{name}``" in doc, name
    # the reference / other levels are the world's (lib/world/constants.py, loaded alone: no torch)
    spec = importlib.util.spec_from_file_location("_world_constants", paths.ROOT / "lib" / "world" / "constants.py")
    wc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wc)
    assert wc.FACTORS == {f: (M.REFERENCE[f], M.DIRECTION[f][0]) for f in M.FACTORS}


# ----------------------------------------------------------------------------- the real mini run, if present
REAL = [paths.product("mini", paths.ZERO_SHOT_CSV)]  # a mini build of this checkout, where it exists


def test_real_mini_run():
    path = next((p for p in REAL if p.exists()), None)
    if path is None:
        pytest.skip("no build/mini/results/zero_shot.csv: run make zero-shot PROFILE=mini")
    from lib import config
    zs = schema.read_table(path, schema.ZERO_SHOT, "mini")
    cfg = config.load_profile("mini")
    df = M.manipulation_checks(zs, cfg)
    n = zs["task"].nunique()
    assert list(df.columns) == M.COLUMNS and len(df) == 3 + n + 2 + 6
    assert len(M.decided(df)) == 3 + n + 2
    # every decided row follows its own rule (whatever today's world passes or fails)
    for r in M.decided(df).itertuples(index=False):
        if r.check.startswith("shift_"):
            assert r.passed == ("order fails" not in r.statistic and r.p < M.ALPHA)
        elif r.check.startswith("factor_"):
            assert r.passed == (r.p < M.ALPHA and np.sign(r.value) == M.DIRECTION[r.check[7:]][1])
    with pd.option_context("display.width", 200, "display.max_colwidth", 40):
        print(f"\n{path}\n", df.drop(columns="statistic").to_string(), "\n", M.checks_summary(df))


def test_family_rule_agrees_with_the_world():
    from lib.world import variants
    for t in variants.TASKS:
        assert M.family_of(t) == variants.family_of(t), t
    assert tuple(f"_{k}" for k in variants.INSTANCES + variants.INSTANCES_V4) == M.INSTANCE_SUFFIXES


def test_replicated_families_are_blocked():
    """World v3: 8 families x 4 tasks; a family effect (one renderer much harder) does not hide a factor."""
    rng = np.random.default_rng(0)
    fams = ["objects", "digits", "landcover", "pathology", "camera_trap", "traffic_signs", "flowers", "textures"]
    cells = [("low", "clean", "tight"), ("high", "noisy", "tight"), ("high", "clean", "varied"), ("low", "noisy", "varied"),
             ("high", "clean", "tight"), ("low", "noisy", "tight"), ("low", "clean", "varied"), ("high", "noisy", "varied")]
    rows = []
    for j, f in enumerate(fams):
        half = cells[:4] if j < 4 else cells[4:]
        for k, letter in enumerate("abcd"):
            c = half[(k + j) % 4]
            acc = 0.5 + 0.3 * (j % 2) - 0.2 * (j == 3) + 0.06 * (c[0] == "high") - 0.06 * (c[1] == "noisy") \
                - 0.06 * (c[2] == "varied") + rng.normal(0, 0.01)
            rows.append({"task": f"{f}_{letter}", "coverage": c[0], "caption_noise": c[1], "diversity": c[2],
                         "family": f, "id_acc": acc})
    cells_df = pd.DataFrame(rows)
    fit, used, why, df_resid = M._factor_fit(cells_df, "id_acc")
    assert not why and df_resid == 32 - 1 - 7 - 3
    assert "C(family)[T.objects]" in fit.params.index or any(n.startswith("C(family)") for n in fit.params.index)
    decided, _ = M._factor_rows(cells_df)
    assert all(r["passed"] for r in decided), decided


# ----------------------------------------------------------------------------- tasks as units
def test_icc_recovers_a_known_family_correlation_and_its_edges():
    """Random-effects data with ICC 0.5 (400 families of 4): estimated within 0.06; every task of a family
    equal: 1; families with equal means: -1 / (k - 1); the F test's p is scipy's."""
    rng = np.random.default_rng(0)
    fam = np.repeat(np.arange(400), 4)
    v = rng.standard_normal(400)[fam] + rng.standard_normal(fam.size)
    icc, p, k0 = M._icc1(v, fam)
    assert icc == pytest.approx(0.5, abs=0.06) and k0 == pytest.approx(4) and p < 1e-6
    assert M._icc1(np.repeat([1.0, 2.0, 5.0], 4), np.repeat([0, 1, 2], 4))[0] == pytest.approx(1.0)
    flat = np.tile([1.0, 2.0, 3.0, 4.0], 3)
    icc, p, _ = M._icc1(flat, np.repeat([0, 1, 2], 4))
    assert icc == pytest.approx(-1 / 3) and p == pytest.approx(st.f_oneway(*flat.reshape(3, 4)).pvalue)


def _family_runs(family_sd: float, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tasks = [f"{f}_{k}" for f in ("objects", "digits", "flowers", "textures", "landcover", "pathology")
             for k in "abcd"]
    fam_effect = {f: family_sd * rng.standard_normal() for f in {M.family_of(t) for t in tasks}}
    rows = [dict(train_task=t, seed=0, variant="default", method=m,
                 **{q: (fam_effect[M.family_of(t)] if m == "lora" else 0.0) + 0.01 * rng.standard_normal()
                    for q in ("id_gain", "dg_gain", "cf_drop", "balance", "cf_abs_d_ss", "cf_abs_d_acs")})
            for t in tasks for m in ("full", "lora")]
    return pd.DataFrame(rows)


def test_family_clustering_finds_families_that_carry_the_effect_and_not_otherwise():
    strong, none = M.family_clustering(_family_runs(0.1)), M.family_clustering(_family_runs(0.0))
    assert list(strong.columns) == M.CLUSTERING_COLUMNS
    # one row per paired comparison (6 quantities, 1 pair) and per one-sample effect (4 quantities x 2 methods)
    assert len(strong) == 6 + 8 and set(strong["versus"]) == {"lora", "-"}
    assert (strong["n_tasks"] == 24).all() and (strong["n_families"] == 6).all()
    lora = strong[(strong["method"] == "lora") | (strong["versus"] == "lora")]
    assert (lora["icc"] > 0.9).all() and (lora["f_p"] < 1e-6).all() and (lora["design_effect"] > 3.5).all()
    assert none["icc"].abs().max() < 0.6 and (none["design_effect"] >= 1).all()


def test_family_clustering_needs_families_of_several_tasks():
    runs = _family_runs(0.1).assign(train_task=lambda d: d["train_task"].str.replace("_", "-"))  # no instances
    assert M.family_clustering(runs).empty
