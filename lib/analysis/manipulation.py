"""The pre-registered manipulation checks of the generated world, decided on ZERO-SHOT numbers only.

    from lib.analysis.manipulation import manipulation_checks, checks_summary
    checks = manipulation_checks(zs, cfg)   # zs: results/zero_shot.csv, cfg: lib.config.load_profile(name)
    print(checks_summary(checks))           # a short Markdown paragraph

Before any fine-tuning result is read, the world must be shown to do what its design says: the
factors move zero-shot alignment the way they were built to, the shifted domains are shifted, and
the tasks span a usable range of difficulty. Each check is one rule on the zero-shot model's test
splits (``split == "test"``); nothing here reads a fine-tuning result, and a failed check is a
finding to report, never a reason to drop a task. The output has one row per check, columns
``COLUMNS`` = check, statistic, value, lo, hi, p, passed (``passed`` empty = reported, not decided).
The numbers of the rules are the module constants named in brackets (one place).

1. **Factor checks** (``factor_<factor>``; only for a profile with ``world.design``). One row per
   task: its zero-shot ID test accuracy and its cell. The task is the unit (its 300 images are
   not independent replications of the factor); the model is the factorial OLS with main effects
   and treatment coding, the reference levels ``REFERENCE`` = low coverage, clean captions, tight
   diversity::

       id_acc ~ C(coverage) + C(caption_noise) + C(diversity)            (one task per family)
       id_acc ~ C(family) + C(coverage) + C(caption_noise) + C(diversity) (replicated families)

   The second form (world v3: every renderer family holds at least two tasks, ``task -> family``
   by :func:`family_of`) blocks on the family, so each factor is estimated from
   the differences between tasks of the same renderer, not between renderers.

   Pre-registered directions (``DIRECTION``): coverage high > low (more pretraining pairs name the
   task's classes, so its images and captions are better aligned); caption_noise noisy < clean
   (half the captions name a wrong class, ``world.levels``); diversity varied < tight (wider
   nuisance ranges, tint and clutter make harder, more varied images). value = the coefficient
   (the other level minus the reference), lo/hi = its two-sided t interval at ``1 - ALPHA`` =
   95%, p = the ONE-SIDED t-test p in the pre-registered direction, Holm-adjusted over the three
   factors together (a factor that cannot be tested counts as p = 1 in the family). passed = the
   adjusted p < ``ALPHA`` (0.05) and the coefficient's sign is the pre-registered one. Not
   decided (passed = False, the statistic says why) when the tasks leave fewer than
   ``MIN_RESIDUAL_DF`` (1) residual degrees of freedom, when a factor has one level only among
   the tasks, or when the factors are confounded (rank-deficient design). Eight tasks, one per
   cell, leave 4 residual df; forty tasks, five per cell, 36.
   The same model on the ID domain's modality silhouette ``ss`` and on ``acs`` is REPORTED, not
   decided (``factor_<factor>_ss (reported)``, passed empty, p two-sided and unadjusted): no
   direction was pre-registered for them.

2. **Shift checks** (``shift_<task>``, one row per task). Strong shift lowers zero-shot accuracy
   below ID, and mild lies between: acc(strong) < acc(ID) and acc(strong) <= acc(mild) <=
   acc(ID). Severity is built into the renderer (mild = the halfway blend of the ID and the
   strong look), so an ordering that fails says the shift does not act on the model as built.
   value = acc(ID) - acc(strong), lo/hi = Newcombe's hybrid-score 95% interval for a difference
   of two proportions (``statsmodels`` ``confint_proportions_2indep(method="newcomb")``). The
   domains' images are renderings of the same samples, but only accuracies are stored, so the
   interval treats them as independent: with correctness positively correlated across the
   renderings of one sample, the unpaired interval is wider than the paired one (conservative).
   p = the one-sided score test (Miettinen-Nurminen, ``test_proportions_2indep(method="score",
   alternative="larger")``) that acc(ID) > acc(strong), Holm-adjusted over the tasks. passed =
   the ordering holds AND the adjusted p < ``ALPHA``. A task whose ID and strong accuracies are
   equal at 0 or 1 gets p = 1 (the score statistic is 0 / 0). A task without a ``*_strong``
   domain (real data: no graded shift) gets a row that is not decided. Domains are read as world v2
   names them: ID = ``domain_kind == "ID"``, mild / strong = the domain ending in ``MILD_SUFFIX``
   / ``STRONG_SUFFIX``.

3. **id_acc_range**: every task's zero-shot ID accuracy lies in [``ID_LO_MULT`` x chance,
   ``ID_HI``] = [1.3 x chance, 0.90] (``lib.analysis.tables.ZS_TARGET``: the study's calibration
   target, docs/world.md): above 0.90 a task leaves fine-tuning too little to gain, near chance
   the zero-shot model has no alignment to measure. Chance, the ID domain and the range are
   those of ``lib.analysis.tables.world_check``. value = the fraction of tasks in range, lo/hi =
   the smallest and largest ID accuracy, statistic names the failing tasks, passed = every task
   in range.

4. **id_acc_spread**: the tasks' ID accuracies cover their range without a hole: no gap wider
   than ``MAX_GAP`` = 0.15 between neighbours of the sorted list (a predictor analysis over tasks
   needs the difficulty spread, not two clusters). value = the largest gap, lo/hi = the two
   accuracies around it, passed = largest gap <= 0.15 (``GAP_TOL`` absorbs float rounding of
   k / n accuracies). Fewer than two tasks: not decided (False).

A profile without ``world.design`` (e.g. ``paper``) gets checks 2-4 only.
"""
from __future__ import annotations

