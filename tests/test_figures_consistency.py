"""Figures print only numbers of the result tables, and the figures stage is deterministic.

* every number in a figure's titles, suptitle, annotations and legends equals a value of the tables
  of ``lib.analysis.compute`` (at the precision printed);
* the Spearman titles of the difficulty and forgetting figures are exactly their table rows, and
  change when the table changes (the figure reads the table, it does not recompute);
* building the figures folder twice from the same results gives byte-identical files.
"""
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lib import analysis as A  # noqa: E402
from lib import manifest, plots  # noqa: E402
from lib.analysis import tables as T  # noqa: E402
from test_analysis import results  # noqa: E402

NUM = re.compile(r"(?<![A-Za-z_\d.])[-+−]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
RHO = re.compile(r"(raw|headroom): ρ = ([-+]\d\.\d\d)(?: \[([-+]\d\.\d\d), ([-+]\d\.\d\d)\])?(?:, p = ([\d.e-]+))?")


def _sweep_evaluation(sweep: pd.DataFrame) -> pd.DataFrame:
    """Every sweep point on ID, DG and CF images (study v3's sweep_evaluation.csv), from lr_sweep's rows."""
    rows = []
    for i, r in enumerate(sweep.dropna(subset=["seed"]).itertuples(index=False)):
        for schema, zs, ft in (("ID", 0.5, 0.55 + 0.01 * (i % 7)), ("DG", 0.4, 0.42), ("CF", 0.6, 0.58 - 0.01 * (i % 5))):
            rows.append({"task": r.task, "method": r.method, "lr": r.lr, "seed": r.seed, "selected": r.selected,
                         "nonfinite": False, "eval_task": r.task if schema != "CF" else "other", "eval_domain": schema,
                         "schema": schema, "n_images": 50, "acc_zero_shot": zs, "acc_finetuned": ft})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tables():
    res = results(5, two_shift=True, no_val_gain=[("t0", "full", 0)])
    res["sweep_evaluation"] = _sweep_evaluation(res["lr_sweep"])
    return A.compute(res)


def _texts(fig) -> list[str]:
    out = [fig._suptitle.get_text()] if fig._suptitle else []
    out += [t.get_text() for t in fig.texts]
    for leg in fig.legends:
        out += [t.get_text() for t in leg.get_texts()]
    for ax in fig.axes:
        out += [ax.get_title(loc) for loc in ("left", "center", "right")]
        out += [t.get_text() for t in ax.texts]
        if ax.get_legend():
            out += [t.get_text() for t in ax.get_legend().get_texts()]
    return [t for t in out if t]


def _table_values(t: dict) -> np.ndarray:
    vals = []
    for name in A.PUBLISHED_TABLES:
        df = t.get(name)
        if isinstance(df, pd.DataFrame) and len(df):
            vals.append(df.select_dtypes("number").to_numpy(float).ravel())
            for c in [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]:
                vals.append(pd.to_numeric(df[c].astype(str).str.split(",").explode(), errors="coerce").to_numpy(float))
    v = np.concatenate(vals)
    v = v[np.isfinite(v)]
    return np.concatenate([v, 100 * v])   # points (x100) are the same numbers


def _matches(num: str, values: np.ndarray) -> bool:
    x = float(num.replace("−", "-"))
    if "e" in num:
        return bool(np.any(np.isclose(values, x, rtol=0.06)))
    dec = len(num.split(".")[1]) if "." in num else 0
    if dec == 0 and "." not in num:      # an integer: a count, or a p-value printed with 2 sig. digits
        return bool(np.any(np.abs(values - x) < 0.5))
    sig = len(num.split(".")[1].lstrip("0")) if abs(x) < 1 else None
    tol = 0.5 * 10 ** -dec + 1e-9
    ok = np.abs(values - x) <= tol
    if sig is not None and sig < dec:     # '.2g'-formatted small numbers
        ok |= np.abs(values - x) <= 0.5 * 10 ** -dec
    return bool(ok.any())


@pytest.mark.parametrize("name", list(plots.FIGURES))
def test_every_printed_number_is_a_table_value(tables, name):
    fig = plots.draw(tables, name)
    assert fig is not None
    try:
        values = _table_values(tables)
        texts = _texts(fig)
        assert texts
        for text in texts:
            text = re.sub(r"\d+% ", "", text)               # '95% t interval' is the level, not a result
            for num in NUM.findall(text):
                assert _matches(num, values), f"{name}: {num!r} in {text!r} is not a table value"
    finally:
        plt.close(fig)


def _rho_rows(fig) -> list[tuple]:
    out = []
    for ax in fig.axes:
        for m in RHO.finditer(ax.get_title()):
            out.append(m.groups())
    return out


def test_difficulty_titles_are_the_predictor_rows(tables):
    fig = plots.draw(tables, "difficulty_vs_gain")
    try:
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    finally:
        plt.close(fig)
    pred = tables["predictors"]
    measures = [m for m in plots.DIFFICULTY_MEASURES if m in set(pred["measure"])]
    assert len(titles) == len(measures) == 5              # ss, ACS, IIMM, class silhouette, modality gap
    for meas, title in zip(measures, titles):
        found = {g[0]: g[1:] for g in RHO.findall(title)}
        for form, short in ((T.RAW, "raw"), (T.HEADROOM, "headroom")):
            r = pred[(pred["measure"] == meas) & (pred["method"] == "pooled") & (pred["stratum"] == "ID")
                     & (pred["form"] == form)].iloc[0]
            rho, lo, hi, p = found[short]
            assert float(rho) == pytest.approx(r["rho"], abs=0.005)
            if np.isfinite(r["lo"]):
                assert (float(lo), float(hi)) == pytest.approx((r["lo"], r["hi"]), abs=0.005)
            assert float(p) == pytest.approx(r["p"], rel=0.05)


def test_figures_read_the_tables_not_recompute(tables):
    t = dict(tables)
    pred = t["predictors"].copy()
    sel = (pred["measure"] == "ss") & (pred["method"] == "pooled") & (pred["stratum"] == "ID") & \
        (pred["form"] == T.RAW)
    pred.loc[sel, ["rho", "lo", "hi", "p"]] = [0.123, -0.456, 0.789, 0.321]
    t["predictors"] = pred
    sp = t["forgetting_spearman"].copy()
    sp.loc[sp["method"] == "bitfit", ["rho", "lo", "hi", "p"]] = [-0.111, -0.222, 0.333, 0.444]
    t["forgetting_spearman"] = sp
    fig = plots.draw(t, "difficulty_vs_gain")
    fig2 = plots.draw(t, "forgetting_vs_ss")
    try:
        assert "raw: ρ = +0.12 [-0.46, +0.79], p = 0.32" in fig.axes[0].get_title()
        assert any("ρ = -0.11 [-0.22, +0.33]" in ax.get_title() and "p = 0.44" in ax.get_title() for ax in fig2.axes)
    finally:
        plt.close(fig)
        plt.close(fig2)


@pytest.mark.slow
def test_figures_stage_is_deterministic(tmp_path, monkeypatch):
    from lib.pipeline import publish as P
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path / "build"))
    res = results(5, no_val_gain=[("t0", "full", 0)])
    a, b = tmp_path / "a", tmp_path / "b"
    P.build("unit", a, results=res)
    P.build("unit", b, results=res)
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert fa == fb and len(fa) > 30
    assert {"tradeoff.png", "tradeoff.pdf", "headline.md", "headline.csv", "claims.md", "claims.csv",
            "MANIFEST.json"} <= {p.name for p in fa}
    for rel in fa:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), f"{rel} differs between two builds"
    assert manifest.verify_manifest(a) == []


