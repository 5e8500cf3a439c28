"""make verify: tolerances, keyed rows and verdicts on small synthetic tables; then the whole check on a
build and a published folder made from the golden result tables, tampered with in each way it must catch."""
import io
import shutil
from pathlib import Path

import pandas as pd
import pytest

from lib import analysis, manifest
from lib.pipeline import publish
from lib.pipeline import verify as V

GOLDEN = Path(__file__).parent / "data" / "golden"
CLAIMS = pd.DataFrame({"id": ["1", "1", "2a", "2a"], "claim": ["ss tracks difficulty"] * 2 + ["BitFit forgets most"] * 2,
                       "subset": ["all runs", "without collapsed runs"] * 2,
                       "value": ["rho = +0.176 [-0.563, +0.793]", "rho = +0.2", "BitFit +8.4 [+7.5, +9.4]", "+8.0"],
                       "verdict": ["inconclusive", "holds", "does not hold", "does not hold"],
                       "near_threshold": [True, False, False, False]})
ZS = pd.DataFrame({"task": ["objects", "objects", "digits"], "domain": ["photo", "sketch", "ink"],
                   "split": ["test"] * 3, "n_images": [60, 60, 60], "acc": [0.5, 0.25, 0.9],
                   "acs": [0.21, 0.19, 0.3], "data_fingerprint": ["a1", "b2", "c3"]})
FT = pd.DataFrame({"task": ["objects"], "method": ["lora"], "variant": ["default"], "seed": [0],
                   "best_epoch": [3], "best_val_acc": [0.8], "train_seconds": [12.5]})


# ----------------------------------------------------------------------------- tables and claims, synthetic
def test_noise_within_tolerance_and_row_order():
    zs = ZS.copy()
    zs.loc[0, "acs"] += 1e-6            # zero-shot is deterministic: one unit in the CSVs' last digit
    r = V.compare_tables(zs.iloc[::-1], ZS, "zero_shot.csv")    # row order does not matter
    assert r.ok and r.status == "within tolerance" and abs(r.max_abs_diff - 1e-6) < 1e-9, r
    zs.loc[1, "acc"] += 0.0167          # one test image of 60: beyond zero-shot's tolerance
    assert not V.compare_tables(zs, ZS, "zero_shot.csv").ok
    ft = FT.copy()
    ft.loc[0, "train_seconds"] = 99.0   # timings are ignored
    ft.loc[0, "best_epoch"] = 4         # one epoch of slack
    assert V.compare_tables(ft, FT, "finetune.csv").ok
    cl = CLAIMS.copy()
    cl.loc[0, "value"] = "rho = +0.180 [-0.560, +0.800]"
    assert V.compare_tables(cl, CLAIMS, "claims.csv").status == "within tolerance"
    assert V.compare_tables(ZS, ZS, "zero_shot.csv").status == "identical"


@pytest.mark.parametrize("change,match", [
    (lambda zs, ft, cl: zs.__setitem__("acc", zs["acc"] + [0, 0.05, 0]),
     "acc at task=objects, domain=sketch, split=test: 0.3 vs published 0.25"),
    (lambda zs, ft, cl: zs.__setitem__("n_images", [60, 59, 60]), "n_images at task=objects, domain=sketch"),
    (lambda zs, ft, cl: zs.__setitem__("data_fingerprint", ["a1", "xx", "c3"]), "data_fingerprint at"),
    (lambda zs, ft, cl: ft.__setitem__("best_epoch", [5]), "best_epoch at task=objects, method=lora"),
    (lambda zs, ft, cl: cl.__setitem__("value", ["rho = +0.300 [-0.563, +0.793]", *CLAIMS["value"][1:]]),
     "value at id=1, subset=all runs"),
])
def test_out_of_tolerance_fails(change, match):
    zs, ft, cl = ZS.copy(), FT.copy(), CLAIMS.copy()
    change(zs, ft, cl)
    reps = [V.compare_tables(zs, ZS, "zero_shot.csv"), V.compare_tables(ft, FT, "finetune.csv"),
            V.compare_tables(cl, CLAIMS, "claims.csv")]
    bad = [r for r in reps if not r.ok]
    assert len(bad) == 1 and bad[0].status == "out of tolerance", reps
    assert any(match in p for p in bad[0].problems), bad[0].problems