import sys
import warnings

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats as st
from statsmodels.stats.proportion import confint_proportions_2indep, test_proportions_2indep

from .. import config, io, paths, schema, stats
from . import tables
from .formats import fmt_p

# ----------------------------------------------------------------------------- the rules' constants
ALPHA = 0.05                                  # level of every decided test (after Holm)
CONFIDENCE = 1.0 - ALPHA                      # two-sided intervals (95%)
ID_LO_MULT, ID_HI = tables.ZS_TARGET          # ID accuracy in [1.3 x chance, 0.90] (one source: tables)
MAX_GAP = 0.15                                # widest allowed gap between neighbouring ID accuracies
GAP_TOL = 1e-9                                # float rounding of a gap of k / n accuracies
MIN_RESIDUAL_DF = 1                           # the factorial OLS needs at least this many residual df
# factor -> reference level (treatment coding); the other level is compared with it
REFERENCE = {"coverage": "low", "caption_noise": "clean", "diversity": "tight"}
# factor -> (the other level, the pre-registered sign of other - reference on zero-shot ID accuracy)
DIRECTION = {"coverage": ("high", +1), "caption_noise": ("noisy", -1), "diversity": ("varied", -1)}
FACTORS = tuple(REFERENCE)
REPORTED_MEASURES = ("ss", "acs")             # same model, reported only
MILD_SUFFIX, STRONG_SUFFIX = "_mild", "_strong"

COLUMNS = ["check", "statistic", "value", "lo", "hi", "p", "passed"]
REPORTED = " (reported)"                      # suffix of a reported, not decided, row's check name


def _row(check, statistic, value=np.nan, lo=np.nan, hi=np.nan, p=np.nan, passed=np.nan) -> dict:
    return dict(check=check, statistic=statistic, value=float(value), lo=float(lo), hi=float(hi), p=float(p),
                passed=passed)


def _test_split(zs: pd.DataFrame) -> pd.DataFrame:
    if "split" in zs.columns:
        zs = zs[zs["split"] == "test"]
    if not len(zs):
        raise ValueError("zero_shot table has no test rows (split == 'test')")
    return zs.reset_index(drop=True)


