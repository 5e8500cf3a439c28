"""Damaged files are noticed when read: a completion marker that does not parse or whose content is
invalid (a field missing, of the wrong type, out of range, not this run's, or disagreeing with the
run's meta.json), a state file of the wrong size, a cache entry that cannot be read. Each counts as
"not done" and is recomputed."""

import numpy as np
import pytest

from lib import io, paths
from lib.paths import RunId
from lib.pipeline.finetune import finished_row


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path))
    r = RunId("objects", "lora", "default", 0)
    d = r.dir("p")
    d.mkdir(parents=True)
    (d / RunId.STATE).write_bytes(b"x" * 100)
    io.write_json(d / RunId.META, META)
    io.write_json(r.marker("p"), ROW)   # as the code before reliability v3 wrote it: no hashes
    return r


# a marker and meta.json as lib.pipeline.finetune writes them (meta: the keys the checks read)
ROW = {"task": "objects", "method": "lora", "variant": "default", "seed": 0, "trainable_params": 1000,
       "best_val_acc": 0.52, "best_epoch": 2, "epochs": 3, "lr": 0.001, "nonfinite": False, "options": "{}",
       "train_seconds": 1.5, "peak_memory_mb": 300.0, "request_fingerprint": "abc"}
META = {"state_bytes": 100, "request_fingerprint": "abc", "task": "objects", "method": "lora", "variant": "default",
        "seed": 0, "trainable_params": 1000, "hp": {"epochs": 3, "lr": 0.001}, "nonfinite": None,
        "history": [{"epoch": 1, "val_acc": 0.4}, {"epoch": 2, "val_acc": 0.52}, {"epoch": 3, "val_acc": 0.5}]}


def test_complete_run_is_done(run):
    assert finished_row("p", run)["task"] == "objects"
    assert finished_row("p", run, want="abc") is not None
    assert finished_row("p", run, want="other request") is None


@pytest.mark.parametrize("damage", ["marker_garbage", "marker_empty", "marker_list", "meta_garbage",
                                    "state_truncated", "state_missing"])
def test_damaged_run_is_not_done(run, damage):
    d = run.dir("p")
    if damage == "marker_garbage":
        run.marker("p").write_text('{"task": "obj')
    elif damage == "marker_empty":
        run.marker("p").write_bytes(b"")
    elif damage == "marker_list":
        run.marker("p").write_text("[1, 2]")
    elif damage == "meta_garbage":
        (d / RunId.META).write_bytes(b"\x00\xff")
    elif damage == "state_truncated":
        (d / RunId.STATE).write_bytes(b"x" * 60)
    else:
        (d / RunId.STATE).unlink()
    assert finished_row("p", run) is None


@pytest.mark.parametrize("edit, why", [
    ({"best_val_acc": None}, "'best_val_acc' is None"),
    ("drop best_val_acc", "no 'best_val_acc'"),
    ({"best_val_acc": "0.52"}, "'best_val_acc' is '0.52', not a finite number"),
    ({"best_val_acc": float("nan")}, "not a finite number"),
    ({"best_val_acc": 1.25}, r"outside \[0.0, 1.0\]"),
    ({"best_val_acc": 0.77}, "not the validation accuracy of epoch 2"),    # edited: meta's history disagrees
    ({"seed": True}, "'seed' is True, not an int"),
    ({"seed": 1}, "is not this run's"),                                   # a marker copied into another folder
    ({"nonfinite": "False"}, "not a bool"),
    ({"best_epoch": 5}, "best_epoch 5 > epochs 3"),
    ({"trainable_params": 7}, "trainable_params 7 vs 1000"),
    ({"lr": 0.01}, "lr 0.01 vs 0.001"),
])
def test_invalid_marker_is_not_done_and_named(run, edit, why, capsys):
    """A marker with a missing, mistyped, out-of-range or edited field is not a finished run: the run
    is trained again (the unit) or refused (aggregate, evaluation), and the log names file and reason."""
    from lib.pipeline.finetune import marker_problem
    row = {k: v for k, v in ROW.items() if edit != "drop best_val_acc" or k != "best_val_acc"}
    if isinstance(edit, dict):
        row.update(edit)
    io.write_json(run.marker("p"), row)
    assert finished_row("p", run) is None
    msg = marker_problem("p", run)
    assert str(run.marker("p")) in msg
    import re
    assert re.search(why, msg), msg
    assert "is not reused" in capsys.readouterr().out


