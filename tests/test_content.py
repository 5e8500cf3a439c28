"""Results verified by content (reliability v3, item 3) and the evaluation's flip counts.

* The evaluation cache (``eval.json``) is reused only while its rows match their recorded hash and
  its key (the inputs' hashes) matches: an edited cache is recomputed, and the log names it.
* Every evaluation row counts the images lost and won against the zero-shot model (``n_lost``,
  ``n_won``), and ``n_won - n_lost == round(n_images * (acc_finetuned - acc_zero_shot))``.
* Tables are validated where they are read (``lib.schema``): a blank / NaN / out-of-range cell or
  an edited file is refused, naming the file.
* ``evaluate_unit`` refuses a (task, method) that is not a unit with the ConfigError it promises.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from lib import config, data, io, models, paths, schema
from lib.config import ConfigError
from lib.paths import RunId
from lib.pipeline import aggregate, evaluate as E, finetune as ft

PROFILE = "contenttest"


class ToySource(data.DatasetSource):
    """Two 3-class tasks with a colour cue (ID + one shifted domain each), 24 train / 12 val / 30 test."""
    classes = ["red thing", "green thing", "blue thing"]

    def __init__(self, cfg):
        self.cfg = cfg

    def tasks(self):
        return {t: data.TaskSpec(t, self.classes, ["a photo of a {}."], "id", ["shifted"]) for t in ("toy", "other")}

    def check(self):
        return None

    def load(self, task, domain, split):
        spec = self.task(task)
        n = {"train": 24, "val": 12, "test": 30}[split]
        rng = np.random.default_rng([("train", "val", "test").index(split), ("toy", "other").index(task),
                                     ("id", "shifted").index(domain)])
        y = np.arange(n) % 3
        x = rng.integers(0, 100, (n, 32, 32, 3), dtype=np.uint8)
        x[np.arange(n), :, :, y] += 100 if domain == "id" else 60
        return data.Split(task, domain, split, y, spec.classnames, spec.templates, images=x,
                          fingerprint=f"{task}-{domain}-{split}")


data.register_source("content-toy")(ToySource)
CFG = {"name": PROFILE, "data": {"source": "content-toy"}, "device": "cpu",
       "model": {"name": "ClipMis-Tiny", "pretrained": None}}
HP = {**ft.recipe("smoke"), "epochs": 2, "batch_size": 8, "lr": 3.0e-3}


@pytest.fixture(scope="module")
def world(tmp_path_factory, one_thread):
    """A trained run per image-tower kind (full: re-encoded; clip_adapter: adapted base features),
    the base model and the zero-shot rows, in a temporary build folder."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CLIPMIS_BUILD", str(tmp_path_factory.mktemp("build")))
    from lib.evaluate import zero_shot_table
    torch.manual_seed(0)
    base = models.create("ClipMis-Tiny", device="cpu", seed=0)
    mp.setattr(ft, "base_model", lambda cfg: base)
    mp.setattr(ft, "base_fingerprint", lambda cfg: "toy-base")
    source = ToySource(CFG)
    rs = []
    for method in ("full", "clip_adapter"):
        r = RunId("toy", method, "default", 0)
        unit = ft.Unit(CFG, "toy", method, runs=[r], hp=HP, options={}, variants={})
        unit.run(r, progress=False)
        rs.append(r)
    base_state = models.state_fingerprint(base.model)
    zs = zero_shot_table(base, source, PROFILE, progress=False)
    zs_rows = {(x["task"], x["domain"]): x for x in zs.to_dict("records")}
    yield {"base": base, "state": base_state, "source": source, "zs": zs_rows, "runs": rs}
    mp.undo()


def evaluate(w, r):
    return E.evaluate_run(r, PROFILE, w["base"], w["state"], w["source"], w["zs"], 16, 0)