def test_rows_missing_on_either_side_are_named():
    r = V.compare_tables(ZS.drop(index=1), ZS.drop(index=2), "zero_shot.csv")
    assert not r.ok
    assert "row missing from fresh: task=objects, domain=sketch, split=test" in r.problems
    assert "row missing from published: task=digits, domain=ink, split=test" in r.problems


def test_changed_columns_fail():
    r = V.compare_tables(ZS.rename(columns={"acs": "acs_new"}), ZS, "zero_shot.csv")
    assert not r.ok and "columns differ: only fresh ['acs_new'], only published ['acs']" in r.problems


def test_claims_with_several_rows_per_id_match_on_the_full_key():
    """Two subsets per id, rows in another order: no verdict differs (matching by id alone flipped them)."""
    cl = CLAIMS.iloc[[3, 1, 2, 0]]
    assert [c.status for c in V.compare_claims(cl, CLAIMS)] == ["ok"] * 4
    assert V.compare_tables(cl, CLAIMS, "claims.csv").status == "identical"


def test_key_derived_when_the_declared_one_no_longer_identifies_rows():
    """Another claims format: no `subset`, new columns (ci_method, p_holm): the key becomes (id, ci_method)."""
    new = CLAIMS.drop(columns="subset").assign(ci_method=["bca", "percentile"] * 2, p_holm=[0.5, 0.01, 0.2, 0.3])
    key, note = V.row_key("claims.csv", new, new)
    assert key == ["id", "ci_method"] and "derived" in note
    assert V.compare_tables(new.iloc[::-1], new, "claims.csv").status == "identical"
    flipped = new.copy()
    flipped.loc[1, "verdict"] = "does not hold"
    bad = [c for c in V.compare_claims(flipped, new) if c.status != "ok"]
    assert [(c.claim, c.published, c.fresh, c.status) for c in bad] == [("1 (percentile)", "holds", "does not hold", "bad")]


@pytest.mark.parametrize("published,fresh,near,status", [
    ("holds", "does not hold", True, "bad"),            # decided on both sides: a flip fails, near or not
    ("inconclusive", "holds", False, "bad"),            # undecided <-> decided away from the threshold
    ("inconclusive", "holds", True, "warn"),            # ... near it: a warning
    ("does not hold", "inconclusive (too few tasks)", True, "warn"),
    ("holds", "holds", False, "ok"),
])
def test_verdict_changes(published, fresh, near, status):
    pub = CLAIMS.iloc[:1].assign(verdict=published, near_threshold=False)
    fr = pub.assign(verdict=fresh, near_threshold=near)
    assert [c.status for c in V.compare_claims(fr, pub)] == [status]
    assert [c.status for c in V.compare_claims(fr.drop(columns="near_threshold"), pub)] == \
        [status if status != "warn" else "bad"]   # no near_threshold column: nothing is near


def test_a_claim_missing_on_one_side_fails():
    got = V.compare_claims(CLAIMS.iloc[1:], CLAIMS)
    assert [(c.claim, c.fresh, c.status) for c in got if c.status != "ok"] == [("1 (all runs)", None, "bad")]


def test_close():
    tol = V.tolerance("published", "runs.csv", "id_gain")
    assert V.close(0.5, 0.5 + tol.abs, tol) and not V.close(0.5, 0.5 + 1.01 * tol.abs, tol)
    zs = V.tolerance("published", "zero_shot.csv", "acc")
    assert V.close(1000.0, 1000.0 * (1 + zs.rel), zs) and not V.close(1000.0, 1000.0 * (1 + 2 * zs.rel), zs)
    assert V.close(float("nan"), float("nan")) and not V.close(float("nan"), 0.0)
    assert V.tolerance("published", "finetune.csv", "best_epoch").int_slack == 1
    assert V.tolerance("published", "finetune.csv", "train_seconds").ignore
    assert not V.close(0.5, 0.5 + 1e-9, V.tolerance("recomputed", "headline.csv", "id_gain"))


