"""The experiment grid of each profile, its units, the Make DAG of the real profile (dry run), the
per-unit commands for clusters and the LAUNCH prefix."""
import os
import subprocess

import pytest

from lib import config, paths
from lib.paths import RunId
from lib.pipeline import grid


def test_mini_grid_is_the_full_study():
    cfg = config.load_profile("mini")
    runs = grid.runs(cfg)
    tasks = cfg["world"]["tasks"]
    main = [r for r in runs if r.variant == "default"]
    abl = [r for r in runs if r.variant != "default"]
    assert len(tasks) >= 8 and len(main) == len(tasks) * 5 * 3
    assert {r.method for r in main} == {"full", "clip_adapter", "lora", "bitfit", "aclip"}
    spec = cfg["grid"]["ablations"]["aclip"]
    assert len(spec["tasks"]) >= 3 and len(spec["seeds"]) >= 3, "A-CLIP ablations: >= 3 tasks x 3 seeds"
    assert len(abl) == len(spec["variants"]) * len(spec["tasks"]) * len(spec["seeds"]) and {r.method for r in abl} == {"aclip"}
    assert len(set(runs)) == len(runs)
    sweep = grid.sweep_runs(cfg)
    assert len(sweep) == len(tasks) * 5 * 4 and {r.seed for r in sweep} == {0} and all(r.is_sweep for r in sweep)
    us = grid.units(cfg)
    assert list(us) and set(us) == set(tasks)
    assert sum(len(v) for v in us.values()) == len(runs) + len(sweep)
    sizes = [len(v) for v in us.values()]
    assert sizes == sorted(sizes, reverse=True), "the largest units come first"
    assert len(grid.evaluation_units(runs)) == len(tasks) * 5


def test_sweep_points_have_their_own_folder_and_label(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path))
    r = RunId("objects", "full", "default", 0, 3e-4)
    assert r.dir("p") == tmp_path / "p" / "runs" / "objects" / "full" / "sweep" / "lr0.0003" / "seed0"
    assert r.label == "objects/full@lr=0.0003/seed0" and r.is_sweep
    assert r != RunId("objects", "full", "default", 0) and not RunId("objects", "full", "default", 0).is_sweep


def test_unknown_method_or_variant_in_grid_is_named():
    cfg = config.load_profile("smoke")
    cfg["grid"]["methods"] = ["full", "prompt_tuning"]
    with pytest.raises(config.ConfigError, match="unknown method 'prompt_tuning'; valid: full"):
        grid.runs(cfg)
    cfg = config.load_profile("smoke")
    cfg["grid"]["ablations"]["aclip"]["variants"] = ["qq"]
    with pytest.raises(config.ConfigError, match="unknown variant 'qq'; valid: q, k"):
        grid.runs(cfg)


def test_duplicate_runs_are_refused():
    cfg = config.load_profile("smoke")
    cfg["grid"]["seeds"] = [0, 0]
    # a grid handed in without the loader is checked again against the schema
    with pytest.raises(config.ConfigError, match=r"grid.seeds: lists 0 more than once"):
        grid.runs(cfg)


def test_run_identity_owns_its_path_and_marker(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path))
    r = RunId("objects", "aclip", "q", 2)
    assert r.dir("p") == tmp_path / "p" / "runs" / "objects" / "aclip" / "q" / "seed2"
    assert r.marker("p").name == "row.json" and r.marker("p").parent == r.dir("p")
    assert r.label == "objects/aclip[q]/seed2"


def test_make_include_has_one_rule_per_unit():
    """One rule per fine-tuning unit (task); one per evaluation job (task), whose grouped targets are
    every (task, method) unit's products and whose recipe names every method."""
    text = grid.make_include("smoke")
    cfg = config.load_profile("smoke")
    n, jobs = len(grid.units(cfg)), grid.evaluation_jobs(grid.runs(cfg))
    assert text.count("$(call finetune_unit,") == n and text.count("$(call evaluate_unit,") == len(jobs) == n
    for task, methods in jobs.items():
        assert f"$(call evaluate_unit,{task},{' '.join(methods)})" in text
        rule = next(line for line in text.splitlines() if line.startswith(f"$(B)/runs/{task}/{methods[0]}/evaluation.csv"))
        assert all(f"$(B)/runs/{task}/{m}/evaluation.csv" in rule.split(" &: ")[0] for m in methods)
        assert all(f"$(B)/runs/{task}/{m}/sweep_evaluation.csv" in rule.split(" &: ")[0] for m in methods)
    assert len(grid.evaluation_units(grid.runs(cfg))) == sum(len(ms) for ms in jobs.values())
    assert "params/methods/lora.yaml" in text
    assert "build/" not in text, "paths go through $(B), so CLIPMIS_BUILD moves Make's files too"
    # fine-tuning waits for zero-shot (order only: zero-shot's product is no prerequisite of it, so a
    # new zero_shot.csv reruns no fine-tuning; tests/test_codegraph.py's staleness test runs make -n)
    ft = [line for line in text.splitlines() if line.startswith("$(B)/runs/") and "/02_finetune.ipynb" in line.split(":")[0]]
    assert len(ft) == n and all(line.endswith(" | $(B)/results/zero_shot.csv") for line in ft)
    assert all("zero_shot.csv" not in line.split(" | ")[0] for line in ft)