# ----------------------------------------------------------------------------- 1. factors
def task_cells(zs: pd.DataFrame, design: dict) -> pd.DataFrame:
    """One row per task (world order): id_acc (``tables.world_check``), the ID domain's reported
    measures and the task's level of each factor (from ``world.design``)."""
    wc = tables.world_check(zs)
    wc = wc[wc["task"] != "all"]
    zid = zs[zs["domain_kind"] == "ID"].drop_duplicates("task").set_index("task")
    out = pd.DataFrame({"task": wc["task"].to_numpy(), "id_acc": wc["id_acc"].astype(float).to_numpy()})
    for m in REPORTED_MEASURES:
        if m in zid.columns:
            out[m] = out["task"].map(zid[m].astype(float)).to_numpy()
    missing = [t for t in out["task"] if t not in design]
    if missing:
        raise ValueError(f"tasks {missing} have no cell in world.design")
    for f in FACTORS:
        allowed = (REFERENCE[f], DIRECTION[f][0])
        levels = [(design[t] or {}).get(f) for t in out["task"]]
        bad = sorted({str(v) for v in levels if v not in allowed})
        if bad:
            raise ValueError(f"world.design: factor {f} has levels {bad}; valid: {list(allowed)}")
        out[f] = levels
    out["family"] = [family_of(t) for t in out["task"]]
    return out


# lib.world.variants.INSTANCES + INSTANCES_V4 (a test checks they agree)
INSTANCE_SUFFIXES = tuple(f"_{k}" for k in "abcdefghijklmnop")


def family_of(task: str) -> str:
    """The renderer family of a task: a world-v3/v4 instance ``<family>_<a-p>`` belongs to ``<family>``,
    any other task is its own family (the rule of ``lib.world.variants.family_of``, restated here so
    the analysis does not import the world generator and torch; tests/test_manipulation.py checks
    that both agree on every task)."""
    return task[:-2] if task.endswith(INSTANCE_SUFFIXES) else task


def _coef_name(params_index, factor: str) -> str | None:
    other = DIRECTION[factor][0]
    hit = [n for n in params_index if n.startswith(f"C({factor},") and n.endswith(f"[T.{other}]")]
    return hit[0] if hit else None


def _factor_fit(cells: pd.DataFrame, outcome: str):
    """Fit ``outcome ~ main effects`` over the tasks. Returns (fit or None, testable factors,
    {factor: reason it is not decided}, residual df)."""
    d = cells.dropna(subset=[outcome])
    why = {f: f"only level {d[f].iloc[0] if len(d) else '-'} present among the tasks: effect not estimable"
           for f in FACTORS if d[f].nunique() < 2}
    used = [f for f in FACTORS if f not in why]
    df_resid = len(d) - 1 - len(used)
    if not used:
        return None, used, why, df_resid
    rhs = " + ".join(f"C({f}, Treatment(reference='{REFERENCE[f]}'))" for f in used)
    if "family" in d and d["family"].nunique() < len(d) and d["family"].value_counts().min() >= 2:
        rhs = "C(family) + " + rhs  # replicated families: block on the renderer
        df_resid -= d["family"].nunique() - 1
    model = smf.ols(f"{outcome} ~ {rhs}", data=d)
    if np.linalg.matrix_rank(model.exog) < model.exog.shape[1]:
        why.update({f: "factors confounded among the tasks (rank-deficient design): not estimable" for f in used})
        return None, [], why, df_resid
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        fit = model.fit()
    if df_resid < MIN_RESIDUAL_DF:
        why.update({f: f"the design leaves {df_resid} residual df (needs >= {MIN_RESIDUAL_DF}): not tested"
                    for f in used})
    return fit, used, why, df_resid


