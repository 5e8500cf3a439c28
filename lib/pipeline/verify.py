"""``make verify``: is the published run intact, self-consistent, and reproduced by a fresh run?

``python -m lib.pipeline.verify <profile> [<published folder>]`` checks a build of the figures stage,
``build/<profile>/figures/`` (and ``build/<profile>/results/``), against the published folder
(default ``paper_figures/``), in five parts; exit status 1 when any fails, 0 otherwise:

1. **Manifests.** Every file listed in the published ``MANIFEST.json`` (and in the build's) is
   present with its recorded sha256 and size, and no file is there unlisted (``lib.manifest``).
2. **Recomputed.** The figures stage's tables are computed again, now, from the build's result
   tables (``lib.analysis.compute`` + ``lib.analysis.save_tables`` into a temporary folder) and
   compared with the build's figures (same inputs, same code: tolerance ``TOLERANCES["recomputed"]``,
   exact) and with the published ones (``TOLERANCES["published"]``).  Every table the figures stage
   writes must exist on both sides.  So a table edited in ``build/`` and ``paper_figures/`` alike,
   or deleted from both, is caught.  Figures are not redrawn (their hashes are the manifest's).
3. **Tables.** Every CSV of the build (``figures/``, ``results/``) is compared with the published
   one of the same name (``paper_figures/`` or ``paper_figures/results/``); a published table the
   build lacks fails.  Rows are matched by their full key (:data:`KEYS`, or derived when a table
   is not listed there or its declared key no longer identifies a row), rows missing on either side
   are reported, and numbers compared within :data:`TOLERANCES`.
4. **Generated text.** ``claims.md`` (build and published) and the README's results block are
   regenerated from the CSVs beside them with the project's own functions
   (``lib.analysis.write_claims_md``, ``lib.pipeline.publish.update_readme`` on a copy of the
   README) and must equal the files byte for byte; nothing is parsed, so any claims format works.
5. **Verdicts.** Claim by claim (rows of ``claims.csv`` matched on their full key), the build's
   verdict against the published one.  A flip between two decided verdicts (``holds`` /
   ``does not hold``) fails.  A change between an undecided verdict (``inconclusive...``) and a
   decided one fails too, unless ``claims.csv`` (either side) marks the claim ``near_threshold``:
   then it is a warning (the statistic sits within noise of its threshold).

Tolerances (one dict, :data:`TOLERANCES`; a comparison kind -> table -> column -> :class:`Tol`, the
most specific entry wins, ``"*"`` matches any; a Markdown table ``x.md`` takes ``x.csv``'s):

* ``"published"`` -- a fresh run against the published run, from the measured seed-to-seed noise of
  the published run: ``lib/pipeline/tolerances.json``, written by ``python bench/seed_noise.py
  --write`` (every column, its seed SD and its source: ``docs/reliability.md``).  A rerun on another
  machine is treated as another seed: a cell of a per-run / per-split table (runs, lr_sweep,
  seed_aggregate, gain_points, forgetting_vs_ss, finetune, evaluation) may differ by ``k`` times its
  quantity's pooled seed SD, ``k = sqrt(2) z(1 - 0.05 / (2 N))`` over the ``N`` such cells (an honest
  rerun fails with probability <= 5% under normal noise); a number of a table of means over tasks and
  seeds (headline, method_summary, comparisons, effects, alignment, ...) by ``k`` times the noisiest
  gain's seed SD over the square root of the fewest runs behind one mean; zero-shot numbers
  (deterministic) by one unit in the CSVs' last digit.  Integer columns exactly, ``best_epoch`` by one
  epoch; numbers inside text cells (``detail``) the same way, the words around them exactly; timings
  and memory ignored, which no two runs share.
* ``"recomputed"`` -- the same results through the same code on the same machine give the same
  bytes (seeded bootstraps), so the recomputed tables must equal the build's exactly.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import analysis, config, manifest, paths
from ..config import ConfigError, check_profile_name
from . import publish


@dataclass(frozen=True)
class Tol:
    """How two values of one column may differ: ``abs`` or ``rel`` (of the larger magnitude) for
    numbers (and numbers inside text), ``int_slack`` for integer columns; ``ignore`` skips the column."""
    abs: float = 0.0
    rel: float = 0.0
    int_slack: int = 0
    ignore: bool = False


IGNORED = Tol(ignore=True)
_TIMINGS = {c: IGNORED for c in ("train_seconds", "peak_memory_mb", "seconds", "wall_seconds", "steps_per_second")}
TOLERANCES_FILE = Path(__file__).with_name("tolerances.json")   # bench/seed_noise.py --write


def load_tolerances(path: Path = TOLERANCES_FILE) -> dict[str, dict[str, Tol]]:
    """``TOLERANCES["published"]`` from the measured seed noise (``bench/seed_noise.py --write``):
    table -> column -> Tol, with ``"*"`` -> ``"*"`` the file's default, ``best_epoch`` one epoch of
    slack and timings ignored."""
    try:
        doc = json.loads(Path(path).read_text())
        default = doc["default"]
        tables = doc["tables"]
    except (OSError, ValueError, KeyError) as exc:
        raise RuntimeError(f"{path}: make verify's tolerances cannot be read ({type(exc).__name__}: {exc}); "
                           f"rewrite it with `python bench/seed_noise.py --write`") from exc

    def tol(e: dict) -> Tol:
        return Tol(abs=float(e.get("abs", 0.0)), rel=float(e.get("rel", 0.0)))
    d = tol(default)
    out = {"*": {"*": d, "best_epoch": Tol(abs=d.abs, rel=d.rel, int_slack=1), **_TIMINGS}}
    for name, cols in tables.items():
        out[name] = {c: tol(e) for c, e in cols.items()}
    return out


# The tolerance table, in one place: comparison kind -> table (file name) -> column -> Tol ("*": any).
TOLERANCES: dict[str, dict[str, dict[str, Tol]]] = {
    "published": load_tolerances(),
    "recomputed": {"*": {"*": Tol(), **_TIMINGS}},
}


def tolerance(kind: str, table: str, column: str) -> Tol:
    """The most specific entry of ``TOLERANCES[kind]`` for ``table``'s ``column``."""
    t = TOLERANCES[kind]
    if table.endswith(".md") and table not in t:      # a Markdown table: the numbers of its CSV
        table = table[:-3] + ".csv"
    for tab, col in ((table, column), (table, "*"), ("*", column), ("*", "*")):
        if col in t.get(tab, {}):
            return t[tab][col]
    return Tol()


