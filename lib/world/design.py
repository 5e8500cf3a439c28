"""The world's design rules (docs/world.md): every task in one cell of the 2x2x2 design
(:func:`check_design`), the corpus's (task, domain) strata (:func:`corpus_entries`) and every class
named in some pretraining caption (:func:`check_class_words`); :class:`WorldDesignError`."""
from __future__ import annotations

import itertools
import math
import re

import numpy as np

from ..config import ConfigError
from .constants import DOMAIN_KINDS, FACTORS
from .variants import TASKS, family_of

# a replicated design (more tasks than cells): at least this many tasks per cell, and every renderer
# family holding both levels of at least this many factors (docs/world.md, world v3)
MIN_PER_CELL = 4
MIN_FACTORS_WITHIN_FAMILY = 2


class WorldDesignError(ConfigError):
    """The world's design or its corpus breaks a rule of the design (docs/world.md)."""


# ============================================================================ the design
def _design_error(msg: str) -> WorldDesignError:
    return WorldDesignError(f"{msg} (see docs/world.md and params/profiles/mini.yaml)")


def check_design(wcfg: dict) -> dict[str, dict[str, float]]:
    """Validate the world's design; returns task -> {factor: level value} for every task of the world.

    Every task of ``world.tasks`` needs a ``world.design`` entry naming one level of each factor;
    when the world holds as many tasks as the design has cells, the tasks fill every cell once.
    """
    tasks = list(wcfg["tasks"])
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ConfigError(f"unknown task(s) {unknown} in world.tasks; valid: {', '.join(TASKS)}")
    levels, design = wcfg.get("levels"), wcfg.get("design")
    if not isinstance(levels, dict) or not isinstance(design, dict):
        raise _design_error("the world needs 'levels' and 'design' mappings (world.corpus.coverage of "
                            "world v1 is gone)")
    for factor, names in FACTORS.items():
        got = levels.get(factor)
        if not isinstance(got, dict) or sorted(got) != sorted(names):
            raise _design_error(f"world.levels.{factor} must give the levels {', '.join(names)}, got "
                                f"{sorted(got) if isinstance(got, dict) else got!r}")
    for t in design:
        if t not in TASKS:
            raise _design_error(f"world.design names unknown task {t!r}; valid: {', '.join(TASKS)}")
    missing = [t for t in tasks if t not in design]
    if missing:
        raise _design_error(f"world.design has no cell for task(s) {', '.join(missing)}: give each task of "
                            f"world.tasks one level of {', '.join(FACTORS)}")
    out, cells = {}, {}
    for t in tasks:
        entry = design[t]
        if not isinstance(entry, dict):
            raise _design_error(f"world.design.{t} must be a mapping of {', '.join(FACTORS)} to level names")
        extra = [k for k in entry if k not in FACTORS]
        if extra:
            raise _design_error(f"world.design.{t} has unknown factor(s) {', '.join(extra)}; valid: {', '.join(FACTORS)}")
        vals = {}
        for factor, names in FACTORS.items():
            lv = entry.get(factor)
            if lv not in names:
                raise _design_error(f"world.design.{t}.{factor}: {lv!r} is not a level of {factor}; "
                                    f"valid: {', '.join(names)}")
            vals[factor] = float(levels[factor][lv])
        cell = tuple(entry[f] for f in FACTORS)
        cells.setdefault(cell, []).append(t)
        out[t] = vals
    n_cells = math.prod(len(v) for v in FACTORS.values())
    if len(tasks) == n_cells:
        twice = {c: ts for c, ts in cells.items() if len(ts) > 1}
        empty = [c for c in itertools.product(*FACTORS.values()) if c not in cells]
        if twice or empty:
            fmt = lambda c: "/".join(c)  # noqa: E731
            raise _design_error(
                "the design's tasks must fill its cells exactly once: "
                + "; ".join([f"cell {fmt(c)} holds {', '.join(ts)}" for c, ts in twice.items()]
                            + [f"cell {fmt(c)} holds no task" for c in empty]))
    if len(tasks) > n_cells:  # a replicated design (world v3): tasks are the unit, factors vary within families
        fmt = lambda c: "/".join(c)  # noqa: E731
        thin = [f"cell {fmt(c)} holds {len(cells.get(c, []))}" for c in itertools.product(*FACTORS.values())
                if len(cells.get(c, [])) < MIN_PER_CELL]
        if thin:
            raise _design_error(f"a design of more than {n_cells} tasks needs at least {MIN_PER_CELL} tasks in every "
                                f"cell: " + "; ".join(thin))
        fams: dict[str, list[str]] = {}
        for t in tasks:
            fams.setdefault(family_of(t), []).append(t)
        for fam, ts in fams.items():
            both = [f for f in FACTORS if len({design[t][f] for t in ts}) == 2]
            if len(both) < MIN_FACTORS_WITHIN_FAMILY:
                raise _design_error(f"family {fam!r} ({', '.join(ts)}) holds both levels of only "
                                    f"{len(both)} factor(s) ({', '.join(both) or 'none'}): every family must vary "
                                    f"at least {MIN_FACTORS_WITHIN_FAMILY} factors within itself, so no factor is "
                                    f"confounded with a renderer")
    for factor in ("coverage",):
        if any(float(v) <= 0 for v in levels[factor].values()):
            raise _design_error("world.levels.coverage values must be > 0: every task's classes must be "
                                "named in pretraining")
    for v in levels["caption_noise"].values():
        if not 0 <= float(v) < 1:
            raise _design_error(f"world.levels.caption_noise values must be in [0, 1), got {v}")
    for v in levels["diversity"].values():
        if not 0 <= float(v) <= 1:
            raise _design_error(f"world.levels.diversity values must be in [0, 1], got {v}")
    return out


def corpus_entries(wcfg: dict) -> tuple[list[tuple[str, str]], np.ndarray]:
    """The corpus's (task, domain) strata and their probabilities: the task's coverage level times
    the domain's ``world.corpus.domain_share``."""
    lv = check_design(wcfg)
    share = wcfg["corpus"].get("domain_share")
    if not isinstance(share, dict) or sorted(share) != sorted(DOMAIN_KINDS):
        raise _design_error(f"world.corpus.domain_share must give id, mild and strong, got {share!r}")
    if any(float(v) < 0 for v in share.values()) or sum(float(v) for v in share.values()) <= 0:
        raise _design_error(f"world.corpus.domain_share values must be >= 0 with a positive sum, got {share}")
    entries, w = [], []
    for task in wcfg["tasks"]:
        r = TASKS[task]
        for dom in r.domains:
            weight = lv[task]["coverage"] * float(share[r.domain_kind(dom)])
            if weight > 0:
                entries.append((task, dom))
                w.append(weight)
    w = np.asarray(w)
    return entries, w / w.sum()


def check_class_words(captions, tasks) -> None:
    """Every class name of every task occurs (as whole words) in some pretraining caption."""
    text = "\n".join(str(c).lower() for c in captions)
    for task in tasks:
        for cname in TASKS[task].classnames:
            if not re.search(rf"(?<![\w-]){re.escape(cname.lower())}(?![\w-])", text):
                raise WorldDesignError(
                    f"class {cname!r} of task {task!r} occurs in no pretraining caption ({len(captions)} pairs): "
                    f"every class of every task must be named in pretraining; raise world.corpus.n_pairs or "
                    f"the coverage levels (world.levels.coverage)")
