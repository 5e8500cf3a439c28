"""Notebooks name the work only (profile, task, method); every value comes from params/ via lib.config."""
import ast
import json
from pathlib import Path

import pytest
import yaml

from lib import config, paths

NOTEBOOKS = sorted(paths.NOTEBOOKS.glob("*.ipynb"))
STAGES = [nb.stem for nb in NOTEBOOKS]


def param_cells(nb_path):
    nb = json.loads(Path(nb_path).read_text())
    return nb, [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]


def parameters(nb_path) -> dict:
    _, cells = param_cells(nb_path)
    src = "".join(cells[0]["source"])
    out = {}
    for node in ast.parse(src).body:
        assert isinstance(node, ast.Assign), f"{nb_path.name}: parameters cell must hold plain assignments"
        out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


def test_there_are_five_stage_notebooks():
    assert STAGES == ["00_pretrain", "01_zero_shot", "02_finetune", "03_evaluate", "04_figures"]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_parameters_cell_and_stripped(nb):
    doc, cells = param_cells(nb)
    assert len(cells) == 1, f"{nb.name} must have exactly one cell tagged 'parameters'"
    assert parameters(nb)["profile"] == "smoke", "defaults must be the fast smoke values"
    for c in doc["cells"]:
        if c["cell_type"] == "code":
            assert c.get("outputs") == [] and c.get("execution_count") is None, f"{nb.name} is not stripped"


IDENTITY = {"profile", "task", "method", "seed", "publish"}


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_only_identifies_the_work(nb):
    extra = set(parameters(nb)) - IDENTITY
    assert not extra, (f"{nb.name}: parameters {sorted(extra)} belong in params/ (read through lib.config), "
                       f"not in the notebook")


def test_finetune_notebook_default_is_a_smoke_unit():
    from lib.pipeline import grid
    p = parameters(paths.NOTEBOOKS / "02_finetune.ipynb")
    assert set(p) == {"profile", "task"} and p["profile"] == "smoke"
    assert p["task"] in grid.units(config.load_profile("smoke"))


@pytest.mark.parametrize("profile", config.available_profiles())
@pytest.mark.parametrize("stage", STAGES)
def test_stage_params_load_for_every_profile(profile, stage):
    config.stage_params(stage, profile)


@pytest.mark.parametrize("profile", config.available_profiles())
def test_every_method_of_the_grid_has_a_valid_recipe(profile):
    from lib.pipeline import finetune, grid
    from lib.train import resolve_hp
    cfg = config.load_profile(profile)
    for t, m in grid.evaluation_units(grid.runs(cfg)):
        rates = finetune.lr_grid(profile, m)
        assert rates == sorted(rates) and all(lr > 0 for lr in rates)
        hp = resolve_hp({**finetune.recipe(profile), "lr": rates[0]})
        assert hp["lr"] == rates[0] and hp["epochs"] > 0


@pytest.mark.parametrize("profile", ["mini", "paper"])
def test_study_grids_have_four_half_decade_rates(profile):
    """Study v2: every method sweeps at least 4 rates, each about half a decade from the next."""
    import math
    from lib.methods import METHODS
    from lib.pipeline import finetune
    for m in METHODS:
        rates = finetune.lr_grid(profile, m)
        assert len(rates) >= 4, (profile, m, rates)
        steps = [math.log10(b / a) for a, b in zip(rates, rates[1:])]
        assert all(0.45 <= x <= 0.55 for x in steps), (profile, m, rates)


def test_methods_share_epochs_and_batch_size():
    for f in [*paths.PARAMS.glob("methods/*.yaml"), *paths.PARAMS.glob("*/methods/*.yaml")]:
        data = yaml.safe_load(f.read_text()) or {}
        assert not {"epochs", "batch_size"} & set(data), f"{f}: epochs/batch_size are per profile, not per method"


@pytest.mark.parametrize("profile", config.available_profiles())
def test_profiles_load(profile):
    cfg = config.load_profile(profile)
    assert cfg["name"] == profile and "model" in cfg and "grid" in cfg


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(config.ConfigError, match="valid profiles: .*mini.*smoke"):
        config.load_profile("nope")


def test_malformed_yaml_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [1, 2\n")
    with pytest.raises(config.ConfigError, match="malformed YAML in .*bad.yaml"):
        config.read_yaml(bad)


def test_string_float_gets_a_hint():
    with pytest.raises(config.ConfigError, match="1.0e-4"):
        config.check_type("lr", "1e-4", float, positive=True)
    with pytest.raises(config.ConfigError, match="must be > 0"):
        config.check_type("lr", -1.0, float, positive=True)


def test_pretraining_hyperparameters_pass_the_schema_as_the_stage_hands_them():
    """lib.pipeline.pretrain hands lib.pretrain.validate the stage's parameters without seed and
    threads; the schema (PRETRAIN_HP_SCHEMA) checks them with the stage file's bounds."""
    from lib import pretrain
    for profile in ("smoke", "mini"):
        p = config.stage_params("00_pretrain", profile)
        p.pop("seed"), p.pop("threads", None)
        assert pretrain.validate(p) == p
    with pytest.raises(config.ConfigError, match="epochs: must be >= 1"):
        pretrain.validate({**p, "epochs": 0})
