"""The figures stage: result tables -> statistics, figures, ``claims.md``, headline; and publishing.

``python -m lib.pipeline.publish <profile> [--publish | --summary]``

* computes every statistic once (``lib.analysis.compute``) from ``build/<profile>/results/``;
* writes ``build/<profile>/figures/``: the tables (CSV, + Markdown when narrow), ``headline.md``,
  every figure (PNG + PDF), ``claims.md`` and ``MANIFEST.json`` (last);
* with ``--publish`` (``make publish``, the only step that writes tracked files): copies that folder
  -- as built, when its manifest verifies; else built first -- to ``paper_figures/`` together with the
  executed notebooks (00, 01, one 02 run, 03, 04) under ``paper_figures/notebooks/``, and rewrites the
  README's results block (between ``<!-- results:begin -->`` and ``<!-- results:end -->``);
* with ``--summary`` (the end of ``make reproduce``): writes nothing, prints the headline and verdicts
  of the figures already built (``make reproduce`` then prints ``make verify``'s report:
  ``python -m lib.pipeline.verify <profile> --report``);
* prints the headline table and where the figures are.

The same results give byte-identical files (seeded bootstraps, no timestamps in figures).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import pandas as pd

from .. import analysis, config, io, manifest, paths, plots
from .. import provenance as prov
from ..analysis import report

README = paths.ROOT / "README.md"
NOTEBOOKS = ("00_pretrain.ipynb", "01_zero_shot.ipynb", "03_evaluate.ipynb", "04_figures.ipynb")


def provenance(profile: str) -> dict:
    try:
        cfg = config.load_profile(profile)
    except Exception:  # noqa: BLE001 - a results folder of an unknown profile (tests) still gets provenance
        cfg = {"name": profile}
    return prov.collect(cfg, inputs=analysis.input_fingerprints(profile))


def build(profile: str, out_dir=None, results=None) -> dict:
    """Compute, save every table and figure and ``claims.md`` into ``out_dir`` (default
    ``build/<profile>/figures/``, emptied first); ``MANIFEST.json`` last. Returns the tables."""
    out_dir = Path(out_dir or paths.figures_dir(profile))
    try:
        cfg = config.load_profile(profile)
    except config.ConfigError:  # a results folder of an unknown profile (tests): no design, no manipulation checks
        cfg = None
    t = analysis.compute(results if results is not None else profile, cfg)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    paths.ensure(out_dir)
    analysis.save_tables(t, out_dir)
    plots.figure_all(t, out_dir)
    analysis.write_claims_md(t["claims"], out_dir / "claims.md", profile, provenance(profile))  # + manifest
    return t


def copy_figures(profile: str, dest=None) -> Path:
    """Copy ``build/<profile>/figures/`` to ``dest`` (default :func:`published_dir`), atomically replaced."""
    src = paths.figures_dir(profile)
    if not (src / manifest.MANIFEST_NAME).exists():
        raise FileNotFoundError(f"{src} has no {manifest.MANIFEST_NAME}: run `python -m lib.pipeline.publish "
                                f"{profile}` (or notebook 04_figures) first")
    dest = Path(dest or published_dir(profile))
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    _swap(tmp, dest)
    return dest


def _swap(tmp: Path, dest: Path) -> None:
    """``tmp`` becomes ``dest``; the publications nested in the old ``dest`` (``paper_figures/<profile>/``,
    each with a manifest of its own) move into the new one, so publishing the default profile keeps them."""
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
        for sub in sorted(old.iterdir()):
            if sub.is_dir() and (sub / manifest.MANIFEST_NAME).exists() and not (tmp / sub.name).exists():
                os.replace(sub, tmp / sub.name)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def published_dir(profile: str) -> Path:
    """Where ``make publish PROFILE=<profile>`` puts the figures: ``paper_figures/`` (the default
    profile), or ``paper_figures/<profile>/`` for a profile whose file says ``publish: own`` (study4),
    which then has a README results block of its own (``<!-- results:<profile>:begin -->``)."""
    return paths.PAPER_FIGURES / profile if _own_folder(profile) else paths.PAPER_FIGURES


def _own_folder(profile: str) -> bool:
    try:
        return config.load_profile(profile).get("publish") == "own"
    except config.ConfigError:  # a results folder of an unknown profile (tests): the default folder
        return False


def executed_notebooks(profile: str) -> list[Path]:
    """The executed notebooks to publish: 00, 01, 03, 04 and one 02 unit (the first task with A-CLIP
    ablations: every method's sweep, seeds and the ablations in one notebook; else the first task),
    those that exist."""
    b = paths.profile_dir(profile)
    out = [b / n for n in NOTEBOOKS if (b / n).exists()]
    try:
        grid_cfg = config.load_profile(profile).get("grid", {})
    except config.ConfigError:  # results copied in without their profile: no preference
        grid_cfg = {}
    abl = [t for spec in (grid_cfg.get("ablations") or {}).values() for t in (spec.get("tasks") or [])]
    units = sorted(paths.runs_dir(profile).glob("*/02_finetune.ipynb"))
    pick = [u for t in abl for u in units if u.parent.name == t] or units
    if pick:
        out.insert(2, pick[0])
    return out


def update_readme(t: dict, profile: str, readme: Path = README) -> Path:
    """Rewrite the README's results block of ``profile`` (the default block, or the profile's own for
    one published in its own folder) from the tables (world check, headline, trade-off figure, selected
    learning rates, verdicts)."""
    own = _own_folder(profile)
    folder = paths.PAPER_FIGURES.name + (f"/{profile}" if own else "")
    text = Path(readme).read_text()
    block = report.readme_block(t["headline"], t["claims"], profile, f"{folder}/tradeoff.png", t.get("world_check"),
                                t.get("lr_sweep"), manipulation=t.get("manipulation_checks"), training=t.get("training_check"),
                                seed_noise=t.get("seed_noise"), equivalence=t.get("equivalence_posthoc"),
                                clustering=t.get("family_clustering"), folder=folder, compact=own)
    # atomic: a failed write keeps the old README
    io.write_text(Path(readme), report.replace_block(text, block, profile if own else None))
    return Path(readme)


def publish(profile: str, t: dict, dest=None, readme: Path | None = README) -> Path:
    """``build/<profile>/figures/`` + the executed notebooks -> ``dest`` (``paper_figures/``), with a
    manifest covering both; then the README block (unless ``readme`` is None)."""
    src = paths.figures_dir(profile)
    dest = Path(dest or published_dir(profile))
    produced_by = manifest.read_manifest(src)["produced_by"]
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    nbs = executed_notebooks(profile)
    if nbs:
        nb_dir = paths.ensure(tmp / "notebooks")
        for nb in nbs:
            shutil.copy2(nb, nb_dir / _published_name(nb, profile))
    manifest.write_manifest(tmp, {**produced_by, "notebooks": [n.name for n in nbs]})
    _swap(tmp, dest)
    if readme is not None:  # from the published tables, so the README shows exactly their numbers
        # every published table, as make verify reads them back (lib.pipeline.verify.check_readme)
        update_readme({f.stem: pd.read_csv(f) for f in sorted(dest.glob("*.csv"))}, profile, readme)
    return dest


def _published_name(nb: Path, profile: str) -> str:
    return nb.name if nb.parent == paths.profile_dir(profile) else f"02_finetune_{nb.parent.name}.ipynb"


def complete_notebooks(profile: str, dest=None) -> list[str]:
    """Copy the executed notebooks that ``dest`` (default :func:`published_dir`) lacks -- 04_figures
    publishes while it runs, so its own executed copy exists only afterwards -- and rewrite the manifest.
    Returns the names added."""
    dest = Path(dest or published_dir(profile))
    nbs = executed_notebooks(profile)
    nb_dir = paths.ensure(dest / "notebooks")
    added = [nb for nb in nbs if not (nb_dir / _published_name(nb, profile)).exists()]
    if added:
        for nb in added:
            shutil.copy2(nb, nb_dir / _published_name(nb, profile))
        manifest.write_manifest(dest, {**manifest.read_manifest(dest)["produced_by"],
                                       "notebooks": [n.name for n in nbs]})
    return [_published_name(nb, profile) for nb in added]


def published_profile(dest=None) -> str | None:
    """The profile ``dest`` (default ``paper_figures/``) was published from (its manifest), or None."""
    dest = Path(dest or paths.PAPER_FIGURES)
    try:
        return manifest.read_manifest(dest)["produced_by"].get("profile")
    except Exception:  # noqa: BLE001 - no or unreadable manifest: nothing published to compare with
        return None


def is_complete(out_dir: Path) -> bool:
    """The figures folder is a finished build: its manifest exists and every file matches it."""
    return (out_dir / manifest.MANIFEST_NAME).exists() and not manifest.verify_manifest(out_dir)


def summary_text(t: dict, out_dir: Path, published: Path | None) -> str:
    lines = ["", "Headline (accuracy points, 95% interval over tasks):", "",
             report.markdown_table(report.headline_display(t["headline"])),
             "Claims: " + ", ".join(f"{r.id} {r.verdict}" for r in t["claims"].itertuples()),
             f"Figures, tables and claims.md: {out_dir}"]
    if published is not None:
        lines.append(f"Published to: {published} (README results block rewritten)")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lib.pipeline.publish", description=__doc__.split("\n")[0])
    ap.add_argument("profile")
    ap.add_argument("--publish", action="store_true", help="also copy to paper_figures/ and rewrite the README block")
    ap.add_argument("--summary", action="store_true",
                    help="only print the headline and verdicts of the figures already built (the end of make reproduce)")
    a = ap.parse_args(argv)
    try:  # before any path is made of it: `publish ../../victim` must not reach build/../../victim
        config.check_profile_name(a.profile)
    except config.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out_dir = paths.figures_dir(a.profile)
    if a.summary:
        if not (out_dir / "headline.csv").exists() or not (out_dir / "claims.csv").exists():
            print(f"error: no figures in {out_dir} yet: make figures PROFILE={a.profile}", file=sys.stderr)
            return 1
        t = {"headline": pd.read_csv(out_dir / "headline.csv"), "claims": pd.read_csv(out_dir / "claims.csv")}
        sys.stdout.write(summary_text(t, out_dir, None))   # nothing is written: make publish does that
        return 0
    if a.publish and is_complete(out_dir):   # make publish: the build as it is (make -q checked it is current)
        t = {name: pd.read_csv(out_dir / f"{name}.csv") for name in ("headline", "claims")}
        print(f"publishing {out_dir} as built")
    else:
        t = build(a.profile, out_dir)
    dest = publish(a.profile, t) if a.publish else None
    sys.stdout.write(summary_text(t, out_dir, dest))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