# Row keys per table: rows are matched on these.  A table not listed (or whose declared key columns no
# longer identify a row, e.g. after a column is added or dropped) gets a key derived from its
# non-numeric columns (see ``row_key``).
KEYS = {
    paths.name(paths.ZERO_SHOT_CSV): ["task", "domain", "split"],
    paths.name(paths.FINETUNE_CSV): ["task", "method", "variant", "seed"],
    paths.name(paths.EVALUATION_CSV): ["train_task", "method", "variant", "seed", "eval_task", "eval_domain"],
    paths.name(paths.LR_SWEEP_CSV): ["task", "method", "lr", "seed"],
    # Declared keys list the columns of both formats (study v2: `subset`, `target`; analysis v3:
    # `stratum`, `task`): only those present on both sides are used.
    "claims.csv": ["id", "subset"],
    "claim_tests.csv": ["id", "test"],
    "ablations.csv": ["task", "method", "variant"],
    "alignment.csv": ["method", "schema", "measure", "subset"],
    "collapse.csv": ["method"],
    "run_flags.csv": ["method"],
    "comparisons.csv": ["quantity", "method", "versus", "subset"],
    "effects.csv": ["method", "quantity"],
    "forgetting_spearman.csv": ["method", "subset"],
    "forgetting_vs_ss.csv": ["method", "train_task", "subset"],
    "gain_points.csv": ["method", "task", "domain", "stratum", "subset"],
    "headline.csv": ["method"],
    "method_summary.csv": ["method", "quantity", "subset"],
    "predictor_contrasts.csv": ["contrast", "method", "stratum", "target", "form", "subset"],
    "predictors.csv": ["measure", "method", "stratum", "target", "form", "subset"],
    "runs.csv": ["train_task", "method", "variant", "seed"],
    "seed_aggregate.csv": ["train_task", "method", "variant", "eval_task", "eval_domain"],
    "world_check.csv": ["task"],
    "manipulation_checks.csv": ["check"],
    "training_check.csv": ["task"],
    "sweep_tradeoff.csv": ["method", "lr"],
    "seed_noise.csv": ["method", "quantity"],
    "family_clustering.csv": ["quantity", "method", "versus"],
    "zero_shot_summary.csv": ["task", "domain"],
}
CLAIMS = "claims.csv"
CLAIMS_MD = "claims.md"
DECIDED = ("holds", "does not hold")      # any other verdict ('inconclusive', '... (too few tasks)') is undecided
# Columns of a fresh-vs-published comparison judged elsewhere: a claim's verdict (claim by claim) and its wording.
SKIPPED_COLUMNS = {"claims.csv": {"verdict", "why", "near_threshold"}}
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def _tol_default() -> Tol:
    return tolerance("published", "*", "*")