def test_new_markers_hash_their_files_and_themselves(run):
    """A marker written by _commit records the state's, meta.json's and its own sha256; an edit of
    any of the three (even one that keeps every field valid) makes the run not finished."""
    from lib.pipeline.finetune import _commit
    d = run.dir("p")
    state, meta = (d / RunId.STATE).read_bytes(), (d / RunId.META).read_bytes()

    def files(staged):
        (staged / RunId.STATE).write_bytes(state)
        (staged / RunId.META).write_bytes(meta)
    _commit(d, files, dict(ROW))
    row = finished_row("p", run)
    assert row is not None and {"state_sha256", "meta_sha256", "row_sha256"} <= set(row)
    marker = run.marker("p").read_text()
    run.marker("p").write_text(marker.replace('"train_seconds": 1.5', '"train_seconds": 2.5'))
    assert finished_row("p", run) is None                                   # row_sha256
    run.marker("p").write_text(marker)
    assert finished_row("p", run) is not None
    io.write_bytes(d / RunId.STATE, b"y" * 100)                             # same size, other bytes
    assert finished_row("p", run) is None
    io.write_bytes(d / RunId.STATE, state)
    assert finished_row("p", run) is not None
    io.write_json(d / RunId.META, {**META, "note": "edited"})               # meta.json edited
    assert finished_row("p", run) is None


def test_unreadable_or_short_npy_cache_is_recomputed(tmp_path):
    f = tmp_path / "c.npy"
    io.save_npy(f, np.arange(12, dtype=np.float32).reshape(4, 3))
    assert io.load_npy(f, 4).shape == (4, 3)
    assert io.load_npy(f, 5) is None                      # another split's length: recompute
    f.write_bytes(f.read_bytes()[:40])                    # truncated
    assert io.load_npy(f, 4) is None
    f.write_bytes(b"")
    assert io.load_npy(f, 4) is None


def test_read_json_treats_damage_as_absent(tmp_path):
    f = tmp_path / "eval.json"
    assert io.read_json(f) is None
    f.write_text('{"key": ')
    assert io.read_json(f) is None
    io.write_json(f, {"key": 1})
    assert io.read_json(f) == {"key": 1}


def test_atomic_writes_leave_no_temporary_and_keep_the_old_file_on_error(tmp_path):
    f = tmp_path / "t.csv"
    io.write_text(f, "old")
    with pytest.raises(RuntimeError):
        with io.atomic_path(f) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert f.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["t.csv"]
    a, b = io.tmp_path(f), io.tmp_path(f)
    assert a != b and a.parent == f.parent and io.is_temporary(a.name)   # unique per writer


def test_damaged_eval_cache_is_recomputed(tmp_path, monkeypatch):
    """evaluate_run reads eval.json through io.read_json: garbage there means 'evaluate again'."""
    from lib.pipeline import evaluate as E
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path))
    r = RunId("t", "full", "default", 0)
    d = r.dir("p")
    d.mkdir(parents=True)
    (d / RunId.STATE).write_bytes(b"state")
    io.write_json(d / RunId.META, {"task": "t", "method": "full", "variant": "default", "seed": 0,
                                   "request_fingerprint": "rq", "state_bytes": 5})
    (d / "eval.json").write_text("{not json")
    called = []

    def fake_load_run(base, run_dir):
        called.append(run_dir)
        raise RuntimeError("recompute reached")
    monkeypatch.setattr(E, "_file_hash", lambda p: "h")
    import lib.train as T
    monkeypatch.setattr(T, "load_run", fake_load_run)

    class Src:
        def tasks(self):
            return {}
    monkeypatch.setattr("lib.evaluate.eval_splits", lambda source: [])
    with pytest.raises(RuntimeError, match="recompute reached"):
        E.evaluate_run(r, "p", None, "b", Src(), {}, 8, 0)
    assert called == [d]


def test_truncated_checkpoint_is_not_reused(tmp_path):
    from lib.pipeline.pretrain import _checkpoint_ok
    ck = tmp_path / "pretrained.safetensors"
    ck.write_bytes(b"x" * 1000)
    assert _checkpoint_ok(ck, {"checkpoint_bytes": 1000})
    ck.write_bytes(b"x" * 10)                      # cut short by a full disk or a kill
    assert not _checkpoint_ok(ck, {"checkpoint_bytes": 1000})


def test_checkpoint_without_its_record_is_not_used(tmp_path, monkeypatch):
    from lib import config
    from lib.pipeline.common import base_model
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path))
    ck = paths.checkpoint("smoke")
    ck.parent.mkdir(parents=True)
    ck.write_bytes(b"x" * 10)
    (ck.with_suffix(".json")).write_text("{broken")
    with pytest.raises(FileNotFoundError, match="no complete pretrained checkpoint"):
        base_model(config.load_profile("smoke"))