# ----------------------------------------------------------------------------- tolerances from the seed noise
def _seed_noise():
    import importlib.util
    spec = importlib.util.spec_from_file_location("seed_noise", Path(__file__).parents[1] / "bench" / "seed_noise.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tolerances_come_from_the_measured_file():
    import json
    doc = json.loads(V.TOLERANCES_FILE.read_text())
    for name, cols in doc["tables"].items():
        for col, e in cols.items():
            t = V.tolerance("published", name, col)
            assert (t.abs, t.rel) == (e["abs"], e.get("rel", 0.0)), (name, col)
            assert e["source"]                                   # every tolerance says where it comes from
    k = doc["rule"]["multiple"]
    for col in ("id_gain", "cf_drop", "dg_d_ss"):               # per run: k x the column's own seed SD
        sd = doc["seed_sd"][f"runs.csv:{col}"]["sd"]
        assert abs(V.tolerance("published", "runs.csv", col).abs - k * sd) <= 1e-3 * k * sd
    # means over tasks and seeds are tighter than one run, zero-shot tighter still
    assert V.tolerance("published", "method_summary.csv", "value").abs < V.tolerance("published", "runs.csv", "balance").abs
    assert V.tolerance("published", "zero_shot_summary.csv", "acc").abs < 1e-5
    assert V.tolerance("published", "headline.md", "*") == V.tolerance("published", "headline.csv", "*")


def test_a_missing_tolerance_file_is_refused_with_the_fix(tmp_path):
    with pytest.raises(RuntimeError, match="bench/seed_noise.py --write"):
        V.load_tolerances(tmp_path / "none.json")


def test_per_run_cell_within_and_beyond_its_seed_noise():
    runs = pd.DataFrame({"train_task": ["objects"], "method": ["lora"], "variant": ["default"], "seed": [0],
                         "id_gain": [0.10], "no_val_gain": [False]})
    tol = V.tolerance("published", "runs.csv", "id_gain").abs
    assert V.compare_tables(runs.assign(id_gain=0.10 + 0.9 * tol), runs, "runs.csv").ok
    bad = V.compare_tables(runs.assign(id_gain=0.10 + 1.1 * tol), runs, "runs.csv")
    assert not bad.ok and "id_gain at train_task=objects" in bad.problems[0]


def test_seed_noise_measurement(tmp_path):
    """The script's estimators on synthetic runs with a known SD: pooled SD, range / d2, the multiple."""
    import numpy as np
    sn = _seed_noise()
    assert abs(sn.d2(2) - 2 / np.sqrt(np.pi)) < 1e-6 and abs(sn.d2(3) - 3 / np.sqrt(np.pi)) < 1e-6
    rng = np.random.default_rng(0)
    rows, agg = [], []
    for t in range(40):
        for m in ("full", "lora"):
            vals = 0.3 + 0.05 * rng.standard_normal(3)
            rows += [{"train_task": f"t{t}", "method": m, "variant": "default", "seed": s, "id_gain": v, "cf_drop": v / 2,
                      "balance": v, "dg_gain": v, "id_acc": v} for s, v in enumerate(vals)]
            agg.append({"train_task": f"t{t}", "method": m, "variant": "default", "eval_task": "e", "eval_domain": "d",
                        "acc_finetuned_min": vals.min(), "acc_finetuned_max": vals.max(), "gain_min": vals.min(),
                        "gain_max": vals.max(), "n_seeds": 3})
    pd.DataFrame(rows).to_csv(tmp_path / "runs.csv", index=False)
    pd.DataFrame(agg).to_csv(tmp_path / "seed_aggregate.csv", index=False)
    pd.DataFrame({"method": ["full", "lora"], "id_gain": [30.0, 30.0], "dg_gain": [30.0] * 2, "cf_drop": [15.0] * 2,
                  "balance": [30.0] * 2, "n_seeds": [3, 3], "n_tasks": [40, 40]}).to_csv(tmp_path / "headline.csv", index=False)
    pd.DataFrame({"method": ["full", "lora"], "quantity": ["id_gain"] * 2, "value": [0.3, 0.3]}).to_csv(
        tmp_path / "method_summary.csv", index=False)
    m = sn.measure(tmp_path)
    assert abs(m["sd"]["runs.csv:id_gain"]["sd"] - 0.05) < 0.01 and m["sd"]["runs.csv:id_gain"]["df"] == 160
    assert abs(m["sd"]["seed_aggregate.csv:acc_finetuned"]["sd"] - 0.05) < 0.01
    assert m["scale"] == 100.0
    n = m["n_cells"]
    assert abs(m["k"] - np.sqrt(2) * sn.stats.norm.ppf(1 - 0.05 / (2 * n))) < 1e-9
    head = m["tables"]["headline.csv"]["*"]["abs"]
    assert abs(head - 100 * m["k"] * m["sd"]["runs.csv:balance"]["sd"] / np.sqrt(120)) <= 1e-3 * head


def test_committed_tolerances_are_the_scripts_output():
    """lib/pipeline/tolerances.json is what `bench/seed_noise.py --write` writes from the published run
    (skipped when paper_figures/ was republished since: then rerun the script)."""
    import json
    sn = _seed_noise()
    doc = json.loads(V.TOLERANCES_FILE.read_text())
    folder = Path(__file__).parents[1] / doc["measured_from"]["folder"]
    now = {f: sn.sha16(folder / f) for f in doc["measured_from"]["files"] if (folder / f).exists()}
    if now != doc["measured_from"]["files"]:
        pytest.skip(f"{folder} was republished: rerun `python bench/seed_noise.py --write`")
    assert json.loads(json.dumps(sn.document(folder, sn.measure(folder)))) == doc


def test_new_claims_format_keys():
    """Analysis v3 tables: claims one row per id, claim_tests per (id, test); near_threshold read."""
    cl = pd.DataFrame({"id": ["1", "2a"], "verdict": ["holds", "inconclusive"], "estimate": [0.5, 0.1],
                       "near_threshold": [False, True], "loto_flips": [0, 1]})
    assert V.row_key("claims.csv", cl, cl) == (["id"], "")
    tests = pd.DataFrame({"id": ["1", "1", "2a"], "test": ["a", "b", "a"], "p": [0.1, 0.2, 0.3]})
    assert V.row_key("claim_tests.csv", tests, tests) == (["id", "test"], "")
    fresh = cl.assign(verdict=["holds", "holds"])
    assert [c.status for c in V.compare_claims(fresh, cl)] == ["ok", "warn"]
    assert [c.status for c in V.compare_claims(fresh.assign(near_threshold=False), cl.assign(near_threshold=False))] \
        == ["ok", "bad"]


def test_cli_refuses_a_bad_profile(capsys):
    assert V.main([""]) == 2
    assert "valid profiles" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the whole check, golden tables
PROV = {"profile": "smoke", "git": {"commit": "0" * 40, "dirty": False}, "device": "cpu (test)"}


@pytest.fixture(scope="session")   # once per worker process (make test-unit runs each file on one worker: --dist loadfile)
def golden_pair_tables(tmp_path_factory):
    """The golden result tables and the figures stage's tables recomputed from them by ``V.recompute``
    (``analysis.compute`` + ``save_tables``, as the stage does), computed once: (results, recomputed)."""
    root = tmp_path_factory.mktemp("golden_tables")
    res, out = root / "results", root / "recomputed"
    res.mkdir()
    for name in ("zero_shot.csv", "finetune.csv", "evaluation.csv"):
        shutil.copy(GOLDEN / name, res / name)
    V.recompute(res, out)
    return res, out


@pytest.fixture(scope="session")
def golden_build(golden_pair_tables, tmp_path_factory):
    """build/smoke/{results,figures}: the figures stage's tables (no figures drawn) of the golden result
    tables, a stand-in figure and claims.md with its manifest, as the stage writes them."""
    res, recomputed = golden_pair_tables
    root = tmp_path_factory.mktemp("golden_build") / "smoke"
    fig = root / "figures"
    shutil.copytree(res, root / "results")
    shutil.copytree(recomputed, fig)
    (fig / "tradeoff.png").write_bytes(b"not really a png")     # a figure: checked by its hash only
    claims = V._read_csv(fig / "claims.csv")           # as make verify reads it
    analysis.write_claims_md(claims, fig / "claims.md", "smoke", PROV)   # + MANIFEST.json, as the stage does
    return root


@pytest.fixture(scope="session")
def golden_recomputed(golden_pair_tables):
    return golden_pair_tables[1]


@pytest.fixture
def fast_recompute(golden_build, golden_recomputed, monkeypatch):
    """The recomputation of the (untouched) golden results, done once: for the tests that tamper
    elsewhere (each recomputation takes seconds); the others run the real one."""
    real = V.recompute

    def cached(results_dir, out_dir, cfg=None):
        if any((Path(results_dir) / n).read_bytes() != (golden_build / "results" / n).read_bytes()
               for n in ("zero_shot.csv", "finetune.csv", "evaluation.csv")):
            return real(results_dir, out_dir, cfg)
        shutil.copytree(golden_recomputed, out_dir)
    monkeypatch.setattr(V, "recompute", cached)


@pytest.fixture
def pair(golden_build, tmp_path, monkeypatch):
    """A fresh copy: build/smoke/ and a published folder made from it as publish does (manifest with
    'notebooks'), and a README whose results block publish wrote."""
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path / "build"))
    build = tmp_path / "build" / "smoke"
    shutil.copytree(golden_build, build)
    pub = tmp_path / "paper_figures"
    shutil.copytree(build / "figures", pub)
    manifest.write_manifest(pub, {**manifest.read_manifest(pub)["produced_by"], "notebooks": []})
    readme = tmp_path / "README.md"
    readme.write_text("# Study\n\n## Results\n\n<!-- results:begin -->\n<!-- results:end -->\n\nMore text.\n")
    publish.update_readme({p.stem: pd.read_csv(p) for p in pub.glob("*.csv")}, "smoke", readme)
    return build, pub, readme


