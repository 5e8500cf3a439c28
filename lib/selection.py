"""Learning-rate selection: the rule that picks one rate per (method, task), on ID validation only.

Pure functions of the sweep points' rows (``lr``, ``best_val_acc``, ``nonfinite``): nothing here
reads a file or trains (like DomainBed's ``model_selection.py``). :mod:`lib.pipeline.finetune` runs
the sweep points this module asks for and records the selection; the published rule text
(:data:`SELECTION_RULE`, written into lr_sweep.csv's and finetune.csv's provenance) is built from
the same constants the functions use.
"""
from __future__ import annotations

import math

LADDER = (1.0, 3.0)      # the half-decade ladder of rates: 1, 3, 10, 30, ... x 10^k
TIE_BREAK = "smaller"    # equal best validation accuracy: the smaller rate wins

RULES = ("best", "one_se")  # lr_rule in params/02_finetune.yaml (default "best")
_SWEEP = ("seed-0 run at every rate of the method's lr_grid; while the best rate is an end of the "
          "rates tried and strictly better than its neighbour, the next half-decade rate beyond it is "
          "added (at most lr_extend times); ")
_WINNER = {
    "best": f"the rate with the highest best ID-validation accuracy wins, ties go to the {TIE_BREAK} rate; ",
    "one_se": ("among the rates whose best ID-validation accuracy is within one binomial standard error "
               "(sqrt(p (1 - p) / n_val) at the best accuracy p) of the best, the smallest wins; "),
}
_DIVERGED = ("runs whose loss or weights became non-finite are not eligible (if every rate diverged: the "
             "smallest rate)")


def rule_text(rule: str = "best") -> str:
    """The published text of a selection rule (provenance of lr_sweep.csv and finetune.csv)."""
    if rule not in RULES:
        raise ValueError(f"unknown learning-rate rule {rule!r}; valid: {', '.join(RULES)}")
    return _SWEEP + _WINNER[rule] + _DIVERGED


SELECTION_RULE = rule_text("best")


def half_decade(lr: float, up: bool) -> float:
    """The next rate of the 1, 3, 10, 30, ... ladder (:data:`LADDER`) above (or below) ``lr``."""
    m = lr / 10 ** math.floor(math.log10(lr) + 1e-12)
    if up:
        x = lr * (3.0 if m < 2 else 10.0 / 3.0)
    else:
        x = lr / (3.0 if m > 2 else 10.0 / 3.0)
    return float(f"{x:.12g}")


def choose_lr(points: list[dict], rule: str = "best", n_val: int | None = None) -> float:
    """The selected rate of a sweep (:func:`rule_text`); ``points`` are the sweep runs' rows
    (``lr``, ``best_val_acc``, ``nonfinite``), ``n_val`` the size of the validation split (rule
    ``one_se``). Validation data only: nothing else is read."""
    if not points:
        raise ValueError("choose_lr needs at least one sweep point")
    if rule not in RULES:
        raise ValueError(f"unknown learning-rate rule {rule!r}; valid: {', '.join(RULES)}")
    ok = [p for p in points if not p.get("nonfinite")]
    if not ok:
        return min(float(p["lr"]) for p in points)
    best = min(ok, key=lambda p: (-float(p["best_val_acc"]), float(p["lr"])))
    if rule == "best":
        return best["lr"]
    if not n_val or n_val < 1:
        raise ValueError("the one_se rule needs the validation split's size n_val >= 1")
    acc = float(best["best_val_acc"])
    se = math.sqrt(acc * (1.0 - acc) / n_val)
    return min(float(p["lr"]) for p in ok if float(p["best_val_acc"]) >= acc - se - 1e-12)


def next_rate(lrs: list[float], rows: list[dict], added: int, extend: int) -> float | None:
    """The rate the extension rule adds to a finished sweep over ``lrs`` (ascending, ``rows`` in the
    same order), or None when the selection is final: while fewer than ``extend`` rates were added
    and the best rate is an end of ``lrs`` strictly better than its neighbour, the next half-decade
    rate beyond that end (a diverged point counts as accuracy -1). The extension follows the best
    rate under every rule; the rule then picks among all the points."""
    best = float(choose_lr(rows))
    acc = {float(x["lr"]): (-1.0 if x.get("nonfinite") else float(x["best_val_acc"])) for x in rows}
    if added < extend and best == lrs[-1] and acc[best] > acc[lrs[-2]]:
        return half_decade(best, up=True)
    if added < extend and best == lrs[0] and acc[best] > acc[lrs[1]]:
        return half_decade(best, up=False)
    return None


TRANSFER_RULE = ("one rate per method for a new set of tasks: the lower median, over an earlier study's tasks, of "
                 "the rates its rule selected on ID validation (a rate of the ladder; ties between two middle "
                 "rates go to the smaller, as the one-SE rule prefers small rates)")


def transfer_rate(selected: list[float]) -> float:
    """:data:`TRANSFER_RULE`: the lower median of the ``selected`` rates (one per task of an earlier
    study, each chosen on that task's ID validation only). Study v4 runs each method at this rate of
    study3's selections (params/study4/methods/; tests/test_world_v4.py recomputes them from
    paper_figures/lr_sweep.csv)."""
    if not selected:
        raise ValueError("transfer_rate needs at least one selected rate")
    xs = sorted(float(x) for x in selected)
    return xs[(len(xs) - 1) // 2]
