"""``make verify``: does a fresh run reproduce the published tables and every claim's verdict?

``python -m lib.pipeline.verify <profile>`` compares the fresh tables of ``build/<profile>/figures/*.csv``
and ``build/<profile>/results/*.csv`` with the published ones in ``paper_figures/`` (same file name,
or under ``paper_figures/results/``) and reports, claim by claim from ``claims.csv``, whether every
verdict is the same.  Exit status 1 when a verdict differs, a published table is missing from the
fresh run, or a table is out of tolerance; 0 otherwise.

On the same machine (same kernels, same thread count) a fresh run gives the same bytes and every
difference below is 0.  Across machines the pins of ``lib.determinism`` give the same bytes on any
x86-64 processor with AVX2; what they cannot pin (another BLAS build, another thread count, a GPU)
moves numbers by floating-point noise that fine-tuning amplifies, and that is what the tolerances
allow.  They are stated here, once:

* ``ABS_TOL`` -- bounded measures (accuracies, ACS, silhouettes, correlations, gaps and their CI
  bounds live in [-1, 1] or [0, 1]): two numbers agree when they differ by at most 0.02, i.e. two
  percentage points of accuracy (10 test images of 500 on ``mini``);
* ``REL_TOL`` -- any number (losses, unbounded statistics): or when they differ by at most 2% of
  the larger magnitude;
* ``INT_TOL`` -- integer columns must match exactly, except the listed ones (``best_epoch`` may
  move by one epoch);
* numbers inside text cells (``claims.csv``'s ``value`` and ``why``) are compared the same way, the
  words around them exactly;
* ``IGNORED_COLUMNS`` -- timings and memory, which no two runs share.

A verdict must be identical (``holds`` / ``does not hold`` / ``inconclusive``).  When the fresh
``claims.csv`` has a ``near_threshold`` column, claims flagged there are reported as sitting
within noise of their decision threshold; their verdict must still match.
"""
from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import paths

ABS_TOL = 0.02
REL_TOL = 0.02
INT_TOL = {"best_epoch": 1}
IGNORED_COLUMNS = {"train_seconds", "peak_memory_mb", "seconds", "wall_seconds", "steps_per_second"}
# Row keys per table (rows are matched on these; other tables are matched by position).
KEYS = {
    "zero_shot.csv": ["task", "domain", "split"],
    "finetune.csv": ["task", "method", "variant", "seed"],
    "evaluation.csv": ["train_task", "method", "variant", "seed", "eval_task", "eval_domain"],
    "claims.csv": ["id"],
}
CLAIMS = "claims.csv"
# Columns judged elsewhere: a claim's verdict (claim by claim, below) and the wording derived from it.
SKIPPED_COLUMNS = {"claims.csv": {"verdict", "why", "near_threshold"}}
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def close(a: float, b: float) -> bool:
    """Whether two numbers agree within the stated tolerances (NaN only equals NaN)."""
    if isinstance(a, float) and math.isnan(a) or isinstance(b, float) and math.isnan(b):
        return (isinstance(a, float) and math.isnan(a)) and (isinstance(b, float) and math.isnan(b))
    d = abs(a - b)
    return d <= ABS_TOL + 1e-12 or d <= REL_TOL * max(abs(a), abs(b)) + 1e-12


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _text_close(a: str, b: str) -> bool:
    if a == b:
        return True
    if _NUMBER.sub("#", a) != _NUMBER.sub("#", b):
        return False
    return all(close(float(x), float(y)) for x, y in zip(_NUMBER.findall(a), _NUMBER.findall(b)))


@dataclass
class TableReport:
    name: str
    status: str                      # "identical", "within tolerance", "out of tolerance", "missing", ...
    max_abs_diff: float = 0.0
    problems: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("identical", "within tolerance", "not published")


def compare_tables(fresh: pd.DataFrame, published: pd.DataFrame, name: str, max_problems: int = 8) -> TableReport:
    """Compare two versions of one table within the tolerances above."""
    rep = TableReport(name, "identical")

    def problem(msg):
        rep.status = "out of tolerance"
        if len(rep.problems) < max_problems:
            rep.problems.append(msg)
    skip = IGNORED_COLUMNS | SKIPPED_COLUMNS.get(name, set())
    cols_f = [c for c in fresh.columns if c not in skip]
    cols_p = [c for c in published.columns if c not in skip]
    if set(cols_f) != set(cols_p):
        problem(f"columns differ: only fresh {sorted(set(cols_f) - set(cols_p))}, "
                f"only published {sorted(set(cols_p) - set(cols_f))}")
        return rep
    if len(fresh) != len(published):
        problem(f"{len(fresh)} rows, published {len(published)}")
        return rep
    keys = [k for k in KEYS.get(name, []) if k in cols_p]
    if keys:
        fresh = fresh.sort_values(keys, kind="stable").reset_index(drop=True)
        published = published.sort_values(keys, kind="stable").reset_index(drop=True)
    else:
        fresh, published = fresh.reset_index(drop=True), published.reset_index(drop=True)
    for c in cols_p:
        f, p = fresh[c], published[c]
        for i in range(len(p)):
            a, b = f.iat[i], p.iat[i]
            where = f"row {i + 1}" + (" (" + ", ".join(f"{k}={published[k].iat[i]}" for k in keys) + ")" if keys else "")
            a_na, b_na = pd.isna(a), pd.isna(b)
            if a_na or b_na:
                if a_na != b_na:
                    problem(f"{c} at {where}: {a!r} vs published {b!r}")
                continue
            num = _is_number(a) and _is_number(b)
            if num:
                a, b = float(a), float(b)
                if a == b:
                    continue
                rep.max_abs_diff = max(rep.max_abs_diff, abs(a - b))
                ints = pd.api.types.is_integer_dtype(p.dtype) and pd.api.types.is_integer_dtype(f.dtype)
                ok = abs(a - b) <= INT_TOL.get(c, 0) if ints else close(a, b)
                if not ok:
                    problem(f"{c} at {where}: {a:.6g} vs published {b:.6g} (|diff| {abs(a - b):.3g})")
                elif rep.status == "identical":
                    rep.status = "within tolerance"
            else:
                a, b = str(a), str(b)
                if a == b:
                    continue
                if _text_close(a, b):
                    diffs = [abs(float(x) - float(y)) for x, y in zip(_NUMBER.findall(a), _NUMBER.findall(b))]
                    rep.max_abs_diff = max([rep.max_abs_diff, *diffs])
                    if rep.status == "identical":
                        rep.status = "within tolerance"
                else:
                    problem(f"{c} at {where}: {a[:80]!r} vs published {b[:80]!r}")
    return rep