def close(a: float, b: float, tol: Tol | None = None) -> bool:
    """Whether two numbers agree within ``tol`` (default: the published "*" tolerance; NaN only equals NaN)."""
    tol = tol or _tol_default()
    a_nan = isinstance(a, float) and math.isnan(a)
    b_nan = isinstance(b, float) and math.isnan(b)
    if a_nan or b_nan:
        return a_nan and b_nan
    d = abs(a - b)
    return d <= tol.abs + 1e-12 or d <= tol.rel * max(abs(a), abs(b)) + 1e-12


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _text_close(a: str, b: str, tol: Tol | None = None) -> bool:
    """Same words, and numbers within ``tol`` pairwise."""
    if a == b:
        return True
    if _NUMBER.sub("#", a) != _NUMBER.sub("#", b):
        return False
    return all(close(float(x), float(y), tol) for x, y in zip(_NUMBER.findall(a), _NUMBER.findall(b)))


def _is_true(v) -> bool:
    return not (v is None or (isinstance(v, float) and math.isnan(v))) and \
        str(v).strip().lower() in ("true", "1", "1.0", "yes")


# ----------------------------------------------------------------------------- row keys
def _norm(v):
    """A key cell as a hashable, comparable value (NaN -> None; numbers as float)."""
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    if _is_number(v):
        return float(v)
    return str(v)


def _duplicates(dfs, key: list[str]) -> int:
    if not key:
        return sum(max(len(d) - 1, 0) for d in dfs)
    return sum(int(d[key].astype(object).where(d[key].notna(), None).duplicated().sum()) for d in dfs)


def row_key(name: str, *dfs: pd.DataFrame, skip: set = frozenset()) -> tuple[list[str], str]:
    """The columns that identify a row of table ``name`` in every frame of ``dfs``, and a note.

    The declared key (``KEYS``) columns present in every frame; when they do not identify every row
    (or none is declared), non-numeric columns are added greedily -- the one that leaves the fewest
    duplicate keys, the one with the fewest distinct values on a tie -- until they do.  The note says
    how the key was found ('' when declared and sufficient)."""
    common = [c for c in dfs[0].columns if all(c in d.columns for d in dfs)]
    declared = [k for k in KEYS.get(name, []) if k in common]
    key, note = list(declared), ""
    if _duplicates(dfs, key) == 0 and key:
        return key, note
    cands = [c for c in common if c not in key and c not in skip
             and not any(pd.api.types.is_numeric_dtype(d[c]) or pd.api.types.is_bool_dtype(d[c]) for d in dfs)]
    while _duplicates(dfs, key) and cands:
        best = min(cands, key=lambda c: (_duplicates(dfs, key + [c]), max(d[c].nunique() for d in dfs)))
        if _duplicates(dfs, key + [best]) >= _duplicates(dfs, key):
            break
        key.append(best)
        cands.remove(best)
    if key != declared:
        note = f"rows matched on a derived key ({', '.join(key) or 'none'})"
    if _duplicates(dfs, key):
        note = (f"rows not identified by ({', '.join(key) or 'no column'}): rows with equal keys matched "
                f"in order")
    return key, note


def _keyed_rows(df: pd.DataFrame, key: list[str]) -> dict:
    """Key tuple (+ occurrence number among equal keys) -> row position."""
    out, seen = {}, {}
    for i, row in enumerate(zip(*(df[k] for k in key)) if key else ([()] * len(df))):
        k = tuple(_norm(v) for v in row)
        n = seen.get(k, 0)
        seen[k] = n + 1
        out[(k, n)] = i
    return out


def _show_key(key: list[str], k: tuple) -> str:
    (vals, n) = k
    s = ", ".join(f"{c}={v}" for c, v in zip(key, vals)) if key else f"row {n + 1}"
    return s + (f" #{n + 1}" if key and n else "")


# ----------------------------------------------------------------------------- table comparison
@dataclass
class TableReport:
    name: str
    status: str                      # "identical", "within tolerance", "out of tolerance", "missing", ...
    max_abs_diff: float = 0.0
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    n_problems: int = 0

    @property
    def ok(self) -> bool:
        return self.status in ("identical", "within tolerance", "not published")