def _factor_rows(cells: pd.DataFrame) -> tuple[list[dict], list[dict]]:
    """Decided rows on id_acc (Holm over the factors) and reported rows on ss / acs."""
    fit, used, why, df_resid = _factor_fit(cells, "id_acc")
    est = {f: np.nan for f in FACTORS}
    ci = {f: (np.nan, np.nan) for f in FACTORS}
    p1 = {f: np.nan for f in FACTORS}
    if fit is not None:
        for f in used:
            name = _coef_name(fit.params.index, f)
            est[f] = float(fit.params[name])
            if f not in why:
                conf = fit.conf_int(alpha=ALPHA)
                ci[f] = (float(conf.loc[name, 0]), float(conf.loc[name, 1]))
                t = float(fit.tvalues[name]) * DIRECTION[f][1]
                p1[f] = float(st.t.sf(t, fit.df_resid))
    family = np.array([p1[f] if np.isfinite(p1[f]) else 1.0 for f in FACTORS])
    adj = dict(zip(FACTORS, stats.holm(family)))
    rows = []
    for f in FACTORS:
        other, sign = DIRECTION[f]
        ref = REFERENCE[f]
        side = ">" if sign > 0 else "<"
        text = (f"OLS main effect on zero-shot ID accuracy ({other}-{ref}) over {len(cells)} tasks, "
                f"{max(df_resid, 0)} residual df; lo/hi {CONFIDENCE:.0%} t interval; p one-sided "
                f"({other} {side} {ref}), Holm-adjusted over the {len(FACTORS)} factors")
        if f in why:
            rows.append(_row(f"factor_{f}", f"{text}; NOT DECIDED: {why[f]}", est[f], passed=False))
            continue
        ok = bool(adj[f] < ALPHA and np.sign(est[f]) == sign)
        if not ok:
            text += "; wrong sign" if np.sign(est[f]) != sign else f"; adjusted p >= {ALPHA}"
        rows.append(_row(f"factor_{f}", text, est[f], *ci[f], adj[f], ok))

    reported = []
    for m in REPORTED_MEASURES:
        if m not in cells or not np.isfinite(cells[m]).any():
            continue
        fit, used, why, df_resid = _factor_fit(cells, m)
        conf = fit.conf_int(alpha=ALPHA) if fit is not None and df_resid >= MIN_RESIDUAL_DF else None
        for f in FACTORS:
            other, ref = DIRECTION[f][0], REFERENCE[f]
            text = (f"reported, not decided: OLS main effect on the ID domain's zero-shot {m} ({other}-{ref}), "
                    f"{max(df_resid, 0)} residual df; lo/hi {CONFIDENCE:.0%} t interval; p two-sided, unadjusted")
            name = _coef_name(fit.params.index, f) if fit is not None and f in used else None
            if name is None:
                reported.append(_row(f"factor_{f}_{m}{REPORTED}", f"{text}; {why.get(f, 'not estimable')}"))
            elif f in why:
                reported.append(_row(f"factor_{f}_{m}{REPORTED}", f"{text}; {why[f]}", fit.params[name]))
            else:
                reported.append(_row(f"factor_{f}_{m}{REPORTED}", text, fit.params[name], conf.loc[name, 0],
                                     conf.loc[name, 1], fit.pvalues[name]))
    return rows, reported


# ----------------------------------------------------------------------------- 2. shifts
def _shift_test(acc_id: float, n_id: int, acc_s: float, n_s: int) -> tuple[float, float, float]:
    """(lo, hi) Newcombe interval of acc_id - acc_s and the one-sided score-test p of acc_id > acc_s."""
    k1, k2 = int(round(acc_id * n_id)), int(round(acc_s * n_s))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        lo, hi = confint_proportions_2indep(k1, n_id, k2, n_s, method="newcomb", compare="diff",
                                            alpha=1.0 - CONFIDENCE)
        p = test_proportions_2indep(k1, n_id, k2, n_s, method="score", compare="diff",
                                    alternative="larger").pvalue
    p = float(p) if np.isfinite(p) else 1.0   # equal at 0 or 1: the score statistic is 0 / 0
    return max(float(lo), -1.0), min(float(hi), 1.0), p


