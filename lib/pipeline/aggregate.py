"""Aggregated tables rebuilt from per-run / per-unit files, in grid order.

    python -m lib.pipeline.aggregate finetune <profile>     # results/finetune.csv (+ finetune_timing.csv)
    python -m lib.pipeline.aggregate evaluation <profile>   # results/evaluation.csv

Every input is verified when read and every output before it is written: the run markers by
:func:`lib.pipeline.finetune.marker_problem`, the units' ``evaluation.csv`` by the hash their
provenance recorded and the schema :data:`lib.schema.EVALUATION`, the outputs by
:data:`lib.schema.FINETUNE` / :data:`lib.schema.EVALUATION` (a blank or NaN cell, a value out of
range, a repeated key: refused, naming the file and the fix). Each output's provenance records
its own hash and its inputs' hashes.
"""
from __future__ import annotations

import sys

import pandas as pd

from .. import config, metrics, models, paths, provenance, schema
from ..data import source_for
from ..evaluate import EVAL_COLUMNS, image_embeddings, text_embeddings
from ..io import file_sha256, read_json, write_csv
from .common import base_model, cli
from ..selection import rule_text
from .finetune import (RESULT_COLUMNS, TIMING_COLUMNS, TaskData, Unit, finished_row, lr_rule, marker_problem,
                       sweep_table)
from .evaluate import SWEEP_COLUMNS
from .grid import evaluation_units, runs, sweep_runs


def aggregate_finetune(profile: str):
    """Rebuild results/finetune.csv (+ finetune_timing.csv) from the runs' markers, and
    results/lr_sweep.csv (every sweep point, the selected rate) from the sweep points'."""
    cfg = config.load_profile(profile)
    rs = runs(cfg)
    found = {r: finished_row(profile, r) for r in rs}
    missing = [r for r in sweep_runs(cfg, rs=rs) if finished_row(profile, r) is None]
    missing += [r for r, row in found.items() if row is None]
    if missing:
        raise FileNotFoundError(f"{len(missing)} fine-tuning runs have no complete, valid result (e.g. "
                                f"{missing[0].label}: {marker_problem(profile, missing[0])}); "
                                f"run `make finetune PROFILE={profile}`")
    df = pd.DataFrame(list(found.values())).sort_values(["task", "method", "variant", "seed"]).reset_index(drop=True)
    zs_val = zero_shot_val_accuracy(cfg, sorted(df["task"].unique()))
    df["zero_shot_val_acc"] = df["task"].map(zs_val)
    # no_val_gain: the run's best validation accuracy is not above the zero-shot model's on the same
    # ID validation split (a descriptive flag; nonfinite says whether training diverged)
    df["no_val_gain"] = df["best_val_acc"] <= df["zero_shot_val_acc"]
    out = df[RESULT_COLUMNS + ["zero_shot_val_acc", "no_val_gain"] + TIMING_COLUMNS]
    schema.validate(out, schema.FINETUNE, "the aggregated fine-tuning rows (from the runs' row.json)", profile)
    prov = provenance.collect(cfg, stage="aggregate_finetune", runs=len(df),
                              no_val_gain_rule="best_val_acc <= zero_shot_val_acc (the zero-shot model's accuracy "
                                               "on the same ID validation split); nonfinite: the loss or the "
                                               "weights became non-finite during training",
                              lr_selection=rule_text(lr_rule(profile)),
                              inputs={r.label: _marker_hash(profile, r) for r in rs})
    write_csv(out, paths.product(profile, paths.FINETUNE_CSV), prov)
    shared = {t: TaskData(cfg, t) for t in dict.fromkeys(df["task"])}
    units = [Unit(cfg, t, m, shared=shared[t]) for t, m in evaluation_units(rs)]
    states = [u.sweep_state() for u in units]
    # every run's training time, sweep points included; a study run reused from its sweep point
    # names it in copy_of (it was trained once)
    pts = [r for s in states for r in s[0]]
    sweep_rows = [x for s in states for x in s[1]]
    if any(x is None for x in sweep_rows):
        raise FileNotFoundError(f"sweep point {pts[sweep_rows.index(None)].label} has no complete result: "
                                f"run `make finetune PROFILE={profile}`")
    sweep_df = pd.DataFrame([{**x, "lr": r.lr, "label": r.label} for x, r in zip(sweep_rows, pts)])
    by_request = dict(zip(sweep_df["request_fingerprint"], sweep_df["label"])) if len(sweep_df) else {}
    study = df.assign(sweep=False, copy_of=[by_request.get(f, "") for f in df.get("request_fingerprint", [""] * len(df))])
    timing = pd.concat([sweep_df.assign(sweep=True, copy_of=""), study], ignore_index=True)
    write_csv(timing[["task", "method", "variant", "seed", "lr", "sweep", "copy_of"] + TIMING_COLUMNS],
              paths.product(profile, paths.FINETUNE_TIMING_CSV))
    sw = sweep_table(units, states)
    sw["zero_shot_val_acc"] = sw["task"].map(zs_val)
    write_csv(sw, paths.product(profile, paths.LR_SWEEP_CSV), provenance.collect(cfg, stage="aggregate_finetune", rule=rule_text(lr_rule(profile))))
    return paths.product(profile, paths.FINETUNE_CSV)