def compare_tables(fresh: pd.DataFrame, published: pd.DataFrame, name: str, max_problems: int = 8,
                   kind: str = "published", sides: tuple[str, str] = ("fresh", "published")) -> TableReport:
    """Compare two versions of one table, rows matched on their full key, within ``TOLERANCES[kind]``."""
    rep = TableReport(name, "identical")
    a_side, b_side = sides

    def problem(msg):
        rep.status = "out of tolerance"
        rep.n_problems += 1
        if len(rep.problems) < max_problems:
            rep.problems.append(msg)
    skip = SKIPPED_COLUMNS.get(name, set()) if kind == "published" else set()
    ignored = {c for c in {*fresh.columns, *published.columns} if tolerance(kind, name, c).ignore} | skip
    cols_f = [c for c in fresh.columns if c not in ignored]
    cols_p = [c for c in published.columns if c not in ignored]
    if set(cols_f) != set(cols_p):
        problem(f"columns differ: only {a_side} {sorted(set(cols_f) - set(cols_p))}, "
                f"only {b_side} {sorted(set(cols_p) - set(cols_f))}")
        return rep
    key, note = row_key(name, fresh, published, skip=ignored)
    if note:
        rep.notes.append(note)
    rows_f, rows_p = _keyed_rows(fresh, key), _keyed_rows(published, key)
    for k in rows_p:
        if k not in rows_f:
            problem(f"row missing from {a_side}: {_show_key(key, k)}")
    for k in rows_f:
        if k not in rows_p:
            problem(f"row missing from {b_side}: {_show_key(key, k)}")
    # per column once: its values as plain arrays (a cell read through pandas cost ~40 us, most of
    # make verify's time), its tolerance and whether both sides are integers
    values = [c for c in cols_p if c not in key]
    col_f = {c: fresh[c].to_numpy(dtype=object) for c in values}
    col_p = {c: published[c].to_numpy(dtype=object) for c in values}
    tols = {c: tolerance(kind, name, c) for c in values}
    int_cols = {c for c in values if pd.api.types.is_integer_dtype(published[c].dtype)
                and pd.api.types.is_integer_dtype(fresh[c].dtype)}
    for k, ip in rows_p.items():
        if k not in rows_f:
            continue
        i_f = rows_f[k]
        where = _show_key(key, k)
        for c in values:
            a, b = col_f[c][i_f], col_p[c][ip]
            tol = tols[c]
            a_na, b_na = pd.isna(a), pd.isna(b)
            if a_na or b_na:
                if a_na != b_na:
                    problem(f"{c} at {where}: {a!r} vs {b_side} {b!r}")
                continue
            if _is_number(a) and _is_number(b):
                a, b = float(a), float(b)
                if a == b:
                    continue
                rep.max_abs_diff = max(rep.max_abs_diff, abs(a - b))
                ok = abs(a - b) <= tol.int_slack if c in int_cols else close(a, b, tol)
                if not ok:
                    problem(f"{c} at {where}: {a:.6g} vs {b_side} {b:.6g} (|diff| {abs(a - b):.3g})")
                elif rep.status == "identical":
                    rep.status = "within tolerance"
            else:
                a, b = str(a), str(b)
                if a == b:
                    continue
                if _text_close(a, b, tol):
                    diffs = [abs(float(x) - float(y)) for x, y in zip(_NUMBER.findall(a), _NUMBER.findall(b))]
                    rep.max_abs_diff = max([rep.max_abs_diff, *diffs])
                    if rep.status == "identical":
                        rep.status = "within tolerance"
                else:
                    problem(f"{c} at {where}: {a[:80]!r} vs {b_side} {b[:80]!r}")
    return rep


def compare_text(fresh: str, published: str, name: str, kind: str = "published",
                 sides: tuple[str, str] = ("fresh", "published")) -> TableReport:
    """Two versions of a generated text file (a Markdown table): same words, numbers within tolerance."""
    rep = TableReport(name, "identical")
    if fresh == published:
        return rep
    tol = tolerance(kind, name, "*")
    fl, pl = fresh.splitlines(), published.splitlines()
    if len(fl) != len(pl):
        rep.status, rep.n_problems = "out of tolerance", 1
        rep.problems.append(f"{len(fl)} lines in {sides[0]}, {len(pl)} in {sides[1]}")
        return rep
    for i, (a, b) in enumerate(zip(fl, pl)):
        if a != b and not _text_close(a, b, tol):
            rep.status = "out of tolerance"
            rep.n_problems += 1
            if len(rep.problems) < 3:
                rep.problems.append(f"line {i + 1}: {a[:100]!r} vs {sides[1]} {b[:100]!r}")
        elif a != b and rep.status == "identical":
            rep.status = "within tolerance"
    return rep


