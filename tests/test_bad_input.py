"""Bad input fails early, with a message that names the problem and the fix, and destroys nothing.

Mostly through ``lib.pipeline`` (what the notebooks call) with ``CLIPMIS_BUILD`` in a temporary
folder; the stages' expensive steps (loading the model, generating / loading data) are replaced
by tripwires where a check must come before them. One case goes through Make + papermill on a
copy of the repository with a finished smoke build: Make must exit non-zero and leave every
earlier result untouched.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lib import config, data, models, paths
from lib.config import ConfigError
from lib.paths import RunId
from lib.pipeline import common, finetune as ft, pretrain as pt, zero_shot as zsmod
from lib.pipeline.evaluate import evaluate_unit

ROOT = paths.ROOT
HP = {**ft.recipe("smoke"), "epochs": 1, "batch_size": 8, "lr": 1.0e-2}


@pytest.fixture(autouse=True)
def _tmp_build(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path / "build"))
    monkeypatch.delenv("CLIPMIS_DATA_ROOT", raising=False)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Tripwire(AssertionError):
    pass


@pytest.fixture
def no_expensive_work(monkeypatch):
    """Fail loudly if a stage reaches the model, the data check or the data itself."""
    def trip(what):
        def f(*a, **k):
            raise Tripwire(f"reached {what} before validating its inputs")
        return f
    for mod in (common, ft, pt, zsmod, __import__("lib.pipeline.evaluate", fromlist=["x"])):
        if hasattr(mod, "base_model"):
            monkeypatch.setattr(mod, "base_model", trip("base_model (loading the model)"))
    monkeypatch.setattr(data.DatasetSource, "load", trip("DatasetSource.load"))
    from lib import world
    monkeypatch.setattr(world.EmbeddedSource, "check", trip("the data check"))
    monkeypatch.setattr(world.EmbeddedSource, "load", trip("EmbeddedSource.load"))
    monkeypatch.setattr(world, "generate", trip("world.generate"))


def smoke_cfg() -> dict:
    return config.load_profile("smoke")


def finetune(cfg, task="objects", method="lora", variant="default", hp=None, options=None, variants=None,
             seed=0):
    """One run through the fine-tuning stage (the unit the notebook builds), with explicit values."""
    unit = ft.Unit(cfg, task, method, runs=[RunId(task, method, variant, seed)], hp={**HP, **(hp or {})},
                   options=options or {}, variants=variants or {})
    return unit.run(unit.runs[0], progress=False)


# ----------------------------------------------------------------------------- unknown names
def test_unknown_profile():
    with pytest.raises(ConfigError, match=r"unknown profile 'nope'; valid profiles: colab, mini, paper, smoke"):
        common.setup("nope")


def test_unknown_task(no_expensive_work):
    with pytest.raises(ConfigError, match=r"unknown task 'cifar10'; valid tasks: objects, digits, landcover"):
        finetune(smoke_cfg(), task="cifar10")


def test_unknown_method(no_expensive_work):
    with pytest.raises(ConfigError, match=r"unknown method 'prompt_tuning'; valid methods: "
                                          r"full, clip_adapter, lora, bitfit, aclip"):
        finetune(smoke_cfg(), method="prompt_tuning")


def test_unknown_variant(no_expensive_work):
    variants = config.method_params("aclip", "smoke")["variants"]
    with pytest.raises(ConfigError, match=r"unknown variant 'qq' of method 'aclip'; valid variants: "
                                          r"default, q, k, v, qk, qv, kv, first2, image_only, text_only"):
        finetune(smoke_cfg(), method="aclip", variant="qq", variants=variants)


def test_grid_with_unknown_method_or_variant():
    from lib.pipeline.grid import runs
    cfg = smoke_cfg()
    with pytest.raises(ConfigError, match=r"unknown method 'ia3'; valid: full, clip_adapter"):
        runs({**cfg, "grid": {**cfg["grid"], "methods": ["full", "ia3"]}})
    with pytest.raises(ConfigError, match=r"unknown variant 'qq'; valid: q, k, v"):
        runs({**cfg, "grid": {**cfg["grid"], "ablations": {"aclip": {"variants": ["qq"]}}}})


# ----------------------------------------------------------------------------- malformed YAML
@pytest.fixture
def params_copy(tmp_path, monkeypatch) -> Path:
    dest = tmp_path / "params"
    shutil.copytree(paths.PARAMS, dest)
    monkeypatch.setattr(paths, "PARAMS", dest)
    return dest


def test_malformed_profile_yaml(params_copy):
    f = params_copy / "profiles" / "smoke.yaml"
    f.write_text("extends: mini\ngrid:\n  tasks: [objects, pathology\n  seeds: [0]\n")
    with pytest.raises(ConfigError, match=rf"(?s)malformed YAML in {f}: .*line 3.*Fix the syntax of that file"):
        common.setup("smoke")


def test_malformed_stage_yaml(params_copy):
    f = params_copy / "methods" / "lora.yaml"
    f.write_text("lr_grid: [1.0e-1]\noptions: {rank: 8, alpha: 16\n")
    with pytest.raises(ConfigError, match=rf"malformed YAML in {f}"):
        config.method_params("lora", "smoke")


def test_yaml_that_is_not_a_mapping(params_copy):
    f = params_copy / "02_finetune.yaml"
    f.write_text("- epochs: 2\n- batch_size: 64\n")
    with pytest.raises(ConfigError, match=r"must hold a mapping of parameters, not list"):
        config.stage_params("02_finetune", "smoke")


# ----------------------------------------------------------------------------- schema: wrong parameters
def _edit(f: Path, old: str, new: str) -> None:
    text = f.read_text()
    assert old in text, f"{old!r} not in {f}"
    f.write_text(text.replace(old, new, 1))


def test_misspelt_profile_key_is_refused_with_a_suggestion(params_copy):
    f = params_copy / "profiles" / "smoke.yaml"
    _edit(f, "grid:", "gird:")
    with pytest.raises(ConfigError, match=rf"{f}: unknown key 'gird' \(did you mean 'grid'\?\); valid keys: "
                                          r"description, extends, device, data, world, model, grid"):
        config.load_profile("smoke")


def test_misspelt_nested_profile_key(params_copy):
    f = params_copy / "profiles" / "mini.yaml"
    _edit(f, "    n_pairs: 50000", "    n_pair: 50000")
    with pytest.raises(ConfigError, match=r"mini.yaml: unknown key 'world.corpus.n_pair' \(did you mean 'n_pairs'\?\)"):
        config.load_profile("smoke")      # smoke extends mini: the parent's file is named


@pytest.mark.parametrize("rel,old,new,match", [
    ("methods/lora.yaml", "lr_grid: [", "learning_rate: [",
     r"lora.yaml: unknown key 'learning_rate'; valid keys: lr_grid, options, variants"),
    ("methods/lora.yaml", "options:", "option:", r"lora.yaml: unknown key 'option' \(did you mean 'options'\?\)"),
    ("paper/methods/full.yaml", "lr_grid:", "epochs: 3\nlr_grid:", r"full.yaml: unknown key 'epochs'"),
])
def test_unknown_key_in_method_file(params_copy, rel, old, new, match):
    _edit(params_copy / rel, old, new)
    profile = "paper" if rel.startswith("paper/") else "smoke"
    with pytest.raises(ConfigError, match=match):
        config.method_params(rel.split("/")[-1][:-5], profile)


def test_unknown_key_in_stage_file(params_copy):
    f = params_copy / "mini" / "02_finetune.yaml"
    _edit(f, "epochs: 3", "epoch: 3")
    with pytest.raises(ConfigError, match=rf"{f}: unknown key 'epoch' \(did you mean 'epochs'\?\)"):
        config.stage_params("02_finetune", "mini")
    with pytest.raises(ConfigError, match=r"unknown key 'epoch'"):
        config.check_all("mini")


@pytest.mark.parametrize("old,new,match", [
    ("seeds: [0]\n  ablations", "seeds: [0, 0]\n  ablations", r"grid.seeds: lists 0 more than once"),
    ("tasks: [objects, pathology]", "tasks: [objects, pathology, objects]", r"grid.tasks: lists 'objects' more than once"),
    ("variants: [q, first2]", "variants: [q, first2, q]", r"grid.ablations.aclip.variants: lists 'q' more than once"),
    ("sizes: {train: 120, val: 40, test: 60}", "sizes: {train: 120, val: 0, test: 60}", r"world.sizes.val: must be >= 1, got 0"),
    ("n_pairs: 3000", "n_pairs: -5", r"world.corpus.n_pairs: must be >= 1, got -5"),
    ("seeds: [0]\n  ablations", "seeds: ['0']\n  ablations", r"grid.seeds\[0\]: must be an integer, got '0'"),
    ("tasks: [objects, pathology]", "tasks: objects", r"grid.tasks: must be a list, got 'objects'"),
])
def test_bad_profile_values(params_copy, old, new, match):
    _edit(params_copy / "profiles" / "smoke.yaml", old, new)
    with pytest.raises(ConfigError, match=match):
        config.load_profile("smoke")


def test_duplicate_task_in_world(params_copy):
    _edit(params_copy / "profiles" / "mini.yaml", "tasks: [objects, digits,", "tasks: [objects, objects, digits,")
    with pytest.raises(ConfigError, match=r"mini.yaml: world.tasks: lists 'objects' more than once"):
        config.load_profile("mini")


@pytest.mark.parametrize("rel,old,new,match", [
    ("methods/lora.yaml", "lr_grid: [1.0e-1,", "lr_grid: [-1.0e-1,", r"lr_grid\[0\]: must be > 0, got -0.1"),
    ("methods/lora.yaml", "lr_grid: [1.0e-1,", "lr_grid: [1e-4,", r"lr_grid\[0\]: must be a number, got '1e-4' \(str\).*1.0e-4"),
    ("methods/lora.yaml", "lr_grid: [1.0e-1, 3.0e-1, 1.0, 3.0]", "lr_grid: [1.0e-2, 1.0e-2]", r"lr_grid: lists 0.01 more than once"),
    ("methods/lora.yaml", "options: {targets: qv, rank: 16, alpha: null, scale: 0.2, init: gaussian, init_std: 0.02}", "options: [8, 16]", r"options: must be a mapping"),
    ("methods/aclip.yaml", "q: {qkv: q}", "q: qkv", r"variants.q: must be a mapping"),
    ("02_finetune.yaml", "momentum: 0.9", "momentum: 1.5", r"momentum: must be < 1, got 1.5"),
    ("02_finetune.yaml", "cosine: true", "cosine: yes please", r"cosine: must be true/false"),
    ("00_pretrain.yaml", "epochs: 2", "epochs: 0", r"epochs: must be >= 1, got 0"),
])
def test_bad_stage_and_method_values(params_copy, rel, old, new, match):
    _edit(params_copy / rel, old, new)
    with pytest.raises(ConfigError, match=match):
        config.check_all("smoke")


def test_lr_grid_is_accepted(params_copy):
    _edit(params_copy / "methods" / "lora.yaml", "lr_grid: [1.0e-1, 3.0e-1, 1.0, 3.0]", "lr_grid: [1.0e-2, 1.0e-1, 1]")
    assert config.method_params("lora", "smoke")["lr_grid"] == [0.01, 0.1, 1.0]


def test_duplicate_key_in_one_mapping(params_copy):
    f = params_copy / "methods" / "lora.yaml"
    f.write_text("lr_grid: [1.0e-1]\noptions: {rank: 8, alpha: 16}\nlr_grid: [1.0e-2]\n")
    with pytest.raises(ConfigError, match=rf"{f}: duplicate key 'lr_grid' at line 3 \(first at line 1\)"):
        config.method_params("lora", "smoke")


def test_yaml_aliases_are_refused(params_copy):
    """No alias expansion (a 'billion laughs' file would otherwise take the memory)."""
    f = params_copy / "profiles" / "smoke.yaml"
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    f.write_text(bomb)
    with pytest.raises(ConfigError, match=rf"{f}: YAML anchor &a at line 1: anchors and aliases are not allowed"):
        config.load_profile("smoke")
    f.write_text("extends: mini\ngrid: {tasks: [objects], seeds: *s}\n")
    with pytest.raises(ConfigError, match=r"YAML alias \*s at line 2"):
        config.load_profile("smoke")


def test_non_utf8_file_is_named(params_copy):
    f = params_copy / "mini" / "02_finetune.yaml"
    f.write_bytes(b"epochs: 4\n# caf\xe9\nbatch_size: 128\n")
    with pytest.raises(ConfigError, match=rf"{f} is not UTF-8 text: byte 0xe9 at line 2"):
        config.stage_params("02_finetune", "mini")


def test_unreadable_file_is_named(params_copy, monkeypatch):
    f = params_copy / "methods" / "bitfit.yaml"
    real = Path.read_bytes

    def read_bytes(self):
        if self == f:
            raise PermissionError(13, "Permission denied")
        return real(self)
    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(ConfigError, match=rf"cannot read parameter file {f}: Permission denied"):
        config.method_params("bitfit", "smoke")


@pytest.mark.parametrize("name,match", [
    ("", r"no profile given \(PROFILE is empty\); valid profiles: colab, mini, paper, smoke"),
    ("  ", r"no profile given"),
    ("../smoke", r"'../smoke' is not a profile name .*no path.*valid profiles: colab, mini, paper, smoke"),
    ("profiles/smoke", r"is not a profile name"),
    ("/", r"is not a profile name"),
    ("smok", r"unknown profile 'smok' \(did you mean 'smoke'\?\); valid profiles: colab, mini, paper, smoke"),
])
def test_profile_name_is_checked(name, match):
    with pytest.raises(ConfigError, match=match):
        config.check_profile_name(name)
    with pytest.raises(ConfigError, match=match):
        config.load_profile(name)


def test_profile_name_cli_exits_non_zero():
    r = subprocess.run([str(ROOT / ".venv/bin/python"), "-m", "lib.config", "profile-name", ""], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "valid profiles: colab, mini, paper, smoke" in r.stderr
    r = subprocess.run([str(ROOT / ".venv/bin/python"), "-m", "lib.config", "profile-name", "smoke"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_check_cli_names_the_bad_file(params_copy):
    """`python -m lib.config check` is what Make runs before building the grid."""
    _edit(params_copy / "methods" / "full.yaml", "lr_grid:", "learning_rate: 1.0e-2\nlr_grid:")
    assert config.main(["check", "smoke"]) == 1
    assert config.main(["check", "paper"]) == 1


def test_extends_cycle_and_missing_keys(params_copy):
    _edit(params_copy / "profiles" / "mini.yaml", "description:", "extends: smoke\ndescription:")
    with pytest.raises(ConfigError, match=r"'extends' makes a cycle: smoke -> mini -> smoke"):
        config.load_profile("smoke")
    (params_copy / "profiles" / "bare.yaml").write_text("grid: {seeds: [0]}\n")
    with pytest.raises(ConfigError, match=r"bare.yaml: top level: missing key\(s\) model"):
        config.load_profile("bare")


def test_overlay_semantics_mapping_merges_list_replaces_replace_clears(params_copy):
    f = params_copy / "profiles" / "smoke.yaml"
    base = f.read_text()
    # mapping: merged key by key (the ablation keeps mini's aclip entry merged with smoke's)
    assert config.load_profile("smoke")["grid"]["ablations"]["aclip"]["variants"] == ["q", "first2"]
    assert config.load_profile("smoke")["world"]["design"] == config.load_profile("mini")["world"]["design"]
    # an empty mapping merges nothing: the inherited mapping stays ...
    f.write_text(base.replace("  ablations:\n    aclip:", "  ablations: {}\n  old_ablations:\n    aclip:"))
    with pytest.raises(ConfigError, match=r"unknown key 'grid.old_ablations' \(did you mean 'ablations'\?\)"):
        config.load_profile("smoke")
    f.write_text(base.split("  ablations:")[0] + "  ablations: {}\n")
    assert config.load_profile("smoke")["grid"]["ablations"] == config.load_profile("mini")["grid"]["ablations"]
    # ... and !replace clears it (or replaces it whole)
    f.write_text(base.split("  ablations:")[0] + "  ablations: !replace {}\n")
    assert config.load_profile("smoke")["grid"]["ablations"] == {}
    f.write_text(base.split("  ablations:")[0] + "  ablations: !replace {bitfit: {variants: [first2]}}\n")
    assert config.load_profile("smoke")["grid"]["ablations"] == {"bitfit": {"variants": ["first2"]}}
    # a list replaces; an empty list is refused (it would run nothing) ...
    f.write_text(base.split("  ablations:")[0] + "  ablations: !replace {bitfit: {variants: []}}\n")
    with pytest.raises(ConfigError, match=r"smoke.yaml: grid.ablations.bitfit.variants: must not be empty: "
                                          r"list at least one variant, or remove this method's ablation"):
        config.load_profile("smoke")
    # ... except grid.tasks, whose empty list is documented: every task of the world (docs/params.md)
    f.write_text(base.replace("tasks: [objects, pathology]", "tasks: []"))
    assert config.load_profile("smoke")["grid"]["tasks"] == []
    from lib.pipeline.grid import runs
    assert {r.task for r in runs(config.load_profile("smoke"))} == set(config.load_profile("smoke")["world"]["tasks"])
    # null only where a key is nullable
    f.write_text(base + "model: null\n")
    with pytest.raises(ConfigError, match=r"model: must be a mapping, got null"):
        config.load_profile("smoke")
    f.write_text("extends: mini\ngrid: {seeds: !replace [1]}\n")
    with pytest.raises(ConfigError, match=r"!replace at line \d+ must tag a mapping"):
        config.load_profile("smoke")


def test_stage_overlays_come_from_the_profiles_own_folder_only():
    """smoke extends mini, but params/mini/<stage>.yaml does not apply to smoke (results must not move)."""
    assert config.stage_params("02_finetune", "smoke")["epochs"] == 2
    assert config.stage_params("02_finetune", "mini")["epochs"] == 3
    assert config.param_files("02_finetune", "smoke", "lora") == [
        paths.PARAMS / "02_finetune.yaml", paths.PARAMS / "methods" / "lora.yaml"]
    assert config.param_files("02_finetune", "paper", "lora")[-1] == paths.PARAMS / "paper" / "methods" / "lora.yaml"
    assert config.method_params("lora", "paper")["options"] == config.method_params("lora", "smoke")["options"]
    with pytest.raises(ConfigError, match=r"unknown stage '02_finetun' \(did you mean '02_finetune'\?\)"):
        config.stage_params("02_finetun", "smoke")
    with pytest.raises(ConfigError, match=r"unknown method 'lroa' \(did you mean 'lora'\?\)"):
        config.method_params("lroa", "smoke")


def test_params_cli_prints_what_the_loader_merges(capsys):
    import yaml
    assert config.main(["params", "02_finetune", "paper", "lora"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == {"stage": config.stage_params("02_finetune", "paper"),
                                                        "method": config.method_params("lora", "paper")}


# ----------------------------------------------------------------------------- types and ranges
@pytest.mark.parametrize("hp,match", [
    ({"lr": -1.0e-3}, r"hyperparameters .*: lr: must be > 0, got -0.001"),
    ({"lr": 0}, r"lr: must be > 0"),
    ({"lr": "1e-4"}, r"lr: must be a number, got '1e-4' \(str\).*write floats like 1.0e-4"),
    ({"epochs": 0}, r"epochs: must be >= 1"),
    ({"epochs": 2.5}, r"epochs: must be an integer"),
    ({"batch_size": True}, r"batch_size: must be an integer, got the boolean True"),
    ({"momentum": -0.9}, r"momentum: must be >= 0"),
    ({"weight_decay": "1e-4"}, r"weight_decay: must be a number"),
    ({"cosine": "yes"}, r"cosine: must be true/false"),
    ({"lr_decay": 0.5}, r"unknown key 'lr_decay'.*valid keys: lr, epochs"),
])
def test_bad_hyperparameters(no_expensive_work, hp, match):
    with pytest.raises(ConfigError, match=match):
        finetune(smoke_cfg(), hp=hp)


def test_bad_seed(no_expensive_work):
    with pytest.raises(ConfigError, match=r"'seed' must be >= 0"):
        finetune(smoke_cfg(), seed=-1)


@pytest.mark.parametrize("method,options,match", [
    ("lora", {"rank": 0}, r"option rank=0 must be a positive integer"),
    ("lora", {"rank": "8"}, r"'rank' must be int"),
    ("lora", {"alpha": -1.0}, r"'alpha' must be > 0"),
    ("lora", {"dropout": 0.1}, r"unknown option\(s\) \['dropout'\] for method 'lora'; valid options: rank, alpha"),
    ("clip_adapter", {"ratio": 1.5}, r"ratio=1.5 must lie in \[0, 1\]"),
    ("aclip", {"qkv": "qx"}, r"qkv='qx' must be a non-empty subset"),
    ("aclip", {"towers": "vision"}, r"'towers'='vision' is not one of"),
    ("full", {"rank": 4}, r"this method has no options"),
])
def test_bad_method_options(no_expensive_work, method, options, match):
    with pytest.raises(ConfigError, match=match):
        finetune(smoke_cfg(), method=method, options=options)


def test_bad_variant_options(no_expensive_work):
    with pytest.raises(ConfigError, match=r"option blocks=0 must be >= 1"):
        finetune(smoke_cfg(), method="aclip", variant="none", variants={"none": {"blocks": 0}})


@pytest.mark.parametrize("stage", ["01_zero_shot", "03_evaluate"])
def test_bad_batch_size_other_stages(params_copy, no_expensive_work, stage):
    f = params_copy / f"{stage}.yaml"
    f.write_text(f.read_text().replace("batch_size: 256", "batch_size: 0"))
    fn = {"01_zero_shot": lambda: zsmod.zero_shot_stage(smoke_cfg(), progress=False),
          "03_evaluate": lambda: evaluate_unit(smoke_cfg(), "objects", "lora", progress=False)}[stage]
    with pytest.raises(ConfigError, match=rf"{stage}.yaml: batch_size: must be >= 1, got 0"):
        fn()


def test_bad_pretrain_hp(params_copy, no_expensive_work):
    f = params_copy / "00_pretrain.yaml"
    f.write_text(f.read_text().replace("lr: 1.0e-3", 'lr: "5e-4"'))
    with pytest.raises(ConfigError, match=r"lr.*must be"):
        pt.pretrain_stage(smoke_cfg(), progress=False)


# ----------------------------------------------------------------------------- the real profile's data
def paper_cfg(root, **data_overrides) -> dict:
    cfg = config.load_profile("paper")
    cfg["data"] = {**cfg["data"], "root": str(root), **data_overrides}
    return cfg


@pytest.mark.parametrize("shots,match", [(0, r"'data.shots' must be > 0"), (-16, r"'data.shots' must be > 0"),
                                         ("16", r"'data.shots' must be int")])
def test_paper_bad_shots(tmp_path, no_expensive_work, shots, match):
    with pytest.raises(ConfigError, match=match):
        zsmod.zero_shot_stage(paper_cfg(tmp_path, shots=shots), progress=False)


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_paper_missing_or_empty_data_root(tmp_path, no_expensive_work, kind):
    root = tmp_path / "data"
    if kind == "empty":
        root.mkdir()
    cfg = paper_cfg(root)
    for call in (lambda: zsmod.zero_shot_stage(cfg, progress=False),
                 lambda: finetune(cfg, task="eurosat", method="bitfit"),
                 lambda: evaluate_unit(cfg, "eurosat", "bitfit", progress=False)):
        with pytest.raises(FileNotFoundError) as err:
            call()
        msg = str(err.value)
        if "zero_shot.csv" in msg:         # evaluate: its first input is the zero-shot table
            continue
        assert str(root) in msg and "download" in msg.lower(), msg


def test_paper_empty_class_folder(tmp_path, no_expensive_work):
    import fixtures_real as fx
    root = fx.make_eurosat(tmp_path / "data", per_class=2)
    (tmp_path / "data" / "eurosat" / "2750" / "Forest").mkdir(exist_ok=True)
    for f in (tmp_path / "data" / "eurosat" / "2750" / "Forest").iterdir():
        f.unlink()
    cfg = paper_cfg(root, tasks=["eurosat"])
    with pytest.raises(ValueError, match="Forest"):
        finetune(cfg, task="eurosat", method="bitfit")


def test_world_not_generated(monkeypatch):
    """Embedded profile, empty build folder: the data check names the command that makes the world."""
    for mod in (ft, zsmod):
        monkeypatch.setattr(mod, "base_model", lambda cfg: (_ for _ in ()).throw(Tripwire("model loaded")))
    with pytest.raises(FileNotFoundError, match=r"embedded world is not generated.*make world PROFILE=smoke"):
        finetune(smoke_cfg())
    with pytest.raises(FileNotFoundError, match=r"embedded world is not generated"):
        zsmod.zero_shot_stage(smoke_cfg(), progress=False)


# ----------------------------------------------------------------------------- corrupt files
def test_corrupt_image_file(tmp_path):
    from PIL import Image
    good, trunc, junk = tmp_path / "good.jpg", tmp_path / "truncated.jpg", tmp_path / "junk.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    junk.write_bytes(b"this is not an image\n" * 10)
    split = data.Split("t", "d", "test", np.array([0, 1, 0]), ["a", "b"], ["a photo of a {}."],
                       files=[str(good), str(trunc), str(junk)])
    ds = data.FileImages(split, preprocess=lambda im: torch.zeros(3))
    assert ds[0][1] == 0
    for i, f in ((1, trunc), (2, junk)):
        with pytest.raises(ValueError, match=rf"corrupt or unreadable image file {f}"):
            ds[i]
    bundle = models.Bundle(None, lambda im: torch.zeros(3), None, "x", None, 32, (0,), (1,), torch.device("cpu"))
    with pytest.raises(ValueError, match=rf"corrupt or unreadable image file {trunc}"):
        list(data.iterate(split, bundle, batch_size=3))


@pytest.fixture(scope="module")
def other_arch_checkpoints(tmp_path_factory):
    """Checkpoints of ClipMis-Tiny variants: narrower vision tower, shallower text tower."""
    import open_clip
    d = tmp_path_factory.mktemp("archs")
    base = json.loads((models.MODEL_CONFIGS / "ClipMis-Tiny.json").read_text())
    narrow = json.loads(json.dumps(base))
    narrow["vision_cfg"].update(width=64, head_width=16)
    shallow = json.loads(json.dumps(base))
    shallow["text_cfg"]["layers"] = 2
    for name, c in (("ClipMisTest-Narrow", narrow), ("ClipMisTest-Shallow", shallow)):
        (d / f"{name}.json").write_text(json.dumps(c))
    open_clip.add_model_config(d)
    out = {}
    for name in ("ClipMisTest-Narrow", "ClipMisTest-Shallow"):
        out[name] = models.save_checkpoint(models.create(name, device="cpu", seed=0).model,
                                           d / f"{name}.safetensors")
    return out


@pytest.mark.parametrize("name,detail", [("ClipMisTest-Narrow", "size mismatch"),
                                         ("ClipMisTest-Shallow", "Missing key")])
def test_checkpoint_of_another_architecture(other_arch_checkpoints, name, detail):
    ck = other_arch_checkpoints[name]
    with pytest.raises(ConfigError, match=rf"(?s)checkpoint {ck} does not fit model 'ClipMis-Tiny' "
                                          rf"\(another architecture\?\).*{detail}"):
        models.create("ClipMis-Tiny", pretrained=str(ck), device="cpu")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the pretraining stage first"):
        models.create("ClipMis-Tiny", pretrained=str(tmp_path / "nope.safetensors"), device="cpu")
    with pytest.raises(FileNotFoundError, match=r"no complete pretrained checkpoint .*make pretrain PROFILE=smoke"):
        common.base_model(smoke_cfg())


# ----------------------------------------------------------------------------- divergence keeps the old run
class TinySource(data.DatasetSource):
    """One 3-class task with a colour cue, 24 train / 12 val images of 32x32 (no world needed)."""
    classes = ["red thing", "green thing", "blue thing"]

    def __init__(self, cfg):
        self.cfg = cfg

    def tasks(self):
        return {"toy": data.TaskSpec("toy", self.classes, ["a photo of a {}."], "id", ["shifted"])}

    def load(self, task, domain, split):
        spec = self.task(task)
        n = {"train": 24, "val": 12, "test": 12}[split]
        rng = np.random.default_rng(("train", "val", "test").index(split))
        y = np.arange(n) % 3
        x = rng.integers(0, 100, (n, 32, 32, 3), dtype=np.uint8)
        x[np.arange(n), :, :, y] += 150
        return data.Split(task, domain, split, y, spec.classnames, spec.templates, images=x,
                          fingerprint=f"toy-{split}")


data.register_source("bad-input-tiny")(TinySource)


def test_diverging_run_is_recorded_not_raised(tmp_path):
    """A rate at which the loss becomes non-finite finishes as a run marked ``nonfinite`` (the
    aggregate marks it collapsed), so a learning-rate sweep survives its diverging points."""
    cfg = {"name": "badinput", "data": {"source": "bad-input-tiny"}, "device": "cpu",
           "model": {"name": "ClipMis-Tiny", "pretrained": None}}   # random init: no checkpoint needed
    first = finetune(cfg, task="toy", method="full", hp={"epochs": 2, "lr": 1.0e-3})
    assert first["reused"] is False and first["nonfinite"] is False
    bad = finetune(cfg, task="toy", method="full", hp={"epochs": 2, "lr": 1.0e30})
    assert bad["reused"] is False and bad["nonfinite"] is True and bad["best_epoch"] == 0
    rdir = RunId("toy", "full", "default", 0).dir("badinput")
    assert {"row.json", "meta.json", "trainable.safetensors"} <= {p.name for p in rdir.iterdir()}
    assert json.loads((rdir / "meta.json").read_text())["nonfinite"]["epoch"] == 1
    again = finetune(cfg, task="toy", method="full", hp={"epochs": 2, "lr": 1.0e-3})
    assert again["reused"] is False and again["best_val_acc"] == first["best_val_acc"]


def test_failure_while_saving_keeps_the_earlier_run(tmp_path, monkeypatch):
    """A crash while the new run's files are written (here: disk full) leaves the old run whole."""
    from lib import train
    cfg = {"name": "badinput", "data": {"source": "bad-input-tiny"}, "device": "cpu",
           "model": {"name": "ClipMis-Tiny", "pretrained": None}}
    finetune(cfg, task="toy", method="bitfit", hp={"lr": 1.0e-2})
    rdir = RunId("toy", "bitfit", "default", 0).dir("badinput")
    files = {p.name: p.read_bytes() for p in rdir.iterdir()}
    real_save = train.save_run

    def save_then_fail(res, run_dir, meta=None):
        real_save(res, run_dir, meta)
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(train, "save_run", save_then_fail)
    with pytest.raises(OSError, match="No space left"):
        finetune(cfg, task="toy", method="bitfit", hp={"lr": 2.0e-2})
    assert {p.name: p.read_bytes() for p in rdir.iterdir()} == files


