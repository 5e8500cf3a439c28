"""lib.pipeline.upstream: a notebook opened on its own builds its missing inputs through Make, once."""
import io
import json
import os
import re
import stat
import sys
from pathlib import Path

import pytest

from lib import config, paths
from lib.pipeline import upstream

FAKE_MAKE = r'''#!{python}
"""Stand-in for make: records its arguments and working folder, then writes the outputs of its targets."""
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["FAKE_MAKE_LOG"], "a") as f:
    f.write(json.dumps({{"args": args, "cwd": os.getcwd(), "makelevel": os.environ.get("MAKELEVEL")}}) + "\n")
if os.environ.get("FAKE_MAKE_FAIL"):
    print("papermill: FAILED: see build/smoke/00_pretrain.failed.ipynb")
    sys.exit(2)
if os.environ.get("FAKE_MAKE_NOOP"):
    print("make: Nothing to be done")
    sys.exit(0)
profile = [a.split("=", 1)[1] for a in args if a.startswith("PROFILE=")][0]
b = Path(os.environ["CLIPMIS_BUILD"]) / profile
outs = {{"pretrain": [b / "models/pretrained.safetensors"],
        "zero-shot": [b / "models/pretrained.safetensors", b / "results/zero_shot.csv"],
        "finetune": [b / "models/pretrained.safetensors", b / "results/finetune.csv"],
        "evaluate": [b / "models/pretrained.safetensors", b / "results/zero_shot.csv",
                     b / "results/finetune.csv", b / "results/evaluation.csv"]}}
for t in args:
    for p in outs.get(t, []):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
        print("built", p.name, flush=True)
'''


@pytest.fixture
def fake(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    make = bin_dir / "make"
    make.write_text(FAKE_MAKE.format(python=sys.executable))
    make.chmod(make.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "make.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path / "build"))
    monkeypatch.setenv("FAKE_MAKE_LOG", str(log))
    for k in ("MAKELEVEL", "FAKE_MAKE_FAIL", "FAKE_MAKE_NOOP"):
        monkeypatch.delenv(k, raising=False)

    def calls():
        return [json.loads(l) for l in log.read_text().splitlines()] if log.exists() else []
    return calls


def test_stage_names():
    assert upstream.stage_name("02_finetune") == "finetune_unit"
    assert upstream.stage_name("zero-shot") == "zero_shot"
    assert set(upstream.NOTEBOOK_STAGE) == {p.stem for p in paths.NOTEBOOKS.glob("*.ipynb")}
    with pytest.raises(ValueError, match="valid: pretrain, zero_shot"):
        upstream.stage_name("train")


def test_make_targets_exist_in_the_makefile():
    rules = re.findall(r"^([A-Za-z][\w .-]*?)\s*:(?!=)", (paths.ROOT / "Makefile").read_text(), re.M)
    targets = {t for line in rules for t in line.split()}
    assert set(upstream.STAGES.values()) <= targets, set(upstream.STAGES.values()) - targets


def test_missing_pretrained_model_runs_make_pretrain_with_this_python(fake):
    out = io.StringIO()
    assert upstream.ensure_upstream("02_finetune", "smoke", out=out) == ["pretrain"]
    (call,) = fake()
    assert call["args"] == ["pretrain", "PROFILE=smoke", f"PY={sys.executable}"]
    assert Path(call["cwd"]).resolve() == paths.ROOT.resolve()
    text = out.getvalue()
    assert "models/pretrained.safetensors (from pretrain)" in text and "make pretrain PROFILE=smoke" in text
    assert "built pretrained.safetensors" in text  # Make's lines are shown as they come
    # the second time every input is there: nothing runs
    assert upstream.ensure_upstream("02_finetune", "smoke", out=io.StringIO()) == []
    assert len(fake()) == 1


def test_figures_runs_only_what_is_missing(fake):
    res = paths.results_dir("smoke")
    res.mkdir(parents=True)
    (res / "zero_shot.csv").write_text("x")
    assert upstream.ensure_upstream("04_figures", "smoke", out=io.StringIO()) == ["finetune", "evaluate"]
    assert fake()[0]["args"][:2] == ["finetune", "evaluate"]
    assert upstream.missing_inputs("figures", "smoke") == {}


def test_pretrain_has_no_inputs_and_a_published_model_needs_no_checkpoint(fake):
    assert upstream.ensure_upstream("00_pretrain", "smoke", out=io.StringIO()) == []
    assert config.load_profile("paper")["model"]["pretrained"] != "self"
    assert upstream.stage_output("pretrain", "paper") is None
    assert upstream.missing_inputs("01_zero_shot", "paper") == {}
    assert fake() == []


def test_under_make_it_never_runs_make(fake, monkeypatch):
    monkeypatch.setenv("MAKELEVEL", "1")
    assert upstream.ensure_upstream("03_evaluate", "smoke", out=io.StringIO()) == []
    assert fake() == []


def test_failing_make_says_what_failed(fake, monkeypatch):
    monkeypatch.setenv("FAKE_MAKE_FAIL", "1")
    with pytest.raises(RuntimeError, match=r"(?s)make pretrain PROFILE=smoke.*exit 2.*FAILED: see build/smoke"):
        upstream.ensure_upstream("01_zero_shot", "smoke", out=io.StringIO())


def test_make_that_builds_nothing_is_reported(fake, monkeypatch):
    monkeypatch.setenv("FAKE_MAKE_NOOP", "1")
    with pytest.raises(RuntimeError, match="still missing.*clean-profile PROFILE=smoke"):
        upstream.ensure_upstream("01_zero_shot", "smoke", out=io.StringIO())


def test_bad_input(fake, tmp_path):
    with pytest.raises(config.ConfigError, match="unknown profile"):
        upstream.ensure_upstream("02_finetune", "nope")
    with pytest.raises(FileNotFoundError, match="Makefile"):
        upstream.ensure_upstream("02_finetune", "smoke", root=tmp_path)
    assert fake() == []