# ----------------------------------------------------------------------------- claims
@dataclass
class ClaimReport:
    claim: str
    published: str
    fresh: str | None
    near_threshold: bool = False

    @property
    def same(self) -> bool:
        return self.fresh == self.published

    @property
    def status(self) -> str:
        """'ok', 'warn' (a near-threshold change between undecided and decided) or 'bad'."""
        if self.same:
            return "ok"
        if self.fresh is None or self.published is None:
            return "bad"
        if self.fresh in DECIDED and self.published in DECIDED:
            return "bad"
        return "warn" if self.near_threshold else "bad"


def compare_claims(fresh: pd.DataFrame, published: pd.DataFrame) -> list[ClaimReport]:
    """Verdicts claim by claim, rows matched on the claims table's full key."""
    for side, df in (("fresh", fresh), ("published", published)):
        if "verdict" not in df.columns:
            raise ValueError(f"the {side} {CLAIMS} has no 'verdict' column (columns: {list(df.columns)})")
    key, _ = row_key(CLAIMS, fresh, published, skip={"verdict", "near_threshold", "why"})
    rows_f, rows_p = _keyed_rows(fresh, key), _keyed_rows(published, key)

    def label(k):
        vals, n = k
        s = str(vals[0]) if vals else f"row {n + 1}"
        if len(vals) > 1:
            s += " (" + ", ".join(str(v) for v in vals[1:]) + ")"
        return s + (f" #{n + 1}" if vals and n else "")

    def near(df, i):
        return "near_threshold" in df.columns and _is_true(df["near_threshold"].iat[i])
    out = []
    for k, ip in rows_p.items():
        i_f = rows_f.get(k)
        out.append(ClaimReport(label(k), str(published["verdict"].iat[ip]),
                               None if i_f is None else str(fresh["verdict"].iat[i_f]),
                               near(published, ip) or (i_f is not None and near(fresh, i_f))))
    for k, i_f in rows_f.items():
        if k not in rows_p:
            out.append(ClaimReport(label(k), None, str(fresh["verdict"].iat[i_f]), near(fresh, i_f)))
    return out


# ----------------------------------------------------------------------------- the checks
@dataclass
class Report:
    """Lines of the report, failures and warnings."""
    out: object
    failures: int = 0
    warnings: int = 0

    def section(self, title: str):
        print(title, file=self.out)

    def ok(self, msg: str):
        print(f"  ok   {msg}", file=self.out)

    def bad(self, msg: str, details=()):
        self.failures += 1
        print(f"  BAD  {msg}", file=self.out)
        for d in details:
            print(f"         {d}", file=self.out)

    def warn(self, msg: str, details=()):
        self.warnings += 1
        print(f"  WARN {msg}", file=self.out)
        for d in details:
            print(f"         {d}", file=self.out)

    def table(self, rep: TableReport, label: str = ""):
        name = f"{rep.name}{label}"
        extra = f", max |diff| {rep.max_abs_diff:.3g}" if rep.status == "within tolerance" else ""
        more = [f"... {rep.n_problems - len(rep.problems)} more"] if rep.n_problems > len(rep.problems) else []
        if rep.ok:
            self.ok(f"{name}: {rep.status}{extra}" + "".join(f" ({n})" for n in rep.notes))
        else:
            self.bad(f"{name}: {rep.status}", [*rep.notes, *rep.problems, *more])


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


def check_manifest(folder: Path, rep: Report) -> dict | None:
    """Every listed file present with its hash and size, nothing unlisted; returns the manifest."""
    try:
        doc = manifest.read_manifest(folder)
        problems = manifest.verify_manifest(folder)
    except (OSError, ValueError) as exc:
        rep.bad(f"{folder / manifest.MANIFEST_NAME}: cannot be read ({exc})")
        return None
    n = len(doc.get("files", []))
    if problems:
        rep.bad(f"{folder / manifest.MANIFEST_NAME}: {len(problems)} problem{'s' if len(problems) != 1 else ''}",
                [*problems[:8], *([f"... {len(problems) - 8} more"] if len(problems) > 8 else [])])
    else:
        rep.ok(f"{folder / manifest.MANIFEST_NAME}: {n} files, every hash matches")
    return doc