def _shift_rows(zs: pd.DataFrame) -> list[dict]:
    tasks = list(dict.fromkeys(zs["task"]))
    n_all = "n_images" in zs.columns
    info = []
    for t in tasks:
        g = zs[zs["task"] == t]
        gid = g[g["domain_kind"] == "ID"]
        ood = g[g["domain_kind"] != "ID"]
        strong = ood[ood["domain"].astype(str).str.endswith(STRONG_SUFFIX)]
        mild = ood[ood["domain"].astype(str).str.endswith(MILD_SUFFIX)]
        if not len(gid) or not len(strong) or not n_all:
            reason = ("no ID domain" if not len(gid) else f"no '*{STRONG_SUFFIX}' domain (no graded shift)"
                      if not len(strong) else "no n_images column")
            info.append(dict(task=t, skip=reason))
            continue
        a_id, a_s = float(gid["acc"].iloc[0]), float(strong["acc"].iloc[0])
        a_m = float(mild["acc"].iloc[0]) if len(mild) else np.nan
        lo, hi, p = _shift_test(a_id, int(gid["n_images"].iloc[0]), a_s, int(strong["n_images"].iloc[0]))
        order = [f"strong {a_s:.3f} >= ID {a_id:.3f}"] if not a_s < a_id else []
        if len(mild):
            if a_m < a_s:
                order.append(f"mild {a_m:.3f} < strong {a_s:.3f}")
            if a_m > a_id:
                order.append(f"mild {a_m:.3f} > ID {a_id:.3f}")
        info.append(dict(task=t, skip=None, a_id=a_id, a_m=a_m, a_s=a_s, lo=lo, hi=hi, p=p, order=order,
                         has_mild=bool(len(mild))))
    tested = [i for i in info if i["skip"] is None]
    adj = stats.holm([i["p"] for i in tested]) if tested else []
    for i, a in zip(tested, adj):
        i["p_adj"] = float(a)
    rows = []
    for i in info:
        check = f"shift_{i['task']}"
        if i["skip"] is not None:
            rows.append(_row(check, f"acc(ID) - acc(strong): not applicable, {i['skip']}"))
            continue
        accs = f"ID {i['a_id']:.3f}, mild {i['a_m']:.3f}, strong {i['a_s']:.3f}" if i["has_mild"] else \
            f"ID {i['a_id']:.3f}, strong {i['a_s']:.3f} (no mild domain)"
        text = (f"acc(ID) - acc(strong) ({accs}); lo/hi Newcombe hybrid-score {CONFIDENCE:.0%} interval (unpaired, "
                f"conservative); p one-sided score test ID > strong, Holm-adjusted over {len(tested)} tasks")
        ok = not i["order"] and i["p_adj"] < ALPHA
        if i["order"]:
            text += "; order fails: " + ", ".join(i["order"])
        elif not ok:
            text += f"; adjusted p >= {ALPHA}"
        rows.append(_row(check, text, i["a_id"] - i["a_s"], i["lo"], i["hi"], i["p_adj"], bool(ok)))
    return rows