@dataclass
class ClaimReport:
    claim: str
    published: str
    fresh: str | None
    near_threshold: bool = False

    @property
    def same(self) -> bool:
        return self.fresh == self.published


def compare_claims(fresh: pd.DataFrame, published: pd.DataFrame) -> list[ClaimReport]:
    key = "id" if "id" in published.columns and "id" in fresh.columns else "claim"
    fresh_by = {str(r[key]): r for _, r in fresh.iterrows()}
    out = []
    for _, r in published.iterrows():
        k = str(r[key])
        f = fresh_by.get(k)
        near = False
        if f is not None and "near_threshold" in fresh.columns:
            near = str(f["near_threshold"]).strip().lower() in ("true", "1", "yes")
        out.append(ClaimReport(k, str(r["verdict"]), None if f is None else str(f["verdict"]), near))
    for k in fresh_by:
        if k not in {c.claim for c in out}:
            out.append(ClaimReport(k, "(not published)", str(fresh_by[k]["verdict"])))
    return out


def _published_counterpart(published_dir: Path, name: str) -> Path | None:
    for p in (published_dir / name, published_dir / "results" / name):
        if p.is_file():
            return p
    return None


def verify(profile: str, published_dir: Path | None = None, out=sys.stdout) -> int:
    """Compare ``build/<profile>`` with ``published_dir`` (default paper_figures/); returns the exit status."""
    published_dir = Path(published_dir or paths.PAPER_FIGURES)
    pdir = paths.profile_dir(profile)
    fresh_files = {p.name: p for d in ("results", "figures") for p in sorted((pdir / d).glob("*.csv"))}
    published = sorted(p.name for p in [*published_dir.glob("*.csv"), *published_dir.glob("results/*.csv")])
    if not published:
        print(f"error: no published tables in {published_dir}", file=out)
        return 1
    if not fresh_files:
        print(f"error: no fresh tables in {pdir}/figures or {pdir}/results: run `make reproduce PROFILE={profile}` "
              f"first", file=out)
        return 1
    reports = []
    for name in published:
        if name not in fresh_files:
            reports.append(TableReport(name, "missing", problems=[f"no fresh {name} in {pdir}"]))
            continue
        reports.append(compare_tables(pd.read_csv(fresh_files[name]),
                                      pd.read_csv(_published_counterpart(published_dir, name)), name))
    for name in sorted(set(fresh_files) - set(published)):
        reports.append(TableReport(name, "not published"))
    print(f"verify {profile}: {pdir} vs {published_dir} (tolerance: |diff| <= {ABS_TOL} or <= {REL_TOL:.0%} "
          f"relative; see lib/pipeline/verify.py)", file=out)
    for r in reports:
        extra = f", max |diff| {r.max_abs_diff:.3g}" if r.status == "within tolerance" else ""
        print(f"  {'ok ' if r.ok else 'BAD'} {r.name}: {r.status}{extra}", file=out)
        for p in r.problems:
            print(f"        {p}", file=out)
    claims_ok = True
    if CLAIMS in published:
        if CLAIMS not in fresh_files:
            print(f"  BAD claims: no fresh {CLAIMS}", file=out)
            claims_ok = False
        else:
            cl = compare_claims(pd.read_csv(fresh_files[CLAIMS]),
                                pd.read_csv(_published_counterpart(published_dir, CLAIMS)))
            print("claims:", file=out)
            for c in cl:
                near = " (near its threshold: within noise)" if c.near_threshold else ""
                if c.same:
                    print(f"  ok  {c.claim}: {c.published}{near}", file=out)
                else:
                    print(f"  BAD {c.claim}: published {c.published!r}, fresh {c.fresh!r}{near}", file=out)
            claims_ok = all(c.same for c in cl)
    ok = claims_ok and all(r.ok for r in reports)
    print(f"verify {profile}: {'PASS' if ok else 'FAIL'}"
          f"{'' if claims_ok else ' (a verdict differs)'}", file=out)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or len(argv) > 2:
        print("usage: python -m lib.pipeline.verify <profile> [<published folder>]", file=sys.stderr)
        return 2
    from ..config import ConfigError, check_profile_name
    try:
        check_profile_name(argv[0])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return verify(argv[0], Path(argv[1]) if len(argv) > 1 else None)


if __name__ == "__main__":
    sys.exit(main())
