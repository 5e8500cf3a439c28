"""The experiment grid of each profile, and the Make DAG of the real profile (dry run)."""
import subprocess

import pytest

from lib import config, grid, paths


def test_mini_grid_is_the_full_study():
    runs = grid.runs(config.load_profile("mini"))
    main = [r for r in runs if r.variant == "default"]
    abl = [r for r in runs if r.variant != "default"]
    assert len(main) == 5 * 5 * 3
    assert {r.method for r in main} == {"full", "clip_adapter", "lora", "bitfit", "aclip"}
    assert len(abl) == 9 * 5 and {r.method for r in abl} == {"aclip"} and {r.seed for r in abl} == {0}
    assert len(set(runs)) == len(runs)


def test_unknown_method_or_variant_in_grid_is_named():
    cfg = config.load_profile("smoke")
    cfg["grid"]["methods"] = ["full", "prompt_tuning"]
    with pytest.raises(config.ConfigError, match="unknown method 'prompt_tuning'; valid: full"):
        grid.runs(cfg)
    cfg = config.load_profile("smoke")
    cfg["grid"]["ablations"]["aclip"]["variants"] = ["qq"]
    with pytest.raises(config.ConfigError, match="unknown variant 'qq'; valid: q, k"):
        grid.runs(cfg)


def test_make_include_has_one_rule_per_run():
    text = grid.make_include("smoke")
    n = len(grid.runs(config.load_profile("smoke")))
    assert text.count("$(call run_finetune,") == n
    assert "params/methods/lora.yaml" in text


def test_paper_profile_dry_run_shows_the_whole_dag():
    """`make -n` for the real profile lists every notebook execution without needing data or a GPU."""
    out = subprocess.run(["make", "-n", "--no-print-directory", "build/paper/04_figures.ipynb", "PROFILE=paper"],
                         cwd=paths.ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    cmds = [line for line in out.stdout.splitlines() if " -m papermill " in line]
    n_runs = len(grid.runs(config.load_profile("paper")))
    assert n_runs == 120
    assert len([c for c in cmds if "02_finetune" in c]) == n_runs
    for stage in ("00_pretrain", "01_zero_shot", "03_evaluate", "04_figures"):
        assert any(f"notebooks/{stage}.ipynb" in c for c in cmds), stage
    assert all("-p profile paper" in c for c in cmds)