# ----------------------------------------------------------------------------- 3-4. ID accuracy
def _range_spread_rows(zs: pd.DataFrame) -> list[dict]:
    wc = tables.world_check(zs)
    wc = wc[wc["task"] != "all"]
    acc = wc["id_acc"].astype(float).to_numpy()
    inr = wc["in_range"].astype(bool).to_numpy()
    bad = [f"{t} ({a:.3f} {'> ' + format(h, '.2f') if a > h else '< ' + format(lo, '.3f')})"
           for t, a, lo, h, ok in zip(wc["task"], acc, wc["target_lo"].astype(float), wc["target_hi"].astype(float),
                                      inr) if not ok]
    text = f"fraction of tasks with zero-shot ID accuracy in [{ID_LO_MULT:g} x chance, {ID_HI:.2f}]; lo/hi min / max"
    text += "; out of range: " + ", ".join(bad) if bad else "; all in range"
    rows = [_row("id_acc_range", text, inr.mean() if len(inr) else np.nan, np.min(acc), np.max(acc),
                 passed=bool(len(inr) and inr.all()))]
    s = np.sort(acc[np.isfinite(acc)])
    text = f"largest gap between neighbouring sorted ID accuracies (allowed <= {MAX_GAP:.2f}); lo/hi the two accuracies"
    if len(s) < 2:
        rows.append(_row("id_acc_spread", f"{text}; NOT DECIDED: fewer than 2 tasks", passed=False))
    else:
        gaps = np.diff(s)
        k = int(np.argmax(gaps))
        ok = bool(gaps[k] <= MAX_GAP + GAP_TOL)
        rows.append(_row("id_acc_spread", text + ("" if ok else f"; gap {gaps[k]:.3f} > {MAX_GAP:.2f}"),
                         gaps[k], s[k], s[k + 1], passed=ok))
    return rows


