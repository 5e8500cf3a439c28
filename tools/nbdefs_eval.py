"""Cells of notebook 04_figures and the analysis cells appended to 03_evaluate (used by tools/nbdefs.py)."""
from nbgen import code, header, md, params_cell


def evaluate_analysis_cells():
    """Appended to 03_evaluate, after the evaluation ran (``ev`` and ``zs`` in scope)."""
    return [
        md("## Over seeds\nEvery (run configuration, eval split): mean over seeds and 95% Student-t CI "
           "(`_lo`, `_hi`; NaN with one seed). `gain` = fine-tuned − zero-shot accuracy; `forgetting` = "
           "zero-shot − fine-tuned accuracy on the CF rows (other tasks); `d_acs`, `d_silhouette`: change of "
           "the alignment measures on that split."),
        code('''
from lib import analysis
analysis.seed_aggregate(ev).round(3)
'''),
        md("## Per method\nID gain, DG gain and CF drop (forgetting), each averaged over a run's eval rows, then "
           "over training tasks; CI over seeds of the task average. `balance` = DG gain − CF drop. "
           "`cf_abs_d_*`: mean absolute change of ss / ACS on the other tasks (how far the method moves their "
           "embeddings)."),
        code('''
analysis.method_summary(ev).round(3)
'''),
        md("## Which zero-shot measure predicts the gain?\nSpearman ρ between each zero-shot measure of a "
           "(task, domain) and the seed-averaged fine-tuning gain on it (ID: the trained task's ID domain, "
           "DG: its shifted domains), per method and pooled (gain averaged over methods); 95% bootstrap CI. "
           "`expected_sign`: the sign a measure of *difficulty* should show (ss +, ACS −)."),
        code('''
analysis.predictors(zs, ev).round(3)
'''),
    ]


def figures():
    return header("04_figures", "04 · Figures and the paper's claims",
                  "Reads the result tables of the profile (`build/<profile>/results/{zero_shot,finetune,"
                  "evaluation}.csv`), computes the summary tables (CSV + Markdown), draws every figure (PNG + PDF) "
                  "and tests the paper's four claims on this data. Everything goes to `build/<profile>/figures/`, "
                  "including `claims.md`. All logic is in `lib/analysis.py` and `lib/plots.py`; the verdicts are "
                  "computed, never written by hand.") + [
        params_cell('''
profile = "smoke"
publish = False
'''),
        code('''
from lib import analysis, config, paths, plots, provenance
res = analysis.load_results(profile)
out_dir = paths.ensure(paths.figures_dir(profile))
{name: df.shape for name, df in res.items()}
'''),
        md("## Tables\nAll derived tables at once (bootstrap CIs are seeded: the same inputs give the same "
           "numbers); each is saved as `<name>.csv` and `<name>.md` next to the figures."),
        code('''
tables = analysis.all_tables(res)
[p.name for p in analysis.save_tables(tables, out_dir)]
'''),
        md("### Per method, averaged over training tasks\nID gain (trained task, ID test), DG gain (its shifted "
           "domains), CF drop (forgetting on every other task), balance = DG gain − CF drop, and the change of "
           "ss / ACS on DG and CF data. Accuracy differences are fractions (0.05 = 5 points); `_lo`/`_hi`: 95% "
           "CI over seeds (NaN with one seed)."),
        code('''
analysis.show(tables["method_summary"])
'''),
        md("### Gain vs zero-shot misalignment\nEach point is one (task, domain) of the trained task and one "
           "method: x = the zero-shot measure on that data, y = the seed-averaged fine-tuning gain (circles: ID "
           "test, triangles: shifted domains; black bars: mean over methods). Titles: Spearman ρ of the mean "
           "gain with ss (left, expected +) and ACS (right, expected −)."),
        code('''
plots.difficulty_vs_gain(tables["zero_shot"], tables["evaluation"]);
'''),
        md("All predictors: Spearman ρ (95% bootstrap CI) of each zero-shot measure with the gain, per method "
           "and pooled, on ID points, DG points and both."),
        code('''
analysis.show(tables["predictors"])
'''),
        md("### ID, DG and CF per method\nBars: mean over training tasks; error bars: 95% CI over seeds."),
        code('''
plots.method_bars(tables["method_summary"]);
'''),
        md("### The trade-off\nDG gain against CF drop; up and to the left is better. Dotted lines have equal "
           "balance (DG gain − CF drop)."),
        code('''
plots.tradeoff(tables["method_summary"]);
'''),
        md("### Forgetting vs the trained task's zero-shot ss\nOne point per training task (its ID-domain "
           "zero-shot ss), y = mean CF drop on the other tasks; one panel per method, with Spearman ρ over tasks."),
        code('''
plots.forgetting_vs_ss(tables["forgetting_vs_ss"]);
'''),
        code('''
analysis.show(tables["forgetting_spearman"])
'''),
        md("### How far each method moves the embedding space\nss and ACS of the zero-shot model (dashed) and "
           "after fine-tuning (dot; the line shows the change; bars: 95% CI over seeds) on the trained task's "
           "shifted domains (DG) and on the other tasks (CF). Lower ss / higher ACS = image and text embeddings "
           "closer together."),
        code('''
plots.alignment_shift(tables["evaluation"]);
'''),
        code('''
analysis.show(tables["alignment"])
'''),
        md("### A-CLIP ablations\nA-CLIP variants (subsets of the attention in-projection, first blocks only, one "
           "encoder only) next to the default methods, all restricted to the tasks and seeds the ablations ran on "
           "(see the note under the table)."),
        code('''
if len(tables["ablations"]):
    plots.ablations(tables["ablations"]);
'''),
        code('''
print(tables["ablations"].attrs.get("note", ""))
analysis.show(tables["ablations"])
'''),
        md("## The paper's claims on this data\nEach claim: the statistic, its value (accuracy differences in "
           "points), the verdict computed from it and the rule behind the verdict. `inconclusive` means this "
           "data cannot decide (e.g. one seed, or too few tasks for a correlation)."),
        code('''
from IPython.display import Markdown
Markdown(analysis.claims_markdown(tables["claims"], profile))
'''),
        md("## Save\nEvery figure as PNG and PDF, and `claims.md` with the provenance (git commit, package "
           "versions, input-table hashes). With `publish = True` the figures folder is also copied to "
           "`paper_figures/`."),
        code('''
saved = plots.figure_all(tables, out_dir)
prov = provenance.collect(config.load_profile(profile), inputs=analysis.input_fingerprints(profile))
claims_md = analysis.write_claims_md(tables["claims"], out_dir / "claims.md", profile, prov)
if publish:
    analysis.publish_figures(profile)
[p.name for p in saved] + [claims_md.name]
'''),
    ]