def recompute(results_dir: Path, out_dir: Path, cfg: dict | None = None) -> dict:
    """The figures stage's tables (not figures) from ``results_dir`` (and the profile ``cfg``, whose
    world design the manipulation checks read), written to ``out_dir``."""
    t = analysis.compute(analysis.load_results(Path(results_dir)), cfg)
    analysis.save_tables(t, out_dir)
    return t


def _provenance(doc: dict | None) -> tuple[str | None, dict | None]:
    """The profile and provenance ``write_claims_md`` was given, from a manifest's ``produced_by``
    (``{"notebook": ..., "profile": ..., **provenance}``, + ``notebooks`` once published)."""
    if not doc:
        return None, None
    pb = dict(doc.get("produced_by") or {})
    profile = pb.get("profile")
    return profile, {k: v for k, v in pb.items() if k not in ("notebook", "notebooks")}


def _first_difference(a: str, b: str, sides=("regenerated", "file")) -> list[str]:
    al, bl = a.splitlines(), b.splitlines()
    for i in range(max(len(al), len(bl))):
        x = al[i] if i < len(al) else "(end of text)"
        y = bl[i] if i < len(bl) else "(end of text)"
        if x != y:
            return [f"first difference at line {i + 1}:", f"{sides[0]}: {x[:110]!r}", f"{sides[1]}: {y[:110]!r}"]
    return ["they differ in line endings or whitespace"]


def check_claims_md(folder: Path, doc: dict | None, rep: Report, tmp: Path):
    """``<folder>/claims.md`` equals the one ``lib.analysis.write_claims_md`` writes from ``<folder>/claims.csv``."""
    md, csv = folder / CLAIMS_MD, folder / CLAIMS
    if not md.is_file() or not csv.is_file():
        rep.bad(f"{md}: cannot check: missing {', '.join(str(p.name) for p in (md, csv) if not p.is_file())}")
        return
    profile, prov = _provenance(doc)
    if profile is None:
        rep.bad(f"{md}: cannot regenerate without the profile and provenance of {folder}/{manifest.MANIFEST_NAME}")
        return
    out = tmp / f"claims_md_{abs(hash(str(folder)))}"
    out.mkdir(parents=True, exist_ok=True)
    try:
        tests = folder / "claim_tests.csv"     # claims.md renders every claim's tests when the table is there
        regenerated = analysis.write_claims_md(_read_csv(csv), out / CLAIMS_MD, profile, prov,
                                               _read_csv(tests) if tests.is_file() else None).read_text()
    except Exception as exc:  # noqa: BLE001 - a claims table the code cannot render is a failure to report
        rep.bad(f"{md}: cannot regenerate from {csv.name}: {type(exc).__name__}: {exc}")
        return
    if regenerated == md.read_text():
        rep.ok(f"{md}: same as regenerated from {csv.name}")
    else:
        rep.bad(f"{md}: differs from the claims.md regenerated from {csv.name} (edited by hand, or stale)",
                _first_difference(regenerated, md.read_text()))


def check_readme(readme: Path, published_dir: Path, doc: dict | None, rep: Report, tmp: Path):
    """The README's results block equals the one ``lib.pipeline.publish.update_readme`` writes from
    the published tables (run on a copy of the README)."""
    profile, _ = _provenance(doc)
    if not Path(readme).is_file():
        rep.bad(f"{readme}: no such file")
        return
    if profile is None:
        rep.bad(f"{readme}: cannot regenerate its results block without the profile of "
                f"{published_dir}/{manifest.MANIFEST_NAME}")
        return
    copy = tmp / "README.md"
    shutil.copyfile(readme, copy)
    t = {p.stem: _read_csv(p) for p in sorted(published_dir.glob("*.csv"))}
    try:
        publish.update_readme(t, profile, copy)
    except Exception as exc:  # noqa: BLE001
        rep.bad(f"{readme}: cannot regenerate its results block from {published_dir}: {type(exc).__name__}: {exc}")
        return
    a, b = copy.read_text(), Path(readme).read_text()
    if a == b:
        rep.ok(f"{readme}: results block same as regenerated from {published_dir}")
    else:
        rep.bad(f"{readme}: results block differs from the one regenerated from {published_dir}'s tables",
                _first_difference(a, b))


def _tables(folder: Path, pattern: str = "*.csv") -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.glob(pattern))} if folder.is_dir() else {}


