"""Study v3's protocol switches (params/profiles/study3.yaml, params/study3/): a sweep seed no study
run uses, a seed-noise subset, and a fixed forgetting panel; every switch absent = world v2's protocol."""
import copy

import pytest

from lib import config
from lib.config import ConfigError
from lib.evaluate import eval_splits
from lib.pipeline import grid

S3 = config.load_profile("study3")


class FakeSource:
    def __init__(self, tasks):
        from lib.splits import TaskSpec
        self._t = {t: TaskSpec(t, ["a", "b"], ["{}"], "id", ["s_mild", "s_strong"], "k") for t in tasks}

    def tasks(self):
        return self._t


def test_panel_makes_evaluation_linear_in_tasks():
    src = FakeSource([f"t{i}" for i in range(10)])
    full = eval_splits(src, "t3")
    assert len(full) == 30 and eval_splits(src) == full  # no panel: every task, every domain
    got = eval_splits(src, "t3", ["t0", "t3", "t7"])
    assert got == [("t3", "id", "test"), ("t3", "s_mild", "test"), ("t3", "s_strong", "test"),
                   ("t0", "id", "test"), ("t7", "id", "test")]
    with pytest.raises(ConfigError, match="unknown task"):
        eval_splits(src, "t3", ["nope"])


def test_study3_grid_one_seed_fresh_runs_and_a_seed_noise_subset():
    rs = grid.runs(S3)
    tasks, methods = S3["world"]["tasks"], S3["grid"]["methods"]
    assert len(rs) == len(tasks) * len(methods) + 8 * len(methods) * 2
    assert grid.sweep_seed(S3) == 100 and {r.seed for r in rs} == {0, 1, 2}
    assert all(r.seed == 100 for r in grid.sweep_runs(S3, rs=rs))
    noisy = {r.task for r in rs if r.seed > 0}
    assert noisy == set(S3["grid"]["seed_noise"]["tasks"])
    d = S3["world"]["design"]
    for key in ("seed_noise",):  # one task per cell and per family
        ts = S3["grid"][key]["tasks"]
        assert len({tuple(d[t].values()) for t in ts}) == 8 and len({t.rsplit("_", 1)[0] for t in ts}) == 8
    panel = config.stage_params("03_evaluate", "study3")["forgetting_panel"]
    assert len({tuple(d[t].values()) for t in panel}) == 8 and not set(panel) & set(S3["grid"]["seed_noise"]["tasks"])


def test_a_sweep_seed_used_by_a_study_run_is_refused():
    cfg = copy.deepcopy(S3)
    cfg["grid"]["sweep_seed"] = 1
    with pytest.raises(ConfigError, match="sweep_seed 1 is also a study seed"):
        grid.runs(cfg)
    cfg = copy.deepcopy(S3)
    cfg["grid"]["seed_noise"]["tasks"] = ["objects_b", "nope_z"]
    with pytest.raises(ConfigError, match="seed_noise.tasks names 'nope_z'"):
        grid.runs(cfg)


def test_world_v2_profiles_keep_their_protocol():
    for p in ("mini", "smoke"):
        cfg = config.load_profile(p)
        assert grid.sweep_seed(cfg) == cfg["grid"]["seeds"][0]
        assert config.stage_params("03_evaluate", p).get("forgetting_panel") is None
        assert config.stage_params("02_finetune", p).get("lr_rule") is None


def test_training_check_needs_a_majority_of_methods_on_every_task():
    import pandas as pd
    from lib.analysis import report, tables
    rows = []
    for task, beat in (("t0", 5), ("t1", 3), ("t2", 2)):
        for i, m in enumerate(["full", "clip_adapter", "lora", "bitfit", "aclip"]):
            rows.append({"train_task": task, "method": m, "variant": "default", "seed": 0, "no_val_gain": i >= beat})
    df = tables.training_check(pd.DataFrame(rows))
    assert df.set_index("task")["passed"].to_dict() == {"t0": True, "t1": True, "t2": False, "all": False}
    assert "not on t2 (2 of 5 methods)" in report.training_summary(df)


def test_sweep_tradeoff_means_over_the_tasks_that_tried_each_rate():
    import pandas as pd
    from lib import plots
    from lib.analysis import tables
    rows = []
    for task, lrs in (("t0", (0.1, 0.3)), ("t1", (0.1, 0.3, 1.0))):
        for lr in lrs:
            for schema, zs, ft in (("ID", 0.5, 0.5 + lr / 10), ("DG", 0.4, 0.42), ("CF", 0.6, 0.6 - lr / 5)):
                rows.append({"task": task, "method": "lora", "lr": lr, "seed": 100, "selected": lr == 0.3,
                             "nonfinite": False, "eval_task": task if schema != "CF" else "p",
                             "eval_domain": schema, "schema": schema, "n_images": 50,
                             "acc_zero_shot": zs, "acc_finetuned": ft})
    tr = tables.sweep_tradeoff(pd.DataFrame(rows)).set_index("lr")
    assert tr["n_tasks"].to_dict() == {0.1: 2, 0.3: 2, 1.0: 1}
    assert tr.loc[0.3, "selected"] == 2 and abs(tr.loc[1.0, "cf_drop"] - 0.2) < 1e-12
    assert abs(tr.loc[0.1, "id_gain"] - 0.01) < 1e-12 and abs(tr.loc[0.3, "dg_gain"] - 0.02) < 1e-12
    assert tables.sweep_tradeoff(pd.DataFrame(columns=rows[0].keys())).empty
    fig = plots.sweep_tradeoff(tr.reset_index())
    assert fig.axes[0].get_xlabel().startswith("CF drop")