# ----------------------------------------------------------------------------- flips
def test_flips_match_the_accuracy_difference_on_every_row(world):
    for r in world["runs"]:
        rows = evaluate(world, r)
        assert {x["schema"] for x in rows} == {"ID", "DG", "CF"} and len(rows) == 4
        for x in rows:
            assert isinstance(x["n_lost"], int) and isinstance(x["n_won"], int)
            assert 0 <= x["n_lost"] + x["n_won"] <= x["n_images"]
            assert x["n_won"] - x["n_lost"] == round(x["n_images"] * (x["acc_finetuned"] - x["acc_zero_shot"])), x
        assert schema.problems(pd.DataFrame(rows), schema.EVALUATION) == []
        # a run that changed something flips some images (else the identity above is vacuous)
        assert sum(x["n_lost"] + x["n_won"] for x in rows) > 0, r.label


def test_predictions_follow_zero_shot_accuracy_including_ties():
    from lib import metrics
    from lib.evaluate import flips, predictions
    rng = np.random.default_rng(0)
    img = rng.normal(size=(500, 8)).astype(np.float32)
    txt = rng.normal(size=(5, 8)).astype(np.float32)
    txt[3] = txt[1]                                     # a tie: the lower class index wins, as np.argmax
    lab = rng.integers(0, 5, 500)
    p = predictions(img, txt)
    assert not (p == 3).any()
    assert np.mean(p == lab) == metrics.zero_shot_accuracy(img, txt, lab)
    f = flips(p, np.where(np.arange(500) < 50, lab, p), lab)
    assert f["n_won"] - f["n_lost"] == f["n_correct_finetuned"] - f["n_correct_zero_shot"]


def test_zero_shot_table_that_disagrees_with_the_base_model_is_refused(world):
    r = world["runs"][0]
    (r.dir(PROFILE) / "eval.json").unlink(missing_ok=True)
    zs = {k: dict(v) for k, v in world["zs"].items()}
    n = zs[("toy", "id")]["n_images"]
    zs[("toy", "id")]["acc"] = min(1.0, zs[("toy", "id")]["acc"] + 2 / n)
    with pytest.raises(ValueError, match=r"zero_shot.csv records zero-shot accuracy .* on toy/id .*make zero-shot"):
        E.evaluate_run(r, PROFILE, world["base"], world["state"], world["source"], zs, 16, 0)


# ----------------------------------------------------------------------------- the evaluation cache
def test_edited_eval_cache_is_recomputed_and_named(world, capsys):
    r = world["runs"][0]
    first = evaluate(world, r)
    again = evaluate(world, r)
    assert isinstance(again, E.CachedRows) and list(again) == first
    f = r.dir(PROFILE) / "eval.json"
    cache = json.loads(f.read_text())
    cache["rows"][0]["acc_finetuned"] += 0.25                   # the attack: rows edited, key kept
    f.write_text(json.dumps(cache))
    capsys.readouterr()
    fixed = evaluate(world, r)
    assert not isinstance(fixed, E.CachedRows) and list(fixed) == first
    out = capsys.readouterr().out
    assert str(f) in out and "do not match their recorded hash" in out
    # the same edit with a recomputed hash is caught by the schema's flip check
    cache = json.loads(f.read_text())
    x = cache["rows"][0]
    x["acc_finetuned"] += (1 if x["acc_finetuned"] < 0.5 else -1) / x["n_images"]   # one image, in range
    cache["rows_sha256"] = io.content_hash(cache["rows"])
    f.write_text(json.dumps(cache))
    assert not isinstance(evaluate(world, r), E.CachedRows)
    assert "n_won - n_lost" in capsys.readouterr().out
    # a cache of the previous version (no flips, no hash) is recomputed, not reused
    cache = json.loads(f.read_text())
    cache["key"]["version"] = 3
    f.write_text(json.dumps(cache))
    assert not isinstance(evaluate(world, r), E.CachedRows)
    assert "version changed" in capsys.readouterr().out