def _recompute_and_compare(profile: str, res_dir: Path, rdir: Path, fig_dir: Path, published_dir: Path,
                           rep: "Report") -> dict[str, Path]:
    """Part 2: the figures stage's tables recomputed from ``res_dir`` into ``rdir``, each compared with
    the build's (exactly) and the published one (within tolerance). Returns name -> recomputed file."""
    try:
        # the profile's world design feeds the manipulation checks, when the figures stage wrote them
        has_checks = (fig_dir / "manipulation_checks.csv").is_file()
        recompute(res_dir, rdir, config.load_profile(profile) if has_checks else None)
    except Exception as exc:  # noqa: BLE001 - whatever stops the recomputation is reported, and fails
        rep.bad(f"cannot recompute from {res_dir}: {type(exc).__name__}: {exc}")
        return {}
    recomputed = {p.name: p for p in sorted(rdir.iterdir()) if p.is_file()}
    n_same = {"build": 0, "published": 0}
    for name, p in recomputed.items():
        for label, folder, kind in (("build", fig_dir, "recomputed"), ("published", published_dir, "published")):
            other = folder / name
            if not other.is_file():
                rep.bad(f"{name}: written by the figures stage but missing from {folder}")
                continue
            if p.suffix == ".csv":
                r = compare_tables(_read_csv(p), _read_csv(other), name, kind=kind, sides=("recomputed", label))
            else:
                r = compare_text(p.read_text(), other.read_text(), name, kind=kind, sides=("recomputed", label))
            if r.ok:
                n_same[label] += 1
            else:
                rep.table(r, f" (recomputed vs {label})")
    if recomputed:
        rep.ok(f"{len(recomputed)} files recomputed: {n_same['build']} equal to {fig_dir}, "
               f"{n_same['published']} within tolerance of {published_dir}")
    return recomputed


def verify(profile: str, published_dir: Path | None = None, out=sys.stdout, readme: Path | None = None,
           recompute_tables: bool = True) -> int:
    """Check ``build/<profile>`` against ``published_dir`` (default paper_figures/, whose README block
    is then checked too; ``readme`` names another README); returns the exit status.
    ``recompute_tables=False`` leaves out part 2 (the recomputation, ~20 s of study3's analysis) and
    says so: the end of ``make reproduce``, right after the figures stage computed those tables."""
    default = published_dir is None
    published_dir = Path(published_dir or publish.published_dir(profile))
    if readme is None and default:
        readme = publish.README
    pdir = paths.profile_dir(profile)
    fig_dir, res_dir = paths.figures_dir(profile), paths.results_dir(profile)
    build_figs, build_res = _tables(fig_dir), _tables(res_dir)
    pub_figs, pub_res = _tables(published_dir), _tables(published_dir / "results")
    if not published_dir.is_dir() or not (pub_figs or (published_dir / manifest.MANIFEST_NAME).exists()):
        print(f"error: no published tables in {published_dir}", file=out)
        return 1
    if not build_figs:
        print(f"error: no fresh tables in {fig_dir}: run `make reproduce PROFILE={profile}` first", file=out)
        return 1
    rep = Report(out)
    print(f"verify {profile}: {pdir} vs {published_dir} (tolerances: TOLERANCES in lib/pipeline/verify.py, from the "
          f"measured seed noise in {TOLERANCES_FILE.relative_to(paths.ROOT)})", file=out)

    rep.section("manifests (every listed file present with its sha256):")
    pub_doc = check_manifest(published_dir, rep)
    build_doc = check_manifest(fig_dir, rep)

    with tempfile.TemporaryDirectory(prefix="verify-") as tmpname:
        tmp = Path(tmpname)
        rep.section(f"recomputed: the figures stage's tables from {res_dir}:")
        rdir = tmp / "recomputed"
        if recompute_tables:
            recomputed = _recompute_and_compare(profile, res_dir, rdir, fig_dir, published_dir, rep)
            written = set(recomputed)
        else:   # what the figures stage wrote: its manifest's list
            print(f"  --   not recomputed here (the figures stage has just computed them): "
                  f"`make verify PROFILE={profile}` does", file=out)
            written = {f["path"] for f in (build_doc or {}).get("files", [])}

        rep.section("tables (build vs published):")
        for sub, fresh, pub in (("", build_figs, pub_figs), ("results/", build_res, pub_res)):
            for name in sorted(set(fresh) | set(pub)):
                if name not in fresh:
                    rep.bad(f"{sub}{name}: published but missing from {fig_dir if not sub else res_dir}")
                elif name not in pub:
                    if not sub and name not in written:
                        rep.ok(f"{name}: not published")
                    elif sub:
                        rep.ok(f"{sub}{name}: not published")
                    else:   # written by the figures stage, so it belongs in the published folder
                        rep.bad(f"{name}: missing from {published_dir}")
                else:
                    rep.table(compare_tables(_read_csv(fresh[name]), _read_csv(pub[name]), f"{sub}{name}",
                                             sides=("build", "published")))

        rep.section("generated text (regenerated from the CSVs with the project's functions):")
        check_claims_md(fig_dir, build_doc, rep, tmp)
        check_claims_md(published_dir, pub_doc, rep, tmp)
        if readme is not None:
            check_readme(Path(readme), published_dir, pub_doc, rep, tmp)
        else:
            print(f"  --   README results block not checked ({published_dir} is not paper_figures/)", file=out)

    rep.section("claims (build vs published; a decided verdict that flips fails):")
    if CLAIMS not in build_figs or CLAIMS not in pub_figs:
        rep.bad(f"{CLAIMS}: missing from {fig_dir if CLAIMS not in build_figs else published_dir}")
    else:
        try:
            claims = compare_claims(_read_csv(build_figs[CLAIMS]), _read_csv(pub_figs[CLAIMS]))
        except ValueError as exc:
            rep.bad(f"{CLAIMS}: {exc}")
            claims = []
        same = [c for c in claims if c.status == "ok"]
        if same:
            rep.ok(f"{len(same)} of {len(claims)} verdicts the same: " + ", ".join(
                f"{n} {v}" for v, n in pd.Series([c.published for c in same]).value_counts(sort=False).items()))
        for c in claims:
            near = " (near its threshold: within noise)" if c.near_threshold else ""
            if c.status == "ok":
                continue
            elif c.status == "warn":
                rep.warn(f"{c.claim}: published {c.published!r}, build {c.fresh!r}{near}")
            elif c.fresh is None or c.published is None:
                rep.bad(f"{c.claim}: only in {'the build' if c.published is None else 'the published table'} "
                        f"({c.published or c.fresh})")
            else:
                rep.bad(f"{c.claim}: published {c.published!r}, build {c.fresh!r}{near} -- a verdict differs")
    ok = rep.failures == 0
    warn = f", {rep.warnings} warning{'s' if rep.warnings != 1 else ''}" if rep.warnings else ""
    print(f"verify {profile}: {'PASS' if ok else 'FAIL'} ({rep.failures} failure{'s' if rep.failures != 1 else ''}"
          f"{warn})", file=out)
    return 0 if ok else 1


