"""make verify's backend on small synthetic tables: tolerances, verdicts, missing tables, exit status."""
import io

import pandas as pd
import pytest

from lib.pipeline import verify as V

CLAIMS = pd.DataFrame({"id": ["1", "2a"], "claim": ["ss tracks difficulty", "BitFit forgets most"],
                       "value": ["rho = +0.176 [-0.563, +0.793]", "BitFit +8.4 [+7.5, +9.4]"],
                       "verdict": ["inconclusive", "does not hold"], "why": ["CI contains 0", "CIs separate"]})
ZS = pd.DataFrame({"task": ["objects", "objects", "digits"], "domain": ["photo", "sketch", "ink"],
                   "split": ["test"] * 3, "n_images": [60, 60, 60], "acc": [0.5, 0.25, 0.9],
                   "acs": [0.21, 0.19, 0.3], "data_fingerprint": ["a1", "b2", "c3"]})
FT = pd.DataFrame({"task": ["objects"], "method": ["lora"], "variant": ["default"], "seed": [0],
                   "best_epoch": [3], "best_val_acc": [0.8], "train_seconds": [12.5]})


def publish(folder, claims=CLAIMS, zs=ZS, ft=FT):
    (folder / "results").mkdir(parents=True, exist_ok=True)
    claims.to_csv(folder / "claims.csv", index=False)
    zs.to_csv(folder / "results" / "zero_shot.csv", index=False)
    ft.to_csv(folder / "results" / "finetune.csv", index=False)


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path / "build"))
    pub = tmp_path / "published"
    publish(pub)
    fresh = tmp_path / "build" / "smoke"
    (fresh / "figures").mkdir(parents=True)
    (fresh / "results").mkdir(parents=True)
    return pub, fresh


def write_fresh(fresh, claims=CLAIMS, zs=ZS, ft=FT):
    claims.to_csv(fresh / "figures" / "claims.csv", index=False)
    zs.to_csv(fresh / "results" / "zero_shot.csv", index=False)
    ft.to_csv(fresh / "results" / "finetune.csv", index=False)


def run(pub):
    out = io.StringIO()
    rc = V.verify("smoke", pub, out=out)
    return rc, out.getvalue()


def test_identical_run_passes(dirs):
    pub, fresh = dirs
    write_fresh(fresh)
    rc, text = run(pub)
    assert rc == 0, text
    assert "zero_shot.csv: identical" in text and "ok  1: inconclusive" in text and "PASS" in text


def test_noise_within_tolerance_passes_and_is_reported(dirs):
    pub, fresh = dirs
    zs = ZS.copy()
    zs.loc[1, "acc"] += 0.0167          # one test image of 60
    zs.loc[0, "acs"] += 1e-6
    cl = CLAIMS.copy()
    cl.loc[0, "value"] = "rho = +0.180 [-0.560, +0.800]"
    ft = FT.copy()
    ft.loc[0, "train_seconds"] = 99.0   # timings are ignored
    ft.loc[0, "best_epoch"] = 4         # one epoch of slack
    write_fresh(fresh, claims=cl, zs=zs.iloc[::-1], ft=ft)   # row order does not matter for keyed tables
    rc, text = run(pub)
    assert rc == 0, text
    assert "zero_shot.csv: within tolerance, max |diff| 0.0167" in text and "claims.csv: within tolerance" in text


@pytest.mark.parametrize("change,match", [
    (lambda zs, ft, cl: zs.__setitem__("acc", zs["acc"] + [0, 0.05, 0]), r"acc at row .*sketch.*0.3 vs published 0.25"),
    (lambda zs, ft, cl: zs.__setitem__("n_images", [60, 59, 60]), r"n_images at row"),
    (lambda zs, ft, cl: zs.__setitem__("data_fingerprint", ["a1", "xx", "c3"]), r"data_fingerprint at row"),
    (lambda zs, ft, cl: ft.__setitem__("best_epoch", [5]), r"best_epoch at row 1"),
    (lambda zs, ft, cl: cl.__setitem__("value", ["rho = +0.300 [-0.563, +0.793]", CLAIMS.loc[1, "value"]]),
     r"value at row 1 \(id=1\)"),
])
def test_out_of_tolerance_fails(dirs, change, match):
    pub, fresh = dirs
    zs, ft, cl = ZS.copy(), FT.copy(), CLAIMS.copy()
    change(zs, ft, cl)
    write_fresh(fresh, claims=cl, zs=zs, ft=ft)
    rc, text = run(pub)
    assert rc == 1 and "out of tolerance" in text and "FAIL" in text, text
    assert pd.Series([text]).str.contains(match).all(), text


def test_a_flipped_verdict_fails_claim_by_claim(dirs):
    pub, fresh = dirs
    cl = CLAIMS.copy()
    cl["verdict"] = ["does not hold", "does not hold"]
    cl["near_threshold"] = [True, False]
    write_fresh(fresh, claims=cl)
    rc, text = run(pub)
    assert rc == 1, text
    assert "BAD 1: published 'inconclusive', fresh 'does not hold' (near its threshold: within noise)" in text
    assert "ok  2a: does not hold" in text and "a verdict differs" in text


def test_missing_table_and_missing_run(dirs):
    pub, fresh = dirs
    rc, text = run(pub)
    assert rc == 1 and "run `make reproduce PROFILE=smoke` first" in text
    write_fresh(fresh)
    (fresh / "results" / "finetune.csv").unlink()
    rc, text = run(pub)
    assert rc == 1 and "BAD finetune.csv: missing" in text


def test_changed_columns_fail(dirs):
    pub, fresh = dirs
    write_fresh(fresh, zs=ZS.rename(columns={"acs": "acs_new"}))
    rc, text = run(pub)
    assert rc == 1 and "columns differ: only fresh ['acs_new'], only published ['acs']" in text


def test_close():
    assert V.close(0.5, 0.5 + V.ABS_TOL) and not V.close(0.5, 0.5 + 2 * V.ABS_TOL)
    assert V.close(1000.0, 1000.0 * (1 + V.REL_TOL)) and not V.close(1000.0, 1100.0)
    assert V.close(float("nan"), float("nan")) and not V.close(float("nan"), 0.0)


def test_cli_refuses_a_bad_profile(capsys):
    assert V.main([""]) == 2
    assert "valid profiles" in capsys.readouterr().err
