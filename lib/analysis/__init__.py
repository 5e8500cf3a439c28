"""The study's analysis: every statistic computed once (``compute``), then read by the claims,
the figures (``lib.plots``) and the published files (``lib.pipeline.publish``).

* ``tables``  - result tables -> statistic tables (tasks as the sampling unit, ``lib.stats``);
* ``claims``  - the paper's claims, one registered function each, verdicts from stated rules;
* ``manipulation`` - the world's pre-registered manipulation checks, on zero-shot numbers only;
* ``report``  - Markdown / CSV output, ``claims.md``, the README results block.
"""
from __future__ import annotations

from io import StringIO
from pathlib import Path

import pandas as pd

from .. import config, io, manifest, paths, schema
from . import claims as claims_mod
from . import manipulation, report, tables
from .claims import MIN_TASKS, VERDICTS, Verdict
from .report import claims_markdown, markdown_table, save_table
from .tables import METHOD_LABELS, METHOD_ORDER, RESULT_FILES, add_deltas, gain_points, run_level, seed_aggregate

__all__ = ["load_results", "input_fingerprints", "compute", "save_tables", "write_claims_md", "claims_markdown",
           "markdown_table", "save_table", "Verdict", "MIN_TASKS", "VERDICTS", "METHOD_LABELS", "METHOD_ORDER",
           "RESULT_FILES", "add_deltas", "gain_points", "run_level", "seed_aggregate", "show"]


# ----------------------------------------------------------------------------- inputs
def load_results(profile_or_dir) -> dict:
    """The three stage tables as DataFrames (keys zero_shot, finetune, evaluation; and lr_sweep when
    the profile sweeps learning rates), from a profile name (``build/<profile>/results/``) or a
    results folder."""
    s = str(profile_or_dir)
    rd = Path(s) if isinstance(profile_or_dir, Path) or "/" in s else paths.results_dir(s)
    producers = {"zero_shot": "01_zero_shot (make zero-shot)", "finetune": "02_finetune (make finetune)",
                 "evaluation": "03_evaluate (make evaluate)"}
    out = {}
    sweep = rd / paths.name(paths.LR_SWEEP_CSV)
    if sweep.exists():  # optional: written beside finetune.csv when a profile sweeps
        out["lr_sweep"] = pd.read_csv(sweep)
    sweep_ev = rd / paths.name(paths.SWEEP_EVALUATION_CSV)
    if sweep_ev.exists():  # optional: every sweep point evaluated (study v3; no rows elsewhere)
        out["sweep_evaluation"] = pd.read_csv(sweep_ev)
    tables = {"zero_shot": schema.ZERO_SHOT, "finetune": schema.FINETUNE, "evaluation": schema.EVALUATION}
    for name in RESULT_FILES:
        f = rd / f"{name}.csv"
        if not f.exists():
            raise FileNotFoundError(f"{f} does not exist: it is written by notebook {producers[name]} "
                                    f"for this profile")
        # validated on read (columns, types, ranges, no NaN, unique keys, the recorded content hash):
        # a damaged or hand-edited table stops here with the file, the problem and the fix
        out[name] = schema.read_table(f, tables[name], rd.parent.name)
    return out


def input_fingerprints(profile: str) -> dict:
    """sha256 (16 hex) of each input table, for the provenance of derived files."""
    rd = paths.results_dir(profile)
    return {f"{n}.csv": io.sha256_hex((rd / f"{n}.csv").read_bytes(), length=io.SHORT)
            for n in (*RESULT_FILES, "lr_sweep") if (rd / f"{n}.csv").exists()}


# ----------------------------------------------------------------------------- the one entry point
def compute(results, cfg: dict | None = None) -> dict:
    """Every statistic, once: ``results`` is ``load_results``'s dict, a profile name or a results
    folder. Returns the input tables, every statistic table of ``tables.compute`` and ``claims``;
    with the profile (``cfg``, loaded here when ``results`` is a profile name) also the world's
    pre-registered ``manipulation_checks`` (its design names each task's factor levels)."""
    if cfg is None and isinstance(results, str) and results in config.available_profiles():
        cfg = config.load_profile(results)
    res = results if isinstance(results, dict) else load_results(results)
    out = tables.compute(res)
    if cfg is not None:
        out["manipulation_checks"] = manipulation.manipulation_checks(res["zero_shot"], cfg)
    out["family_clustering"] = manipulation.family_clustering(out["runs"])
    out["claim_rule"] = claims_mod.claim_rule(cfg)
    out["claims"], out["claim_tests"] = claims_mod.evaluate_all(out)
    if out["claim_rule"] == "v3":  # under v4 the equivalence tests are part of the claims (claim_tests)
        out["equivalence_posthoc"] = claims_mod.equivalence_posthoc(out)
    return out


# files written by save_tables: name -> write a Markdown table too
PUBLISHED_TABLES = {"headline": False, "method_summary": True, "comparisons": True, "effects": True, "predictors": True,
                    "predictor_contrasts": True, "forgetting_spearman": True, "forgetting_vs_ss": True,
                    "alignment": True, "ablations": True, "zero_shot_summary": True, "run_flags": True,
                    "lr_sweep": True, "world_check": False, "manipulation_checks": True, "training_check": True, "sweep_tradeoff": True, "seed_noise": True, "claims": False, "claim_tests": True, "equivalence_posthoc": True, "family_clustering": True, "gain_points": False,
                    "runs": False, "seed_aggregate": False}


def save_tables(t: dict, out_dir) -> list[Path]:
    """CSV for every statistic table (+ Markdown for the narrow ones); ``headline.md`` in points."""
    out_dir = paths.ensure(Path(out_dir))
    written = []
    for name, md in PUBLISHED_TABLES.items():
        if name in t:
            written += save_table(t[name], name, out_dir, markdown=md)
    if "headline" in t:
        io.write_text(out_dir / "headline.md", report.headline_markdown(t["headline"]))
        written.append(out_dir / "headline.md")
    return written


def _as_stored(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` after a round trip through the CSV format that ``save_table`` writes."""
    buf = StringIO()
    df.to_csv(buf, index=False, float_format="%.6g")
    buf.seek(0)
    return pd.read_csv(buf)


def write_claims_md(claims_df: pd.DataFrame, path, profile: str, provenance: dict | None = None,
                    tests_df: pd.DataFrame | None = None) -> Path:
    """Write ``claims.md`` to ``path`` from the claims table and the table of every claim's tests
    (``tests_df``; default: ``claim_tests.csv`` beside ``path`` when it exists), then the folder's
    MANIFEST.json (written last)."""
    path = Path(path)
    paths.ensure(path.parent)
    if tests_df is None and (path.parent / "claim_tests.csv").exists():
        tests_df = pd.read_csv(path.parent / "claim_tests.csv")
    # rendered from the values as the CSVs store them (6 significant digits), so that claims.md is
    # exactly what anyone regenerates from claims.csv / claim_tests.csv (make verify does)
    claims_df, tests_df = _as_stored(claims_df), None if tests_df is None else _as_stored(tests_df)
    io.write_text(path, claims_markdown(claims_df, profile, provenance, tests_df))
    manifest.write_manifest(path.parent, {"notebook": "04_figures", "profile": profile, **(provenance or {})})
    return path


# ----------------------------------------------------------------------------- notebook helpers
def show(df: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """A display copy: intervals collapsed to 'v [lo, hi]' text, numbers rounded."""
    return report.collapse_intervals(df, digits).round(digits)