# ----------------------------------------------------------------------------- public
def manipulation_checks(zs: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """The pre-registered manipulation checks (module docstring) on a zero-shot table (schema
    ``lib.schema.ZERO_SHOT``; its test rows are used) for the profile ``cfg``
    (``lib.config.load_profile``). One row per check, columns ``COLUMNS``, in the order: the three
    decided factor rows (only when ``cfg['world']['design']`` exists), one shift row per task, the
    ID range, the ID spread, then the reported factor rows on ss / acs (``passed`` NaN)."""
    zs = _test_split(zs)
    need = [c for c in ("task", "domain", "domain_kind", "acc") if c not in zs.columns]
    if need:
        raise ValueError(f"zero_shot table lacks columns {need}")
    design = ((cfg or {}).get("world") or {}).get("design")
    factor_rows, reported = ([], [])
    if design:
        factor_rows, reported = _factor_rows(task_cells(zs, design))
    rows = factor_rows + _shift_rows(zs) + _range_spread_rows(zs) + reported
    out = pd.DataFrame(rows, columns=COLUMNS)
    out["passed"] = out["passed"].astype(object)
    return out


def decided(df: pd.DataFrame) -> pd.DataFrame:
    """The decided rows of ``manipulation_checks`` (``passed`` True / False, not the reported ones)."""
    return df[df["passed"].map(lambda v: isinstance(v, (bool, np.bool_)))]


def checks_summary(df: pd.DataFrame) -> str:
    """A short Markdown paragraph: how many decided checks passed and which failed (with value and p)."""
    d = decided(df)
    passed = d["passed"].astype(bool)
    n_rep = len(df) - len(d)
    lines = f"**Manipulation checks** (pre-registered, zero-shot only): {int(passed.sum())} of {len(d)} passed"
    failed = d[~passed]
    if len(failed):
        items = []
        for r in failed.itertuples(index=False):
            v = f"{r.value:+.3f}" if np.isfinite(r.value) else "n/a"
            items.append(f"`{r.check}` ({v}" + (f", p = {fmt_p(r.p)})" if np.isfinite(r.p) else ")"))
        lines += "; failed: " + ", ".join(items) + "."
    else:
        lines += "; none failed."
    if n_rep:
        lines += f" {n_rep} further rows are reported, not decided (factor effects on ss and ACS)."
    return lines


def main(argv=None) -> int:
    """``python -m lib.analysis.manipulation <profile>``: the checks of a profile's zero-shot stage
    (``make zero-shot PROFILE=<profile>`` first), written to ``build/<profile>/checks/manipulation_checks.csv`` and summarised on stdout. For a world whose later stages are not run yet; the figures
    stage publishes the same table as ``manipulation_checks.csv``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m lib.analysis.manipulation <profile>", file=sys.stderr)
        return 2
    profile = config.check_profile_name(argv[0])
    f = paths.product(profile, paths.ZERO_SHOT_CSV)
    if not f.exists():
        print(f"error: {f} does not exist: run `make zero-shot PROFILE={profile}` first", file=sys.stderr)
        return 1
    df = manipulation_checks(schema.read_table(f, schema.ZERO_SHOT, profile), config.load_profile(profile))
    out = paths.ensure(paths.profile_dir(profile) / "checks")
    io.write_csv(df, out / "manipulation_checks.csv")
    print(checks_summary(df))
    print(f"table: {out / 'manipulation_checks.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# ----------------------------------------------------------------------------- tasks as units
CLUSTERING_COLUMNS = ["quantity", "method", "versus", "n_tasks", "n_families", "icc", "f_p", "design_effect"]


def _icc1(values: np.ndarray, groups: np.ndarray) -> tuple[float, float, float]:
    """ICC(1) of ``values`` by ``groups`` (one-way ANOVA estimator), the F test's p of the group effect
    (``scipy.stats.f_oneway``) and the unbalanced group size k0. Written here: statsmodels and scipy
    have no ICC (pingouin's is not a dependency), and it is the textbook ANOVA formula."""
    names = sorted(set(groups.tolist()))
    parts = [values[groups == g] for g in names]
    n, g = values.size, len(parts)
    grand = values.mean()
    msb = sum(p.size * (p.mean() - grand) ** 2 for p in parts) / (g - 1)
    msw = sum(((p - p.mean()) ** 2).sum() for p in parts) / (n - g)
    k0 = (n - sum(p.size ** 2 for p in parts) / n) / (g - 1)
    den = msb + (k0 - 1) * msw
    icc = float((msb - msw) / den) if den > 0 else np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = float(st.f_oneway(*parts).pvalue)
    return icc, p, float(k0)


def family_clustering(runs: pd.DataFrame, variant: str = "default") -> pd.DataFrame:
    """Are the tasks of one renderer family more alike than tasks of different families? Every test
    of the claims treats the tasks as independent units; world v3 nests them 4 to a family. For the
    per-task values of every paired comparison (a - b, ``tables.task_values``) and every one-sample
    effect (``versus`` '-'): the intraclass correlation ICC(1) by family (:func:`family_of`), the F
    test's p of the family effect, and the design effect 1 + (k0 - 1) max(ICC, 0) (how much the
    clustering would inflate a variance computed as if the tasks were independent; 1 = none). A
    diagnostic of the analysis's assumption, written after study3's results were seen (docs/methods.md,
    "Tasks as units"); no verdict reads it. Empty unless at least two families hold two or more tasks."""
    r = runs[runs["variant"] == variant]
    tasks = sorted(r["train_task"].unique())
    fam = pd.Series({t: family_of(t) for t in tasks})
    if (fam.value_counts() >= 2).sum() < 2:
        return pd.DataFrame(columns=CLUSTERING_COLUMNS)
    ms = tables.methods_in(r)
    keys = [(q, a, b) for q in tables.COMPARED for i, a in enumerate(ms) for b in ms[i + 1:]]
    keys += [(q, a, None) for q in tables.EFFECT_QUANTITIES for a in ms]
    rows = []
    for q, a, b in keys:
        v = tables.task_values(r, q, a, b, variant)
        vals, ok = v.to_numpy(float), np.isfinite(v.to_numpy(float))
        groups = fam.reindex(v.index[ok]).to_numpy()
        n_fam = len(set(groups.tolist()))
        if ok.sum() < 3 or n_fam < 2 or n_fam == ok.sum():
            continue
        icc, p, k0 = _icc1(vals[ok], groups)
        rows.append(dict(quantity=q, method=a, versus=b or "-", n_tasks=int(ok.sum()), n_families=n_fam, icc=icc, f_p=p,
                         design_effect=1 + (k0 - 1) * max(icc, 0.0) if np.isfinite(icc) else np.nan))
    return pd.DataFrame(rows, columns=CLUSTERING_COLUMNS)