def test_grid_failure_is_reported_and_exits_nonzero(capsys):
    assert grid.main(["nope", "--runs"]) == 2
    assert "unknown profile 'nope'; valid profiles: colab, mini" in capsys.readouterr().err


def test_commands_one_per_unit_runnable_from_the_root():
    cmds = grid.commands("paper", python="python3")
    cfg = config.load_profile("paper")
    n, n_ev = len(grid.units(cfg, validate=False)), len(grid.evaluation_jobs(grid.runs(cfg, validate=False)))
    assert len(cmds) == n + n_ev and n_ev == n      # one evaluation job per task, every method in it
    assert all("-p profile paper" in c for c in cmds[:n]) and all("lib.pipeline.evaluate paper" in c for c in cmds[n:])
    assert all(c.endswith(" ".join(grid.evaluation_jobs(grid.runs(cfg, validate=False))[c.split()[4]]))
               for c in cmds[n:])


@pytest.mark.slow  # subprocess: make -n of the whole paper DAG (fast tier: issue #21 item 9)
def test_paper_profile_dry_run_shows_the_whole_dag():
    """`make -n` for the real profile lists every unit without needing data or a GPU."""
    out = subprocess.run(["make", "-n", "--no-print-directory", "dry-run", "PROFILE=paper"],
                         cwd=paths.ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    cmds = [line for line in out.stdout.splitlines() if " -m papermill " in line]
    cfg = config.load_profile("paper")
    n_units = len(grid.units(cfg, validate=False))
    n_ev = len(grid.evaluation_jobs(grid.runs(cfg, validate=False)))
    assert n_units == 5 and n_ev == 5     # one evaluation job per task (its 5 methods' units)
    # one fine-tuning job per task (tasks_per_job unset): its notebook, in its own kernel
    assert len([line for line in out.stdout.splitlines() if "-m lib.pipeline.notebook_job paper " in line]) == n_units
    assert len([line for line in out.stdout.splitlines() if "-m lib.pipeline.evaluate paper" in line]) == n_ev
    for stage in ("00_pretrain", "01_zero_shot", "03_evaluate", "04_figures"):
        assert any(f"notebooks/{stage}.ipynb" in c for c in cmds), stage
    assert all("-p profile paper" in c for c in cmds)


@pytest.mark.slow  # subprocess: make -n over the paper profile, 5-6 s (fast tier: issue #21 item 9)
def test_launch_prefix_goes_in_front_of_every_unit(tmp_path):
    """LAUNCH="srun ..." prefixes every notebook execution and evaluation job (dry run)."""
    out = subprocess.run(["make", "-n", "--no-print-directory", "dry-run", "PROFILE=paper",
                          "LAUNCH=srun --gres=gpu:1 -c 8"], cwd=paths.ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    work = [line for line in out.stdout.splitlines()
            if any(w in line for w in (" -m papermill ", "-m lib.pipeline.evaluate", "-m lib.pipeline.notebook_job"))]
    assert work and all("srun --gres=gpu:1 -c 8 " in line for line in work)


def test_bad_profile_is_refused_by_make():
    for bad in ("", "nope", "mini smoke"):
        out = subprocess.run(["make", "-n", "reproduce", f"PROFILE={bad}"], cwd=paths.ROOT,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and "is not a profile" in out.stderr, (bad, out.stderr)
    out = subprocess.run(["make", "clean-profile", "PROFILE="], cwd=paths.ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0 and "is not a profile" in out.stderr


@pytest.mark.slow  # subprocess: runs make (fast tier: issue #21 item 9)
def test_clipmis_build_moves_makes_files_too(tmp_path):
    """CLIPMIS_BUILD (or BUILD=) moves Make's targets with Python's outputs; the error advice then works."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["CLIPMIS_BUILD"] = str(tmp_path / "elsewhere")
    out = subprocess.run(["make", "-n", "--no-print-directory", "dry-run", "PROFILE=smoke"], cwd=paths.ROOT,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    nbs = [line for line in out.stdout.splitlines() if " -m papermill " in line]
    assert nbs and all(str(tmp_path / "elsewhere" / "smoke") in line for line in nbs)
    assert (tmp_path / "elsewhere" / "smoke" / "grid.mk").exists()


# ----------------------------------------------------------------------------- the learning-rate sweep
class _NoData:
    """Stands in for a unit's shared data and model: the sweep logic needs only the fingerprints."""
    source = spec = None

    def identity(self):
        return ("base", "code")


@pytest.mark.parametrize("acc,points,selected", [
    # the top of the grid is best: extended twice (lr_extend: 2), the last addition wins
    ({0.1: .5, 0.3: .6, 1.0: .7, 3.0: .8, 10.0: .85, 30.0: .9}, [0.1, 0.3, 1.0, 3.0, 10.0, 30.0], 30.0),
    # the first added rate is worse: the sweep stops there and keeps the grid's top
    ({0.1: .5, 0.3: .6, 1.0: .7, 3.0: .8, 10.0: .4}, [0.1, 0.3, 1.0, 3.0, 10.0], 3.0),
    # the bottom is strictly best: extended downwards
    ({0.01: .85, 0.03: .9, 0.1: .8, 0.3: .6, 1.0: .5, 3.0: .4}, [0.01, 0.03, 0.1, 0.3, 1.0, 3.0], 0.03),
    # flat: ties go to the smaller rate, and a tie is no reason to extend
    ({0.1: .5, 0.3: .5, 1.0: .5, 3.0: .5}, [0.1, 0.3, 1.0, 3.0], 0.1),
    # an interior best: no extension
    ({0.1: .5, 0.3: .9, 1.0: .7, 3.0: .6}, [0.1, 0.3, 1.0, 3.0], 0.3),
])
def test_sweep_extends_beyond_an_end_only_while_that_end_is_strictly_best(monkeypatch, acc, points, selected):
    from lib.pipeline import finetune as ft
    cfg = config.load_profile("smoke")
    u = ft.Unit(cfg, "objects", "lora", shared=_NoData())
    assert u.grid == [0.1, 0.3, 1.0, 3.0] and u.extend == 2
    monkeypatch.setattr(ft, "finished_row", lambda p, r, want=None: (
        {"lr": r.lr, "best_val_acc": acc[r.lr], "best_epoch": 1, "nonfinite": False} if r.lr in acc else None))
    pts, rows, sel = u.sweep_state()
    assert [r.lr for r in pts] == points and sel == selected
    table = ft.sweep_table([u])
    assert table["selected"].sum() == 1 and table.loc[table["selected"], "lr"].item() == selected
    assert set(table.loc[~table["in_grid"], "lr"]) == set(points) - set(u.grid)


def test_sweep_waits_for_its_points_and_diverged_points_are_not_eligible(monkeypatch):
    from lib.pipeline import finetune as ft
    u = ft.Unit(config.load_profile("smoke"), "objects", "full", shared=_NoData())
    monkeypatch.setattr(ft, "finished_row", lambda p, r, want=None: None if r.lr == 1e-3 else
                        {"lr": r.lr, "best_val_acc": 0.5, "best_epoch": 1, "nonfinite": False})
    assert u.selected_lr() is None                  # a point is missing: no selection yet
    rows = {1e-4: (.5, False), 3e-4: (.6, False), 1e-3: (.7, False), 3e-3: (.9, True)}
    monkeypatch.setattr(ft, "finished_row", lambda p, r, want=None: (
        {"lr": r.lr, "best_val_acc": rows[r.lr][0], "best_epoch": 1, "nonfinite": rows[r.lr][1]} if r.lr in rows else None))
    assert u.selected_lr() == 1e-3 and [r.lr for r in u.sweep] == [1e-4, 3e-4, 1e-3, 3e-3]
    assert ft.choose_lr([{"lr": 0.1, "best_val_acc": 0.2, "nonfinite": True},
                         {"lr": 0.01, "best_val_acc": 0.1, "nonfinite": True}]) == 0.01