def zero_shot_val_accuracy(cfg: dict, tasks: list[str]) -> dict:
    """The zero-shot model's accuracy on each task's ID validation split (the split that picks the
    best epoch of a run), to tell a run that ended below its starting point."""
    source = source_for(cfg)
    source.check()
    base = base_model(cfg)
    state = models.state_fingerprint(base.model)
    out = {}
    for t in tasks:
        s = source.load(t, source.task(t).id_domain, "val")
        img = image_embeddings(base.model, base, s, state, cfg["name"])
        out[t] = metrics.zero_shot_accuracy(img, text_embeddings(base.model, base, s.classnames, s.templates), s.labels)
    return out


def _marker_hash(profile: str, run) -> str:
    """The hash a run's marker records of itself, or (a marker written before v3) of its bytes."""
    row = read_json(run.marker(profile)) or {}
    return row.get("row_sha256") or file_sha256(run.marker(profile))


def aggregate_evaluation(profile: str) -> pd.DataFrame:
    """Rebuild results/evaluation.csv from the units' evaluation.csv files, in grid order. Each unit
    file is checked against its recorded hash and the schema (:data:`lib.schema.EVALUATION`), and so
    is the result before it is written."""
    cfg = config.load_profile(profile)
    rs = runs(cfg)
    by_run, inputs = {}, {}
    for t, m in evaluation_units(rs):
        f = paths.unit_eval_csv(profile, t, m)
        if not f.exists():
            raise FileNotFoundError(f"{f} is missing: evaluate that unit first (make evaluate PROFILE={profile})")
        df = schema.read_table(f, schema.EVALUATION, profile)
        inputs[f"{t}/{m}"] = file_sha256(f)
        for key, g in df.groupby(["train_task", "method", "variant", "seed"], sort=False):
            by_run[key] = g
    missing = [r.label for r in rs if (r.task, r.method, r.variant, r.seed) not in by_run]
    if missing:
        raise FileNotFoundError(f"{len(missing)} runs have no evaluation rows (e.g. {missing[0]}): "
                                f"make evaluate PROFILE={profile}")
    df = pd.concat([by_run[(r.task, r.method, r.variant, r.seed)] for r in rs], ignore_index=True)[EVAL_COLUMNS]
    schema.validate(df, schema.EVALUATION, "the aggregated evaluation rows", profile)
    zs_prov = read_json(paths.product(profile, paths.ZERO_SHOT_CSV + ".provenance.json")) or {}
    prov = provenance.collect(cfg, stage="03_evaluate", runs=len(rs), zero_shot_model=zs_prov.get("model_state"),
                              flips="n_lost: images of the split the zero-shot model classified correctly and the "
                                    "run wrongly; n_won: the reverse (exact McNemar: binomial test of n_won "
                                    "among n_won + n_lost at 1/2)",
                              inputs=inputs)
    write_csv(df, paths.product(profile, paths.EVALUATION_CSV), prov)
    sweep = [pd.read_csv(paths.product(profile, paths.UNIT_SWEEP_EVAL_CSV, task=t, method=m))
             for t, m in evaluation_units(rs) if paths.product(profile, paths.UNIT_SWEEP_EVAL_CSV, task=t, method=m).exists()]
    sweep = [x for x in sweep if len(x)]
    write_csv(pd.concat(sweep, ignore_index=True) if sweep else pd.DataFrame(columns=SWEEP_COLUMNS),
              paths.product(profile, paths.SWEEP_EVALUATION_CSV),
              provenance.collect(cfg, stage="03_evaluate", sweep_points="every sweep point on the first "
                                 "sweep_eval_images test images of each split (params/03_evaluate.yaml)"))
    return df


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("finetune", "evaluation"):
        print("usage: python -m lib.pipeline.aggregate finetune|evaluation <profile>", file=sys.stderr)
        return 2

    def work():
        config.check_profile_name(argv[1])
        if argv[0] == "finetune":
            print(aggregate_finetune(argv[1]))
        else:
            aggregate_evaluation(argv[1])
            print(paths.product(argv[1], paths.EVALUATION_CSV))
    return cli(work)


if __name__ == "__main__":
    sys.exit(main())