def test_seed_noise_pools_within_task_variances_beside_the_between_task_sd():
    import numpy as np
    import pandas as pd
    from lib.analysis import report, tables
    gains = {"t0": [0.10, 0.12, 0.14], "t1": [0.30, 0.30, 0.33], "t2": [0.20], "t3": [0.50]}
    rows = [{"train_task": t, "method": "lora", "variant": "default", "seed": i, "id_gain": g, "dg_gain": 0.0,
             "cf_drop": 0.01 * i} for t, gs in gains.items() for i, g in enumerate(gs)]
    rows.append({"train_task": "t0", "method": "lora", "variant": "q", "seed": 0, "id_gain": 9.0, "dg_gain": 9.0,
                 "cf_drop": 9.0})          # another variant: not counted
    sn = tables.seed_noise(pd.DataFrame(rows)).set_index("quantity")
    want_seed = np.sqrt((np.var([0.10, 0.12, 0.14], ddof=1) + np.var([0.30, 0.30, 0.33], ddof=1)) / 2)
    want_task = np.std([0.12, 0.31, 0.20, 0.50], ddof=1)
    r = sn.loc["id_gain"]
    assert abs(r["seed_sd"] - want_seed) < 1e-12 and abs(r["task_sd"] - want_task) < 1e-12
    assert (r["seed_tasks"], r["seeds"], r["n_tasks"]) == (2, 6, 4) and abs(r["ratio"] - want_seed / want_task) < 1e-12
    assert np.isnan(sn.loc["dg_gain", "ratio"])           # no spread between tasks: no ratio
    line = report.seed_noise_summary(sn.reset_index())
    assert f"ID gain {100 * want_seed:.1f}–{100 * want_seed:.1f} vs {100 * want_task:.1f}–" in line
    assert "2 tasks x 3 seeds" in line and "tasks: 4" in line
    one_seed = pd.DataFrame([x for x in rows if x["seed"] == 0])
    assert tables.seed_noise(one_seed).empty                # no task with two seeds: no table


def test_sweep_markdown_counts_rates_when_a_row_per_task_would_not_fit():
    import pandas as pd
    from lib.analysis import report
    rows = [{"task": f"t{i}", "method": "lora", "lr": lr, "selected": lr == (0.1 if i < 8 else 0.3)}
            for i in range(12) for lr in (0.1, 0.3, 1.0)]
    wide = report.sweep_markdown(pd.DataFrame(rows), max_tasks=20)
    assert wide.count("\n") == 2 + 12 and "| t0 | 0.1* |" in wide
    short = report.sweep_markdown(pd.DataFrame(rows))
    assert short.count("\n") == 3 and "| LoRA | 0.1: 8 (8*), 0.3: 4 |" in short


def test_zero_shot_prompts_follow_each_splits_classes(monkeypatch):
    """A shifted domain may hold a subset of its task's classes (ImageNet-R's 200 of 1,000): its
    prompts are its own classes', not the first domain's of the task (text_cache keyed by the classes)."""
    import numpy as np
    from lib import evaluate as E
    from lib.splits import Split, TaskSpec

    class Src:
        def tasks(self):
            return {"t": TaskSpec("t", ["a", "b", "c"], ["{}"], "id", ["sub"], "k")}

        def task(self, t):
            return self.tasks()[t]

        def load(self, task, domain, split):
            names = ["a", "b", "c"] if domain == "id" else ["b", "c"]
            return Split(task, domain, split, np.array([0, 1]), names, ["{}"], images=np.zeros((2, 4, 4, 3), np.uint8))

    seen = []
    monkeypatch.setattr(E, "image_embeddings", lambda *a, **k: np.eye(2, 3))
    monkeypatch.setattr(E, "text_embeddings", lambda m, b, names, t: seen.append(tuple(names)) or np.eye(len(names), 3))
    monkeypatch.setattr(E.models, "state_fingerprint", lambda m: "x")
    monkeypatch.setattr(E, "measures", lambda img, txt, labels: {"n_text": len(txt)})
    df = E.zero_shot_table(type("B", (), {"model": None})(), Src(), "smoke", progress=False)
    assert seen == [("a", "b", "c"), ("b", "c")]
    assert df["n_text"].tolist() == [3, 2]