@pytest.mark.slow
def test_publish_copies_figures_and_notebooks_and_the_cli_prints_the_headline(tmp_path, monkeypatch, capsys):
    from lib import paths
    from lib.analysis import report as R
    from lib.pipeline import publish as P
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path / "build"))
    rd = paths.ensure(paths.results_dir("unit"))
    for name, df in results(5).items():
        df.to_csv(rd / f"{name}.csv", index=False)
    for nb in P.NOTEBOOKS:
        (paths.profile_dir("unit") / nb).write_text("{}")
    unit = paths.ensure(paths.unit_notebook("unit", "t0").parent)
    (unit / "02_finetune.ipynb").write_text("{}")
    built = P.build("unit", paths.figures_dir("unit"))   # what `publish <profile>` does ('unit' is no profile)
    out = P.summary_text(built, paths.figures_dir("unit"), None)
    assert "| Full |" in out and str(paths.figures_dir("unit")) in out and "2a inconclusive (too few tasks)" in out
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{R.README_BEGIN}\n{R.README_END}\n")
    t = A.compute("unit")
    dest = P.publish("unit", t, dest=tmp_path / "paper_figures", readme=readme)
    nbs = sorted(p.name for p in (dest / "notebooks").iterdir())
    assert nbs == sorted(list(P.NOTEBOOKS) + ["02_finetune_t0.ipynb"])
    assert manifest.verify_manifest(dest) == [] and (dest / "headline.md").exists()
    assert "| Full |" in readme.read_text() and "**World check**" in readme.read_text()
    # 04_figures publishes while it runs: its executed copy is added afterwards, with the manifest
    (dest / "notebooks" / "04_figures.ipynb").unlink()
    assert P.complete_notebooks("unit", dest) == ["04_figures.ipynb"]
    assert (dest / "notebooks" / "04_figures.ipynb").exists() and manifest.verify_manifest(dest) == []
    assert P.complete_notebooks("unit", dest) == []
