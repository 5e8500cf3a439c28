"""lib/analysis.py and the study figures of lib/plots.py, on small hand-built tables."""
import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lib import analysis as A  # noqa: E402

# ----------------------------------------------------------------------------- synthetic tables
TASKS = {"objects": ("photo", "sketch"), "digits": ("clean", "noisy"), "landcover": ("rgb", "hazy"),
         "pathology": ("stain_a", "stain_b"), "camera_trap": ("day", "night")}
METHODS = ["full", "clip_adapter", "lora", "bitfit", "aclip"]
PARAMS = {"full": 151_000_000, "clip_adapter": 262_144, "lora": 590_000, "bitfit": 120_000, "aclip": 21_000_000}


def synthetic_zs(order=(0, 1, 2, 3, 4), acs_order=None):
    """Zero-shot table: difficulty of task i = order[i]; ss grows and ACS shrinks with difficulty
    (acs_order, if given, decouples ACS from difficulty). OOD domains are a bit harder."""
    rows = []
    for i, (task, doms) in enumerate(TASKS.items()):
        for j, dom in enumerate(doms):
            diff = order[i] + 0.5 * j + 0.1 * i / 10
            a = (acs_order[i] + 0.5 * j) if acs_order is not None else diff
            rows.append(dict(task=task, domain=dom, split="test", domain_kind="ID" if j == 0 else "OOD",
                             n_images=100, n_classes=10, chance=0.1, zero_shot_acc=0.8 - 0.1 * diff,
                             acs=0.32 - 0.01 * a, silhouette=0.2 + 0.05 * diff, class_silhouette=0.1 - 0.01 * diff,
                             modality_gap=0.8 + 0.02 * diff, data_fingerprint=f"{task}{dom}"))
    return pd.DataFrame(rows)


def synthetic_ev(zs, seeds=(0, 1, 2), forget=None, gain=None, shift=None, ablations=("q", "first2"),
                 noise=0.004, rng_seed=0):
    """Evaluation table. gain[m] scales the fine-tuning gain with the task/domain's zero-shot ss;
    forget[m] is the CF drop (times 1 + the trained task's ss); shift[m] the change of
    ss / ACS on CF and DG data."""
    rng = np.random.default_rng(rng_seed)
    forget = forget or {"full": 0.06, "clip_adapter": 0.05, "lora": 0.01, "bitfit": 0.12, "aclip": 0.02}
    gain = gain or {"full": 0.5, "clip_adapter": 0.4, "lora": 0.2, "bitfit": 0.35, "aclip": 0.45}
    shift = shift or {"full": 0.08, "clip_adapter": 0.05, "lora": 0.01, "bitfit": 0.06, "aclip": 0.04}
    z = zs.set_index(["task", "domain"])
    runs = [(m, "default", s) for m in METHODS for s in seeds] + [("aclip", v, seeds[0]) for v in ablations]
    rows = []
    for train in TASKS:
        for method, variant, seed in runs:
            if variant != "default" and train not in ("objects", "digits"):
                continue
            vf = 0.7 if variant != "default" else 1.0
            ss_train = z.loc[(train, TASKS[train][0]), "silhouette"]
            for et, doms in TASKS.items():
                for dom in doms:
                    r = z.loc[(et, dom)]
                    if et == train:
                        schema = "ID" if dom == doms[0] else "DG"
                        d_acc = gain[method] * vf * r["silhouette"]
                    else:
                        schema = "CF"
                        d_acc = -forget[method] * vf * (1 + ss_train)
                    d_acc += rng.normal(0, noise)
                    sh = shift[method] * vf
                    rows.append(dict(train_task=train, method=method, variant=variant, seed=seed, eval_task=et,
                                     eval_domain=dom, schema=schema, acc_zero_shot=r["zero_shot_acc"],
                                     acc_finetuned=r["zero_shot_acc"] + d_acc, acs_zero_shot=r["acs"],
                                     acs_finetuned=r["acs"] + sh * (1 if schema != "CF" else -0.5),
                                     silhouette_zero_shot=r["silhouette"],
                                     silhouette_finetuned=r["silhouette"] - sh + rng.normal(0, noise / 4),
                                     n_images=100))
    return pd.DataFrame(rows)