def test_changed_zero_shot_numbers_invalidate_the_cache(world):
    r = world["runs"][1]
    evaluate(world, r)
    assert isinstance(evaluate(world, r), E.CachedRows)
    zs = {k: dict(v) for k, v in world["zs"].items()}
    zs[("other", "shifted")]["acs"] += 0.01
    got = E.evaluate_run(r, PROFILE, world["base"], world["state"], world["source"], zs, 16, 0)
    assert not isinstance(got, E.CachedRows)
    assert [x["acs_zero_shot"] for x in got if x["eval_task"] == "other" and x["eval_domain"] == "shifted"] == \
        [zs[("other", "shifted")]["acs"]]


# ----------------------------------------------------------------------------- table schemas
def eval_rows(n=3) -> pd.DataFrame:
    rows = []
    for i, (task, dom, sch) in enumerate([("a", "id", "ID"), ("a", "s", "DG"), ("b", "id", "CF")][:n]):
        row = {"train_task": "a", "method": "full", "variant": "default", "seed": 0, "eval_task": task,
               "eval_domain": dom, "schema": sch, "n_images": 100}
        for m in schema.MEASURE_RANGES:
            row[f"{m}_zero_shot"], row[f"{m}_finetuned"] = 0.5, 0.5
        row["acc_finetuned"], row["n_lost"], row["n_won"] = 0.55, 3, 8
        rows.append(row)
    return pd.DataFrame(rows)[schema.EVALUATION.names]


@pytest.mark.parametrize("cell, value, why", [
    ("acc_finetuned", np.nan, "column 'acc_finetuned': blank or NaN in 1 row"),
    ("method", "", "column 'method': blank or NaN"),
    ("ss_finetuned", 1.5, r"column 'ss_finetuned': outside \[-1.0, 1.0\]"),
    ("n_won", 9, "n_won - n_lost == round"),
    ("n_lost", 2.5, "column 'n_lost': not an integer"),
    ("schema", "OOD", r"values \['OOD'\] not in"),
    ("seed", -1, "column 'seed': outside"),
])
def test_evaluation_table_with_a_bad_cell_is_refused_naming_the_file(tmp_path, cell, value, why):
    f = tmp_path / "evaluation.csv"
    good = eval_rows()
    io.write_csv(good, f, {"stage": "test"})
    assert schema.read_table(f, schema.EVALUATION).shape == good.shape
    bad = good.astype(object)
    bad.loc[1, cell] = value
    io.write_csv(bad, f, {"stage": "test"})
    with pytest.raises(schema.SchemaError, match=why) as e:
        schema.read_table(f, schema.EVALUATION, "smoke")
    assert str(f) in str(e.value) and "make evaluate PROFILE=smoke" in str(e.value)


def test_class_ss_may_be_blank_and_missing_columns_are_named(tmp_path):
    df = eval_rows()
    df.loc[0, "class_ss_finetuned"] = np.nan                      # undefined for < 2 classes: allowed
    assert schema.problems(df, schema.EVALUATION) == []
    assert schema.problems(df.drop(columns=["n_lost", "n_won"]), schema.EVALUATION) == \
        ["missing column(s) ['n_lost', 'n_won']"]
    assert any("repeated" in p for p in schema.problems(pd.concat([df, df.iloc[:1]]), schema.EVALUATION))


def test_table_edited_after_it_was_written_is_refused(tmp_path):
    f = tmp_path / "evaluation.csv"
    io.write_csv(eval_rows(), f, {"stage": "test"})
    assert json.loads(io.provenance_path(f).read_text())["content_sha256"] == io.file_sha256(f)
    text = f.read_text()
    f.write_text(text.replace("0.55", "0.65", 1))                 # still fits the schema but for the flips
    with pytest.raises(schema.SchemaError, match="does not match the content hash"):
        schema.read_table(f, schema.EVALUATION)
    f.write_text(text)
    schema.read_table(f, schema.EVALUATION)