def run(pair):
    build, pub, readme = pair
    out = io.StringIO()
    rc = V.verify("smoke", pub, out=out, readme=readme)
    return rc, out.getvalue()


def resign(folder):
    """Rewrite a folder's manifest after a tampering, so that only the other checks can catch it."""
    manifest.write_manifest(folder, manifest.read_manifest(folder)["produced_by"])


def edit_csv(path, fn):
    df = pd.read_csv(path)
    fn(df).to_csv(path, index=False, float_format="%.6g")


def test_untouched_pair_passes(fast_recompute, pair):   # the cached recomputation is the real one's output
    rc, text = run(pair)
    assert rc == 0, text
    assert "verify smoke: PASS (0 failures)" in text
    assert "every hash matches" in text and "claims.md: same as regenerated from claims.csv" in text
    assert "results block same as regenerated" in text and "BAD" not in text


@pytest.mark.parametrize("resigned", [False, True])
def test_deleted_published_csv_fails(fast_recompute, pair, resigned):
    build, pub, _ = pair
    (pub / "comparisons.csv").unlink()
    if resigned:
        resign(pub)
    rc, text = run(pair)
    assert rc == 1 and "FAIL" in text, text
    if not resigned:
        assert "listed but missing: comparisons.csv" in text
    assert f"comparisons.csv: written by the figures stage but missing from {pub}" in text
    assert f"comparisons.csv: missing from {pub}" in text


