"""bench/power_projection.py: the task resampling keeps each task whole and distinct, the projection is
deterministic whatever the workers, and bad arguments are refused."""
import importlib.util
import sys

import pandas as pd
import pytest

from lib.analysis import claims as C
from lib.paths import ROOT

spec = importlib.util.spec_from_file_location("power_projection", ROOT / "bench" / "power_projection.py")
PP = importlib.util.module_from_spec(spec)
sys.modules["power_projection"] = PP
spec.loader.exec_module(PP)

FOLDER = ROOT / "paper_figures"


@pytest.fixture(scope="module")
def published():
    return PP.load(FOLDER)


def test_every_task_once_gives_the_published_tables_verdicts(published):
    """Drawing each task once (renamed) changes nothing: the verdicts of the tables as published."""
    zs, runs, pts = published
    tasks = sorted(runs["train_task"].unique())
    assert PP.verdicts(*PP.resample(zs, runs, pts, tasks)) == PP.verdicts(zs, runs, pts)
    assert PP.verdicts(zs, runs, pts) == dict(zip(*[pd.read_csv(FOLDER / "claims.csv")[c].astype(str)
                                                     for c in ("id", "verdict")]))


def test_a_task_drawn_twice_is_two_whole_tasks(published):
    zs, runs, pts = published
    t = sorted(runs["train_task"].unique())[0]
    z, r, p = PP.resample(zs, runs, pts, [t, t])
    assert sorted(r["train_task"].unique()) == [f"{t}~0", f"{t}~1"]
    for df, col, orig in ((z, "task", zs[zs["task"] == t]), (r, "train_task", runs[runs["train_task"] == t]),
                          (p, "task", pts[pts["task"] == t])):
        assert len(df) == 2 * len(orig) and df[col].nunique() == 2
        copy = df[df[col] == f"{t}~1"].drop(columns=col).reset_index(drop=True)
        pd.testing.assert_frame_equal(copy, orig.drop(columns=col).reset_index(drop=True))


def test_the_projection_does_not_depend_on_the_workers():
    one, n = PP.project(FOLDER, [8, 16], reps=3, seed=1, workers=1)
    two, _ = PP.project(FOLDER, [8, 16], reps=3, seed=1, workers=2)
    pd.testing.assert_frame_equal(one, two)
    assert n == 32 and set(one["claim"]) == set(C.REGISTRY) and len(one) == 2 * len(C.REGISTRY)
    assert ((one[list(PP.VERDICTS)].sum(axis=1) - 1).abs() < 1e-12).all()


@pytest.mark.parametrize("args", [["--tasks", "4"], ["--tasks", "x"], ["--reps", "0"]])
def test_bad_arguments_are_refused(args):
    with pytest.raises(SystemExit) as e:
        PP.main(args)
    assert e.value.code == 2


def test_a_folder_without_the_tables_is_named(tmp_path):
    with pytest.raises(SystemExit, match="lacks zero_shot_summary.csv, runs.csv, gain_points.csv"):
        PP.load(tmp_path)