def finetune_rows() -> pd.DataFrame:
    return pd.DataFrame([{"task": "a", "method": "full", "variant": "default", "seed": s, "trainable_params": 10,
                          "best_val_acc": acc, "best_epoch": 1, "epochs": 2, "lr": 1e-3, "nonfinite": False,
                          "options": "{}", "zero_shot_val_acc": 0.5, "no_val_gain": acc <= 0.5,
                          "train_seconds": 1.0, "peak_memory_mb": 100.0} for s, acc in ((0, 0.6), (1, 0.5))])


def test_finetune_table_schema(tmp_path):
    df = finetune_rows()
    assert schema.problems(df, schema.FINETUNE) == []
    assert bool(df.loc[1, "no_val_gain"])                         # equal to zero-shot: no gain
    f = tmp_path / "finetune.csv"
    io.write_csv(df, f)
    back = schema.read_table(f, schema.FINETUNE)
    assert back["no_val_gain"].dtype == bool and back["nonfinite"].dtype == bool
    for col, v, why in (("best_val_acc", np.nan, "blank or NaN"), ("no_val_gain", True, "no_val_gain =="),
                        ("nonfinite", "maybe", "other than True / False"), ("lr", 0.0, "lr > 0")):
        bad = df.astype(object)
        bad.loc[0, col] = v
        assert any(why in p for p in schema.problems(bad, schema.FINETUNE)), (col, schema.problems(bad, schema.FINETUNE))


def test_aggregate_evaluation_refuses_a_unit_file_with_a_blank_cell(tmp_path, monkeypatch):
    """A unit's evaluation.csv with a NaN is refused with its path (before: published as is)."""
    from lib.pipeline import grid
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path))
    cfg = config.load_profile("smoke")
    units = grid.evaluation_units(grid.runs(cfg))
    for (t, m), rs in units.items():
        rows = []
        for r in rs:
            d = eval_rows(1).assign(train_task=t, method=m, variant=r.variant, seed=r.seed, eval_task=t)
            rows.append(d)
        io.write_csv(pd.concat(rows), paths.unit_eval_csv("smoke", t, m), {"unit": f"{t}/{m}"}, float_format=None)
    out = aggregate.aggregate_evaluation("smoke")
    assert len(out) == sum(len(rs) for rs in units.values()) and list(out.columns) == schema.EVALUATION.names
    assert io.csv_hash_problem(paths.results_dir("smoke") / "evaluation.csv") is None
    (t, m) = next(iter(units))
    f = paths.unit_eval_csv("smoke", t, m)
    df = pd.read_csv(f)
    df.loc[0, "acs_finetuned"] = np.nan
    io.write_csv(df, f, {"unit": f"{t}/{m}"}, float_format=None)
    with pytest.raises(schema.SchemaError, match=rf"(?s){f}.*'acs_finetuned': blank or NaN.*make evaluate PROFILE=smoke"):
        aggregate.aggregate_evaluation("smoke")


# ----------------------------------------------------------------------------- the promised ConfigError
def test_evaluate_unit_names_a_unit_that_does_not_exist(tmp_path, monkeypatch):
    """Before: NameError (ConfigError was not imported); now the message with the valid units."""
    from lib import world as W
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path))
    monkeypatch.setattr(W.EmbeddedSource, "check", lambda self: None)
    monkeypatch.setattr(E, "zero_shot_rows", lambda profile: {})
    with pytest.raises(ConfigError, match=r"\(objects, nope\) is not an evaluation unit of profile 'smoke'; valid: "):
        E.evaluate_unit(config.load_profile("smoke"), "objects", "nope", progress=False)
    # one job, several units: every unit is checked before any work (the valid first one is not evaluated)
    monkeypatch.setattr(E, "base_model", lambda cfg: pytest.fail("work started before every unit was checked"))
    with pytest.raises(ConfigError, match=r"\(objects, nope\) is not an evaluation unit"):
        E.evaluate_task(config.load_profile("smoke"), "objects", ["full", "nope"], progress=False)
    assert not any(tmp_path.rglob("*.csv"))