@pytest.mark.parametrize("where", ["published", "build"])
def test_edited_claims_md_verdict_fails(fast_recompute, pair, where):
    build, pub, _ = pair
    folder = pub if where == "published" else build / "figures"
    md = folder / "claims.md"
    text = md.read_text()
    assert "**does not hold**" in text
    md.write_text(text.replace("**does not hold**", "**holds**", 1))
    resign(folder)
    rc, out = run(pair)
    assert rc == 1, out
    assert f"BAD  {md}: differs from the claims.md regenerated from claims.csv" in out
    assert "every hash matches" in out     # the manifest was rewritten: only the regeneration catches it


def test_edited_readme_block_fails(fast_recompute, pair):
    *_, readme = pair
    readme.write_text(readme.read_text().replace("**does not hold**", "**holds**", 1))
    rc, out = run(pair)
    assert rc == 1 and f"BAD  {readme}: results block differs" in out, out


def test_table_edited_in_both_build_and_published_fails(fast_recompute, pair):  # results untouched: the cached recomputation is the real one's bytes
    build, pub, _ = pair
    beyond = 2 * V.tolerance("published", "headline.csv", "id_gain").abs      # beyond a rerun's noise too
    for folder in (build / "figures", pub):
        edit_csv(folder / "headline.csv", lambda d: d.assign(id_gain=d["id_gain"] + beyond))
        resign(folder)
    rc, out = run(pair)
    assert rc == 1, out
    assert "headline.csv: identical" in out                      # build and published agree with each other
    assert "BAD  headline.csv (recomputed vs build): out of tolerance" in out
    assert "BAD  headline.csv (recomputed vs published): out of tolerance" in out