def verify_report(profile: str, out=sys.stdout) -> int:
    """``make verify``'s report on the build against ``paper_figures/`` when that was published from
    ``profile``; a note when it holds another profile (the end of ``make reproduce``:
    ``--report``, which exits 0 either way: the build succeeded, a difference is a finding to read,
    and ``make verify`` is the gate that exits 1 on it). Parts 1 and 3-5 only: the recomputation (part 2)
    would repeat the figures stage that has just run; ``make verify`` does it. Returns verify's status
    (0 when skipped)."""
    where = publish.published_dir(profile)
    pub = publish.published_profile(where)   # verify -> publish only (publish never imports verify)
    if pub != profile:
        print(f"\nNot compared with {where}: it holds profile {pub or '(none)'}, not {profile} "
              f"(make verify PROFILE={profile} compares anyway).", file=out)
        return 0
    print("", file=out)
    status = verify(profile, out=out, recompute_tables=False)
    if status:
        print(f"\nThe build differs from {where} (above). make reproduce does not fail on "
              f"this: the run itself succeeded and its results are in {paths.profile_dir(profile)}; "
              f"`make verify PROFILE={profile}` exits 1 on it. Publish this run on purpose with "
              f"`make publish PROFILE={profile}`.", file=out)
    else:
        print(f"\nThe build agrees with {where} within the tolerances.", file=out)
    return status



def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    report_only = "--report" in argv
    argv = [a for a in argv if a != "--report"]
    if not argv or len(argv) > 2 or (report_only and len(argv) != 1):
        print("usage: python -m lib.pipeline.verify <profile> [<published folder>] | <profile> --report",
              file=sys.stderr)
        return 2
    try:
        check_profile_name(argv[0])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if report_only:
        verify_report(argv[0])
        return 0
    return verify(argv[0], Path(argv[1]) if len(argv) > 1 else None)


if __name__ == "__main__":
    sys.exit(main())