# ----------------------------------------------------------------------------- through Make + papermill
def _copy_repo(dest: Path, with_smoke_build: Path | None) -> Path:
    """The working tree (sources with their mtimes, and .git) without venv or builds."""
    ignore = shutil.ignore_patterns(".venv", "build", "__pycache__", ".pytest_cache", "*.tmp.ipynb",
                                    "*.failed.ipynb", "paper_figures.tmp", ".ipynb_checkpoints")
    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)
    if with_smoke_build is not None:
        shutil.copytree(with_smoke_build, dest / "build" / "smoke", symlinks=True)
    # never let Make reinstall the shared venv from the copy
    return dest


def _make(repo: Path, *args, timeout=600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CLIPMIS_BUILD", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    # PY= this interpreter: the copy never builds or reinstalls an environment
    return subprocess.run(["make", "--no-print-directory", f"PY={sys.executable}", *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.stat().st_size)
            for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_make_stops_on_bad_param_and_keeps_results(tmp_path):
    """`lr: 1e-4` (YAML reads a string) in a method's params: Make stops while building the grid, before
    any notebook runs, names the file and the fix, and nothing earlier changes."""
    src_build = Path(os.environ.get("CLIPMIS_SMOKE_BUILD", ROOT / "build" / "smoke"))
    if not (src_build / "03_evaluate.ipynb").exists():
        pytest.skip(f"needs a finished smoke build in {src_build} (make smoke; `make test` makes it first)")
    repo = _copy_repo(tmp_path / "repo", src_build)
    b = repo / "build" / "smoke"
    before = _snapshot(b)
    f = repo / "params" / "methods" / "lora.yaml"
    text = f.read_text()
    assert "lr_grid: [1.0e-1," in text
    f.write_text(text.replace("lr_grid: [1.0e-1,", "lr_grid: [1e-4,"))

    r = _make(repo, "reproduce", "PROFILE=smoke", "JOBS=2")
    assert r.returncode != 0, r.stdout[-3000:]
    assert "cannot be built" in r.stderr and "params/methods/lora.yaml" in r.stderr and "1e-4" in r.stderr, \
        r.stderr[-3000:]
    assert " -m papermill " not in r.stdout, "a notebook ran although the grid could not be built"
    after = _snapshot(b)
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert not changed, f"earlier results changed or disappeared: {changed}"
    assert not sorted(set(after) - set(before)), "the failed make wrote files"


# ----------------------------------------------------------------------------- everything checked before work starts
def _grid_make(capsys) -> str:
    """What Make runs first (to write grid.mk): the whole configuration is checked there."""
    assert grid_main(["smoke", "--make"]) == 2
    out = capsys.readouterr()
    assert out.out == "", "grid.mk was printed although the configuration is refused"
    return out.err


def grid_main(argv):
    from lib.pipeline.grid import main
    return main(argv)


@pytest.mark.parametrize("rel,old,new,match", [
    ("02_finetune.yaml", "epochs: 2", "epochs: 0", r"params/02_finetune.yaml: epochs: must be >= 1, got 0"),
    ("02_finetune.yaml", "batch_size: 64", "batch_size: 0", r"params/02_finetune.yaml: batch_size: must be >= 1, got 0"),
    ("00_pretrain.yaml", "epochs: 2", "epochs: 0", r"params/00_pretrain.yaml: epochs: must be >= 1, got 0"),
    ("03_evaluate.yaml", "batch_size: 256", "batch_size: 0", r"params/03_evaluate.yaml: batch_size: must be >= 1"),
])
def test_stage_file_problems_stop_the_grid_before_any_work(params_copy, no_expensive_work, capsys, rel, old, new, match):
    """Refused only inside the notebooks after pretraining (75-139 s) before: now while Make builds grid.mk."""
    _edit(params_copy / rel, old, new)
    err = _grid_make(capsys)
    assert "cannot be built" in err and __import__("re").search(match, err), err


def test_an_emptied_stage_file_is_refused_with_its_missing_keys(params_copy, no_expensive_work, capsys):
    (params_copy / "02_finetune.yaml").write_text("# emptied\n")
    err = _grid_make(capsys)
    assert "params/02_finetune.yaml: top level: missing key(s) epochs, batch_size, momentum" in err, err
    assert "add them" in err
    with pytest.raises(ConfigError, match=r"missing key\(s\) epochs"):
        config.stage_params("02_finetune", "smoke")
    # an empty overlay is fine: the defaults hold every key
    (params_copy / "02_finetune.yaml").write_text((paths.ROOT / "params" / "02_finetune.yaml").read_text())
    (params_copy / "smoke").mkdir(exist_ok=True)
    (params_copy / "smoke" / "02_finetune.yaml").write_text("")
    assert config.stage_params("02_finetune", "smoke") == config.stage_params("02_finetune", "mini") | {"epochs": 2}


def test_every_problem_is_reported_once_each(params_copy, no_expensive_work, capsys):
    _edit(params_copy / "02_finetune.yaml", "epochs: 2", "epochs: 0")
    _edit(params_copy / "00_pretrain.yaml", "batch_size: 128", "batch_size: 0")
    _edit(params_copy / "methods" / "lora.yaml", "lr_grid:", "learning_rate: 1.0e-2\nlr_grid:")
    err = _grid_make(capsys)
    assert "3 problems in the parameters of profile 'smoke'" in err, err
    for msg in ("params/02_finetune.yaml: epochs: must be >= 1", "params/00_pretrain.yaml: batch_size: must be >= 1",
                "params/methods/lora.yaml: unknown key 'learning_rate'"):
        assert err.count(msg) == 1, (msg, err)


def test_unknown_ablation_task_is_refused_by_the_grid(params_copy, no_expensive_work, capsys):
    _edit(params_copy / "profiles" / "smoke.yaml", "      tasks: [objects]", "      tasks: [objects, cifar10]")
    err = _grid_make(capsys)
    assert "grid.ablations.aclip.tasks names unknown task 'cifar10'" in err and "valid tasks: objects" in err, err


@pytest.mark.parametrize("old,new,match", [
    ("  seeds: [0]\n  ablations:", "  methods: []\n  seeds: [0]\n  ablations:",
     r"grid.methods: must not be empty: list at least one method"),
    ("      tasks: [objects]", "      tasks: []", r"grid.ablations.aclip.tasks: must not be empty: omit 'tasks'"),
    ("variants: [q, first2]", "variants: []", r"grid.ablations.aclip.variants: must not be empty"),
    ("  seeds: [0]\n  ablations:", "  seeds: []\n  ablations:", r"grid.seeds: must not be empty: list at least one seed"),
])
def test_empty_lists_are_refused_unless_documented(params_copy, no_expensive_work, capsys, old, new, match):
    """`methods: []` re-ran the DAG and ended in KeyError: 'id_gain'; now refused at load."""
    _edit(params_copy / "profiles" / "smoke.yaml", old, new)
    with pytest.raises(ConfigError, match=match):
        config.load_profile("smoke")
    assert match.split(":")[0] in _grid_make(capsys)


def test_empty_grid_tasks_means_every_task_as_documented(params_copy):
    _edit(params_copy / "profiles" / "smoke.yaml", "tasks: [objects, pathology]", "tasks: []")
    from lib.pipeline.grid import units
    assert sorted(units(config.load_profile("smoke"))) == sorted(config.load_profile("smoke")["world"]["tasks"])
    assert "`grid.tasks` | every task of the data source" in (paths.ROOT / "docs" / "params.md").read_text()


@pytest.mark.parametrize("jobs", ["abc", "0", "-1", "1.5", "2 3", ""])
def test_make_refuses_a_jobs_that_is_not_a_positive_integer(jobs):
    """JOBS=abc gave a bash 'division by 0'."""
    r = subprocess.run(["make", "-n", "--no-print-directory", "help", f"JOBS={jobs}", f"PY={sys.executable}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert f"JOBS='{jobs}' is not a positive integer" in r.stderr and "write e.g. JOBS=2" in r.stderr, r.stderr
    assert "division" not in r.stderr


def test_make_accepts_a_positive_jobs():
    r = subprocess.run(["make", "-n", "--no-print-directory", "help", "JOBS=12", f"PY={sys.executable}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


@pytest.mark.slow
def test_make_checks_a_changed_stage_file_before_any_work(tmp_path):
    """grid.mk depends on every stage file: after a good dry run, `epochs: 0` in params/02_finetune.yaml
    stops the next make while it rewrites grid.mk, naming the file and the key, before any notebook."""
    repo = tmp_path / "repo"
    for name in ("lib", "params", "notebooks"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "Makefile", repo / "Makefile")
    env = {k: v for k, v in os.environ.items() if k not in ("CLIPMIS_BUILD", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}

    def dry_run():
        return subprocess.run(["make", "--no-print-directory", "dry-run", "PROFILE=smoke", f"PY={sys.executable}"],
                              cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    r = dry_run()
    assert r.returncode == 0 and " -m papermill " in r.stdout, r.stderr[-2000:]
    grid_mk = repo / "build" / "smoke" / "grid.mk"
    f = repo / "params" / "02_finetune.yaml"
    f.write_text(f.read_text().replace("epochs: 2", "epochs: 0"))
    os.utime(f, (grid_mk.stat().st_mtime + 5,) * 2)
    r = dry_run()
    assert r.returncode != 0
    assert "params/02_finetune.yaml: epochs: must be >= 1, got 0" in r.stderr, r.stderr[-2000:]
    assert " -m papermill " not in r.stdout