def test_claims_verdict_edited_in_both_fails(fast_recompute, pair):  # results untouched: the cached recomputation is the real one's bytes
    build, pub, _ = pair
    for folder in (build / "figures", pub):
        edit_csv(folder / "claims.csv", lambda d: d.assign(verdict=d["verdict"].where(d["verdict"] != "holds", "does not hold")))
        resign(folder)
    rc, out = run(pair)
    assert rc == 1, out
    assert "BAD  claims.csv (recomputed vs build): out of tolerance" in out
    assert "claims.md: differs from the claims.md regenerated" in out   # claims.md still says 'holds'


def test_without_the_recomputation_the_other_parts_still_run(pair, monkeypatch):
    """The end of make reproduce (``recompute_tables=False``): part 2 is said to be left out and never
    runs; a published table that differs, and a table the figures stage wrote (its manifest lists it)
    missing from the published folder, still fail."""
    build, pub, readme = pair
    monkeypatch.setattr(V, "recompute", lambda *a, **k: pytest.fail("recomputed"))
    out = io.StringIO()
    assert V.verify("smoke", pub, out=out, readme=readme, recompute_tables=False) == 0, out.getvalue()
    assert "not recomputed here" in out.getvalue() and "files recomputed" not in out.getvalue()
    beyond = 2 * V.tolerance("published", "headline.csv", "id_gain").abs
    edit_csv(pub / "headline.csv", lambda d: d.assign(id_gain=d["id_gain"] + beyond))
    (pub / "comparisons.csv").unlink()
    resign(pub)
    out = io.StringIO()
    assert V.verify("smoke", pub, out=out, readme=readme, recompute_tables=False) == 1
    assert "BAD  headline.csv: out of tolerance" in out.getvalue(), out.getvalue()
    assert f"BAD  comparisons.csv: missing from {pub}" in out.getvalue()


def test_manifest_hash_mismatch_fails(fast_recompute, pair):
    build, pub, _ = pair
    (pub / "tradeoff.png").write_bytes(b"NOT really a png")        # same size, other bytes
    rc, out = run(pair)
    assert rc == 1 and "sha256 differs: tradeoff.png" in out, out


def test_row_missing_fails(fast_recompute, pair):
    build, pub, _ = pair
    edit_csv(pub / "comparisons.csv", lambda d: d.iloc[1:])
    resign(pub)
    rc, out = run(pair)
    assert rc == 1, out
    first = pd.read_csv(build / "figures" / "comparisons.csv").iloc[0]
    assert f"row missing from published: quantity={first['quantity']}, method={first['method']}" in out


def test_within_tolerance_published_noise_passes(fast_recompute, pair):
    """Another run's noise in the published tables (+0.001 on every accuracy gain, claims.md and
    README regenerated by publish) passes; the build is untouched."""
    build, pub, readme = pair
    edit_csv(pub / "headline.csv", lambda d: d.assign(id_gain=d["id_gain"] + 0.001))
    resign(pub)
    publish.update_readme({p.stem: pd.read_csv(p) for p in pub.glob("*.csv")}, "smoke", readme)
    rc, out = run(pair)
    assert rc == 0, out
    assert "headline.csv: within tolerance" in out


def test_missing_build(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path / "build"))
    pub = tmp_path / "pub"
    pub.mkdir()
    ZS.to_csv(pub / "zero_shot.csv", index=False)
    out = io.StringIO()
    assert V.verify("smoke", pub, out=out) == 1 and "run `make reproduce PROFILE=smoke` first" in out.getvalue()
