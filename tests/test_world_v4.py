"""World v4 and the study4 profile (docs/study.md, "Study v4"): 96 new tasks in study3's replicated
design, new invented words, study3's v3 tasks unchanged, and the rates transferred from study3's
published validation-only selections by the rule in code."""
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from lib import config, paths, world
from lib.pipeline import grid
from lib.selection import transfer_rate
from lib.world import variants as V

CFG4 = config.load_profile("study4")
CFG3 = config.load_profile("study3")


def test_world_v4_is_96_new_tasks_with_new_words():
    w = CFG4["world"]
    assert w["tasks"] == list(V.VARIANTS_V4) and len(w["tasks"]) == 96
    assert not set(w["tasks"]) & set(CFG3["world"]["tasks"])
    assert Counter(V.family_of(t) for t in V.VARIANTS_V4) == {f: 12 for f in world.RENDERERS}
    v3 = [x for r in V.VARIANTS.values() for x in r.classnames]
    v4 = [x for r in V.VARIANTS_V4.values() for x in r.classnames]
    assert len(v4) == len(set(v4)) == 384 and not set(v4) & set(v3)
    assert all(re.fullmatch(r"[bdfgklmnprstvz][aeiou][bdfgklmnprstvz][aeiou][bdfgklmnprstvz]", x) for x in v4)
    vocab = {x for r in world.RENDERERS.values() for ts in r.captions.values() for t in ts
             for x in re.findall(r"[a-z]+", t.lower())} | set(world.COLORS) | set(world.NUMBER_WORDS)
    assert not set(v4) & vocab
    # v4's words continue v3's sequence: v3 keeps the words it had before world v4 existed
    assert V.pseudowords(128) == v3


def test_v4_instances_spread_over_the_familys_classes():
    for fam, r in world.RENDERERS.items():
        sets = {tuple(sorted(V.VARIANTS_V4[f"{fam}_{k}"].classes)) for k in V.INSTANCES_V4}
        assert len(sets) == min(len(r.classnames), len(V.INSTANCES_V4)) or len(r.classnames) == V.N_CLASSES, fam
        for k in V.INSTANCES_V4:
            inst = V.VARIANTS_V4[f"{fam}_{k}"]
            assert len(set(inst.classes)) == V.N_CLASSES and inst.family is r


def test_study4_design_continues_study3s_rule():
    """Instance k of a family (e = 4, ..., p = 15) takes the cell of its family's v3 instance k mod 4:
    the rule (k + j) mod 4 of the half; 12 tasks per cell, each family 3 per cell of its half."""
    d3, d4 = CFG3["world"]["design"], CFG4["world"]["design"]
    for fam in world.RENDERERS:
        for i, k in enumerate(V.INSTANCES_V4):
            assert d4[f"{fam}_{k}"] == d3[f"{fam}_{V.INSTANCES[(4 + i) % 4]}"]
    levels = world.check_design(CFG4["world"])
    cells = Counter(tuple(d4[t][f] for f in world.FACTORS) for t in levels)
    assert len(cells) == 8 and set(cells.values()) == {12}


def test_study4_keeps_study3s_sizes_and_levels_and_scales_the_corpus_per_task():
    w3, w4 = CFG3["world"], CFG4["world"]
    assert w4["sizes"] == w3["sizes"] and w4["levels"] == w3["levels"]
    assert w4["corpus"]["n_pairs"] * len(w3["tasks"]) == w3["corpus"]["n_pairs"] * len(w4["tasks"])
    assert config.stage_params("00_pretrain", "study4") == config.stage_params("00_pretrain", "study3")
    ft3, ft4 = config.stage_params("02_finetune", "study3"), config.stage_params("02_finetune", "study4")
    assert (ft4["epochs"], ft4["batch_size"]) == (ft3["epochs"], ft3["batch_size"])


def test_study4_panel_and_seed_noise_subset_are_one_task_per_cell():
    d4 = CFG4["world"]["design"]
    panel = config.stage_params("03_evaluate", "study4")["forgetting_panel"]
    sn = CFG4["grid"]["seed_noise"]["tasks"]
    for ts in (panel, sn):
        assert len({tuple(d4[t][f] for f in world.FACTORS) for t in ts}) == 8 == len(ts)
        assert {V.family_of(t) for t in ts} == set(world.RENDERERS)


def test_study4_rates_are_the_transfer_rule_of_study3s_published_selections():
    sweep = pd.read_csv(paths.PAPER_FIGURES / "lr_sweep.csv")
    sel = sweep[sweep["selected"].astype(bool)]
    assert set(sel["task"]) == set(CFG3["world"]["tasks"])
    for m, g in sel.groupby("method"):
        assert grid.lr_grid("study4", m) == [transfer_rate(g["lr"].tolist())], m
    rs = grid.runs(CFG4)
    assert not grid.sweep_runs(CFG4, rs=rs)              # one rate per method: no sweep
    assert len(rs) == 96 * 5 + 8 * 2 * 5


@pytest.mark.parametrize("xs, want", [([1.0], 1.0), ([3.0, 1.0], 1.0), ([0.3, 1.0, 0.1], 0.3),
                                      ([0.1, 0.3, 1.0, 3.0], 0.3)])
def test_transfer_rate_is_the_lower_median(xs, want):
    assert transfer_rate(xs) == want


def test_transfer_rate_refuses_nothing():
    with pytest.raises(ValueError):
        transfer_rate([])


def test_the_registration_is_in_the_docs():
    text = (Path(paths.ROOT) / "docs" / "study.md").read_text()
    assert "## Study v4 (profile `study4`): registered before its first run" in text