def synthetic_ft(ev):
    runs = ev[["train_task", "method", "variant", "seed"]].drop_duplicates()
    runs = runs.rename(columns={"train_task": "task"})
    runs["trainable_params"] = [PARAMS[m] // (3 if v != "default" else 1) for m, v in zip(runs["method"], runs["variant"])]
    for c, v in dict(best_val_acc=0.8, best_epoch=3, epochs=5, lr=1e-3, options="{}", train_seconds=10.0,
                     peak_memory_mb=100.0).items():
        runs[c] = v
    return runs.reset_index(drop=True)


def synthetic_results(acs_order=(3, 0, 4, 1, 2), **kw):
    """Default: ACS decoupled from difficulty (only ss drives the gain)."""
    zs = synthetic_zs(acs_order=acs_order)
    ev = synthetic_ev(zs, **kw)
    return {"zero_shot": zs, "finetune": synthetic_ft(ev), "evaluation": ev}


# ----------------------------------------------------------------------------- hand-built rows
def _row(train, seed, et, dom, schema, zs_acc, ft_acc, method="full", variant="default", **kw):
    r = dict(train_task=train, method=method, variant=variant, seed=seed, eval_task=et, eval_domain=dom,
             schema=schema, acc_zero_shot=zs_acc, acc_finetuned=ft_acc, acs_zero_shot=0.3, acs_finetuned=0.3,
             silhouette_zero_shot=0.5, silhouette_finetuned=0.5, n_images=10)
    r.update(kw)
    return r


def _hand_ev():
    """Method 'full', tasks A, B (domains a0/a1, b0/b1), seeds 0 and 1.
    seed 0: A: ID +0.10, DG +0.04, CF drops 0.02, 0.04 | B: ID +0.20, DG +0.06, CF drops 0.01, 0.03
    seed 1: A: ID +0.12, DG +0.02, CF drops 0.00, 0.02 | B: ID +0.22, DG +0.08, CF drops 0.05, 0.03"""
    spec = {0: {"A": (0.10, 0.04, (0.02, 0.04)), "B": (0.20, 0.06, (0.01, 0.03))},
            1: {"A": (0.12, 0.02, (0.00, 0.02)), "B": (0.22, 0.08, (0.05, 0.03))}}
    rows = []
    for seed, per in spec.items():
        for t, (idg, dgg, cfd) in per.items():
            o = "B" if t == "A" else "A"
            rows += [_row(t, seed, t, t.lower() + "0", "ID", 0.5, 0.5 + idg),
                     _row(t, seed, t, t.lower() + "1", "DG", 0.4, 0.4 + dgg),
                     _row(t, seed, o, o.lower() + "0", "CF", 0.6, 0.6 - cfd[0],
                          silhouette_finetuned=0.4, acs_finetuned=0.35),
                     _row(t, seed, o, o.lower() + "1", "CF", 0.6, 0.6 - cfd[1],
                          silhouette_finetuned=0.6, acs_finetuned=0.25)]
    return pd.DataFrame(rows)


T975_1 = 12.706204736174707   # scipy.stats.t.ppf(0.975, 1)
T975_2 = 4.302652729749464    # scipy.stats.t.ppf(0.975, 2)


# ----------------------------------------------------------------------------- tests
def test_forgetting_sign_and_deltas():
    ev = pd.DataFrame([_row("A", 0, "B", "b0", "CF", 0.8, 0.7, silhouette_finetuned=0.6, acs_finetuned=0.2),
                       _row("A", 0, "A", "a0", "ID", 0.5, 0.9)])
    d = A.add_deltas(ev)
    assert d.loc[0, "forgetting"] == pytest.approx(0.1)      # zero-shot 0.8 -> 0.7: forgot 0.1
    assert d.loc[0, "gain"] == pytest.approx(-0.1)
    assert math.isnan(d.loc[1, "forgetting"])                 # not a CF row
    assert d.loc[1, "gain"] == pytest.approx(0.4)
    assert d.loc[0, "d_silhouette"] == pytest.approx(0.1)
    assert d.loc[0, "d_acs"] == pytest.approx(-0.1)


def test_seed_aggregate_ci_three_seeds():
    ev = pd.DataFrame([_row("A", s, "A", "a0", "ID", 0.5, 0.5 + g) for s, g in enumerate((0.1, 0.2, 0.3))])
    t = A.seed_aggregate(ev)
    assert len(t) == 1
    r = t.iloc[0]
    # mean 0.2, sd 0.1, sem 0.1/sqrt(3), t(0.975, 2) = 4.3027 -> half-width 0.248414
    assert r["gain_mean"] == pytest.approx(0.2)
    assert r["gain_lo"] == pytest.approx(-0.048414, abs=1e-6)
    assert r["gain_hi"] == pytest.approx(0.448414, abs=1e-6)
    assert r["gain_hi"] - r["gain_mean"] == pytest.approx(T975_2 * 0.1 / math.sqrt(3))
    assert r["n_seeds"] == 3
    assert math.isnan(r["forgetting_mean"])


def test_method_summary_by_hand():
    s = A.method_summary(_hand_ev())
    assert list(s["method"]) == ["full"]
    r = s.iloc[0]
    # ID per seed: (0.10+0.20)/2 = 0.15, (0.12+0.22)/2 = 0.17 -> mean 0.16, CI 0.16 +- t(1)*0.01
    assert r["id_gain"] == pytest.approx(0.16)
    assert r["id_gain_lo"] == pytest.approx(0.16 - T975_1 * 0.01)
    assert r["id_gain_hi"] == pytest.approx(0.16 + T975_1 * 0.01)
    # DG per seed: 0.05, 0.05
    assert r["dg_gain"] == pytest.approx(0.05)
    assert r["dg_gain_hi"] == pytest.approx(0.05)
    # CF per run: 0.03, 0.02 | 0.01, 0.04 -> per seed 0.025, 0.025
    assert r["cf_drop"] == pytest.approx(0.025)
    assert r["balance"] == pytest.approx(0.025)
    # ss on CF rows moves -0.1 and +0.1: mean signed change 0, mean |change| 0.1
    assert r["cf_d_silhouette"] == pytest.approx(0.0, abs=1e-12)
    assert r["cf_abs_d_silhouette"] == pytest.approx(0.1)
    assert r["cf_abs_d_acs"] == pytest.approx(0.05)
    assert r["n_seeds"] == 2 and r["n_tasks"] == 2


@pytest.mark.parametrize("reverse", [False, True])
def test_predictors_monotone(reverse):
    zs = synthetic_zs()
    gain = {m: (-0.3 if reverse else 0.3) for m in METHODS}
    ev = synthetic_ev(zs, seeds=(0,), gain=gain, noise=0.0, ablations=())
    p = A.predictors(zs, ev, n_boot=200).set_index(["measure", "method", "target"])
    want = -1.0 if reverse else 1.0
    for method in ("pooled", "lora"):
        for target in ("ID", "DG", "ID+DG"):
            assert p.loc[("silhouette", method, target), "rho"] == pytest.approx(want)
            assert p.loc[("acs", method, target), "rho"] == pytest.approx(-want)
    assert p.loc[("silhouette", "pooled", "ID"), "n"] == 5
    assert p.loc[("silhouette", "pooled", "ID+DG"), "n"] == 10


def _verdicts(res):
    c = A.claims(res["zero_shot"], res["evaluation"], res["finetune"], n_boot=300)
    assert set(c["verdict"]) <= set(A.VERDICTS)
    return dict(zip(c["id"], c["verdict"]))


def test_claims_follow_the_data():
    v = _verdicts(synthetic_results())
    assert v["1"] == "holds"          # gain built from ss, ACS shuffled
    assert _verdicts(synthetic_results(acs_order=None))["1"] == "inconclusive"  # ACS = -ss: a tie
    assert v["2a"] == "holds"         # BitFit forgets 0.12 vs 0.06
    assert v["2b"] == "holds"         # forgetting x (1 + ss)
    assert v["3a"] == "holds" and v["3b"] == "holds" and v["3c"] == "holds"
    assert v["4b"] == "holds"


def test_claims_flip_when_data_flips():
    forget = {"full": 0.06, "clip_adapter": 0.05, "lora": 0.03, "bitfit": 0.005, "aclip": 0.02}
    v = _verdicts(synthetic_results(forget=forget))
    assert v["2a"] == "does not hold"  # BitFit now forgets least
    assert v["3b"] == "does not hold"  # BitFit, not LoRA, forgets least
    # A-CLIP best balance vs not
    gain = {"full": 0.5, "clip_adapter": 0.4, "lora": 0.2, "bitfit": 0.35, "aclip": 0.6}
    forget_a = {"full": 0.06, "clip_adapter": 0.05, "lora": 0.03, "bitfit": 0.12, "aclip": 0.0}
    assert _verdicts(synthetic_results(gain=gain, forget=forget_a))["4a"] == "holds"
    forget_b = {**forget_a, "aclip": 0.2}
    assert _verdicts(synthetic_results(gain=gain, forget=forget_b))["4a"] == "does not hold"
    # claim 1: gain driven by ACS, ss shuffled
    zs2 = synthetic_zs(order=(3, 0, 4, 1, 2), acs_order=(0, 1, 2, 3, 4))   # ss shuffled, ACS in order
    ev2 = synthetic_ev(zs2)
    acs = zs2.rename(columns={"task": "eval_task", "domain": "eval_domain"})[["eval_task", "eval_domain", "acs"]]
    ev2 = ev2.merge(acs, on=["eval_task", "eval_domain"])
    own = ev2["schema"] != "CF"                                          # gain driven by -ACS only
    ev2.loc[own, "acc_finetuned"] = ev2.loc[own, "acc_zero_shot"] + (0.4 - ev2.loc[own, "acs"])
    ev2 = ev2.drop(columns="acs")
    assert _verdicts({"zero_shot": zs2, "evaluation": ev2, "finetune": synthetic_ft(ev2)})["1"] == "does not hold"


def test_claims_one_seed_inconclusive():
    v = _verdicts(synthetic_results(seeds=(0,)))
    for k in ("2a", "3b", "4a", "4b"):
        assert v[k] == "inconclusive"


def test_ablation_table_restricts_to_ablation_runs():
    res = synthetic_results()
    t = A.ablation_table(res["evaluation"], res["finetune"])
    assert set(t["variant"]) == {"default", "q", "first2"}
    assert (t["seeds"] == "0").all() and (t["tasks"] == "digits,objects").all()
    assert (t["n_seeds"] == 1).all() and (t["n_tasks"] == 2).all()
    assert "seed" in t.attrs["note"]
    q = t[(t["method"] == "aclip") & (t["variant"] == "q")].iloc[0]
    assert q["trainable_params"] == PARAMS["aclip"] // 3
    empty = A.ablation_table(res["evaluation"][res["evaluation"]["variant"] == "default"], res["finetune"])
    assert empty.empty and "No ablation" in empty.attrs["note"]


def test_forgetting_vs_ss_and_save_table(tmp_path):
    res = synthetic_results()
    f = A.forgetting_vs_ss(res["zero_shot"], res["evaluation"], n_boot=200)
    assert len(f) == 25
    b = f[f["method"] == "bitfit"]
    assert b["rho"].iloc[0] == pytest.approx(1.0)
    assert (f["cf_drop"] > 0).all()
    paths = A.save_table(A.forgetting_spearman(f), "fs", tmp_path)
    md = paths[1].read_text()
    assert md.startswith("| method | rho |") and "| bitfit |" in md
    assert pd.read_csv(paths[0]).shape == (5, 6)


def test_write_claims_md(tmp_path):
    res = synthetic_results()
    c = A.claims(res["zero_shot"], res["evaluation"], res["finetune"], n_boot=200)
    p = A.write_claims_md(c, tmp_path / "claims.md", "unit", {"git": {"commit": "abc", "dirty": True},
                                                              "device": "cpu"})
    text = p.read_text()
    assert "Do not edit by hand" in text and "`unit`" in text and "abc" in text
    for r in c.itertuples():
        assert r.claim in text
        assert f"**Verdict: {r.verdict}**" in text
    assert text.count("## Claim") == len(c)


def test_figure_all_writes_png_and_pdf(tmp_path):
    from lib import plots
    tables = A.all_tables(synthetic_results(), n_boot=200)
    out = plots.figure_all(tables, tmp_path)
    names = {p.stem for p in out}
    assert names == {"difficulty_vs_gain", "method_bars", "forgetting_vs_ss", "alignment_shift", "tradeoff",
                     "ablations"}
    for n in names:
        for ext in ("png", "pdf"):
            assert (tmp_path / f"{n}.{ext}").stat().st_size > 1000
    saved = A.save_tables(tables, tmp_path / "tables")
    assert len(saved) == 2 * len(A.DERIVED_TABLES)
