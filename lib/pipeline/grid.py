"""The experiment grid of a profile: its fine-tuning runs, grouped into units of work.

A fine-tuning *unit* is one task: one execution of ``notebooks/02_finetune.ipynb`` trains, for every
method, the learning-rate sweep (seed 0 at each rate of the method's ``lr_grid``), then the study's
runs (seeds, variants) at the selected rate, in one kernel. An *evaluation unit* is one (task,
method), that pair's study runs and its product files; one evaluation job (one process) evaluates
every unit of one task. A run is a :class:`lib.paths.RunId`; its marker
file says it is complete, so a killed unit redoes only unfinished runs.

    python -m lib.pipeline.grid <profile> --make       # the Make include (one rule per unit or job)
    python -m lib.pipeline.grid <profile> --commands   # one shell command per unit or job (SLURM arrays...)
    python -m lib.pipeline.grid <profile> --runs       # every run (sweep points too), one per line
    python -m lib.pipeline.grid <profile> --progress finetune|evaluate   # "[k/N] ..." for Make
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections import OrderedDict

from .. import config, paths
from ..config import ConfigError
from ..io import read_json
from ..paths import RunId
from ..progress import stage_counter
from . import codegraph, stages

STAGE = stages.stage("finetune_unit").params  # the parameter file of a fine-tuning unit


def runs(cfg: dict, validate: bool = True) -> list[RunId]:
    """Every fine-tuning run of a profile, in a fixed order (defaults, then ablations).

    With ``validate`` the grid section is checked again against the schema (names are identifiers,
    no empty lists but ``tasks``: a caller may hand in a mapping that did not come from the loader)
    and every name against its registry: tasks (of ``grid`` and of each ablation) against the data
    source's, methods against :data:`lib.methods.METHODS`, variants against the method's file."""
    g = cfg.get("grid", {})
    tasks = list(g.get("tasks") or cfg.get("world", {}).get("tasks") or cfg.get("data", {}).get("tasks") or [])
    methods = list(g.get("methods", []))
    src = f"params/profiles/{cfg.get('name', '?')}.yaml"
    if validate:
        # imported here, not at the top: lib.data and lib.methods import torch, and `grid --progress`,
        # which Make runs after every unit, reads the grid without validating it.
        # start-up: `grid --progress` takes 0.14 s without torch, 2.7 s with it (2-core dev machine, loaded)
        from ..data import source_for
        from ..methods import METHODS  # start-up: torch, as above (0.14 s -> 2.7 s)
        config.validate(g, config.PROFILE_SCHEMA.keys["grid"], "grid", src)
        valid_tasks = list(source_for(cfg).tasks())
        tasks = list(g.get("tasks") or valid_tasks)
        for t in tasks:
            if t not in valid_tasks:
                raise ConfigError(f"{src}: grid.tasks names unknown task {t!r}{config._suggest(t, valid_tasks)}; "
                                  f"valid tasks: {', '.join(valid_tasks)}")
        for m in methods:
            if m not in METHODS:
                raise ConfigError(f"{src}: grid.methods names unknown method {m!r}{config._suggest(m, METHODS)}; "
                                  f"valid: {', '.join(METHODS)}")
        for m, spec in (g.get("ablations") or {}).items():
            if m not in METHODS:
                raise ConfigError(f"{src}: grid.ablations names unknown method {m!r}{config._suggest(m, METHODS)}; "
                                  f"valid: {', '.join(METHODS)}")
            for t in spec.get("tasks") or []:
                if t not in valid_tasks:
                    raise ConfigError(f"{src}: grid.ablations.{m}.tasks names unknown task {t!r}"
                                      f"{config._suggest(t, valid_tasks)}; valid tasks: {', '.join(valid_tasks)}")
    out = [RunId(t, m, "default", int(s)) for t in tasks for m in methods for s in g.get("seeds", [0])]
    noise = g.get("seed_noise") or {}
    if validate:
        for t in noise.get("tasks") or []:
            if t not in tasks:
                raise ConfigError(f"{src}: grid.seed_noise.tasks names {t!r}, which is not a task of the grid"
                                  f"{config._suggest(t, tasks)}; valid: {', '.join(tasks)}")
        used = {int(x) for x in [*g.get("seeds", [0]), *(noise.get("seeds") or [])]}
        if g.get("sweep_seed") is not None and int(g["sweep_seed"]) in used:
            raise ConfigError(f"{src}: grid.sweep_seed {g['sweep_seed']} is also a study seed: the sweeps need a "
                              f"seed no study run uses (e.g. 100), so every study run is trained fresh")
    out += [RunId(t, m, "default", int(s)) for t in noise.get("tasks") or [] for m in methods
            for s in noise.get("seeds") or []]
    for m, spec in (g.get("ablations") or {}).items():
        known = config.method_params(m, cfg["name"]).get("variants") or {}
        for v in spec.get("variants", []):
            if validate and v not in known:
                raise ConfigError(f"{src}: grid.ablations.{m} names unknown variant {v!r}; valid: "
                                  f"{', '.join(known)} (the variants of params/methods/{m}.yaml)")
            for t in spec.get("tasks") or tasks:
                for s in spec.get("seeds", [0]):
                    out.append(RunId(t, m, v, int(s)))
    if validate:
        dup = [r for i, r in enumerate(out) if r in out[:i]]
        if dup:
            raise ConfigError(f"the grid lists run {dup[0].label} twice: remove the duplicate from "
                              f"params/profiles/{cfg['name']}.yaml (grid.seeds / tasks / ablations)")
        _validate_options(cfg, out)
    return out


def run_options(profile: str, method: str, variant: str) -> dict:
    """The options of one (method, variant) of a profile (see :func:`lib.methods.variant_options`)."""
    from ..methods import variant_options  # start-up: torch, 0.14 s -> 2.7 s for `grid --progress`: see runs()
    mp = config.method_params(method, profile)  # an unknown method: refused there (no params file)
    return variant_options(method, variant, mp.get("options"), mp.get("variants"))


def lr_grid(profile: str, method: str) -> list[float]:
    """The method's learning-rate grid (``lr_grid`` in ``params/methods/<method>.yaml``), ascending.
    One rate: no sweep, every run uses it."""
    return sorted(float(x) for x in config.method_params(method, profile)["lr_grid"])


def _validate_options(cfg: dict, rs: list[RunId]) -> None:
    from ..methods import resolve_options  # start-up: torch, 0.14 s -> 2.7 s for `grid --progress`: see runs()
    for r in {(r.method, r.variant): r for r in rs}.values():
        resolve_options(r.method, run_options(cfg["name"], r.method, r.variant))


def sweep_seed(cfg: dict) -> int:
    """The seed of the learning-rate sweeps: ``grid.sweep_seed`` (study v3: a seed no study run uses,
    so every study run is trained fresh), else the grid's first seed (whose study run then reuses its
    sweep point)."""
    g = cfg.get("grid", {})
    return int(g["sweep_seed"]) if g.get("sweep_seed") is not None else int((g.get("seeds") or [0])[0])


def sweep_runs(cfg: dict, validate: bool = True, rs: list[RunId] | None = None) -> list[RunId]:
    """Every learning-rate sweep point of the grid: seed :func:`sweep_seed` of the default variant
    at each rate of the method's ``lr_grid`` (a method with one rate has no sweep; the points the
    extension rule adds are the unit's, :meth:`lib.pipeline.finetune.Unit.sweep_state`). ``rs``:
    the profile's :func:`runs` when the caller has them already."""
    methods = list(dict.fromkeys((r.task, r.method) for r in (rs if rs is not None else runs(cfg, validate))))
    out = []
    for t, m in methods:
        grid = lr_grid(cfg["name"], m)
        if len(grid) > 1:
            out += [RunId(t, m, "default", sweep_seed(cfg), lr) for lr in grid]
    return out


def evaluation_units(rs: list[RunId]) -> "OrderedDict[tuple[str, str], list[RunId]]":
    """Study runs grouped by (task, method), in grid order: the evaluation units (one product pair
    each; :func:`evaluation_jobs` groups them into one job per task)."""
    out: OrderedDict = OrderedDict()
    for r in rs:
        out.setdefault((r.task, r.method), []).append(r)
    return out


def units(cfg: dict, validate: bool = True) -> "OrderedDict[str, list[RunId]]":
    """Fine-tuning units: task -> its runs (sweep points first, then the study's runs), the units
    with the most runs first (so parallel jobs finish together)."""
    rs = runs(cfg, validate)
    sw = sweep_runs(cfg, rs=rs)
    by: OrderedDict = OrderedDict()
    for r in sw + rs:
        by.setdefault(r.task, []).append(r)
    return OrderedDict(sorted(by.items(), key=lambda kv: -len(kv[1])))


def unit_runs(cfg: dict, task: str) -> list[RunId]:
    """The study runs (not the sweep points) of one task's unit."""
    rs = [r for r in runs(cfg) if r.task == task]
    if not rs:
        valid = ", ".join(dict.fromkeys(r.task for r in runs(cfg)))
        raise ConfigError(f"{task!r} is not a unit (task) of profile {cfg['name']!r}; valid: {valid}")
    return rs


# ----------------------------------------------------------------------------- Make and shells
def code_variables() -> list[str]:
    """``CODE_<STAGE> := <files>`` for every stage of :data:`lib.pipeline.stages.STAGES` (the import
    closure inside lib/ of its entry modules), paths escaped for Make."""
    return [f"{s.code_var} := " + " ".join(_make_path(f) for f in codegraph.closure_files(*s.code))
            for s in stages.STAGES]


def _product(rel: str, **unit: str) -> str:
    return "$(B)/" + _make_path(rel.format(**unit))


def _stage_rules(profile: str, cfg: dict, us, evs) -> list[str]:
    """Every stage's Make rule(s), from the declared pipeline (:mod:`lib.pipeline.stages`): targets its
    products, prerequisites its runner (notebook), the products of the stages it needs, its parameter
    files and its code; a unit stage gets one rule per unit. Its recipe: papermill for a notebook
    (``$(call papermill,...)``), ``$(PY) -m <module> $(PROFILE)`` for a module, and for a unit stage the
    Makefile's recipe of the same name (``$(call finetune_unit,<task>)``)."""
    tasks = {t: _make_name(t, "task") for t in us}
    unit_args = {("task",): [(t,) for t in tasks], ("task", "method"): list(evs)}

    def targets_of(name: str, unit: tuple = ()) -> list[str]:
        """What a stage that needs ``name`` names: its target (every unit's, or ``unit``'s own)."""
        s = stages.stage(name)
        if not s.per:
            return [_product(s.target)]
        keys = [k for k in unit_args[s.per] if k[:len(unit)] == unit[:len(s.per)]] if unit else unit_args[s.per]
        return [_product(s.target, **dict(zip(s.per, k))) for k in keys]

    def pfiles(s, methods=()) -> list[str]:
        if not s.params:
            return []
        files = dict.fromkeys(f for m in (methods or (None,)) for f in config.param_files(s.params, profile, m))
        return [_make_path(_rel_root(f)) for f in files]

    lines = [f"STAGE_{s.name} := {_product(s.target)}" for s in stages.STAGES if not s.per]
    for s in stages.STAGES:
        if s.grouped:   # jobs of tasks_per_job tasks: every unit of the job's tasks, in the job's task order
            jobs = [[u for t in tj for u in unit_args[s.per] if u[0] == t]
                    for tj in task_jobs(profile, s.params, list(tasks))]
        else:
            jobs = _jobs(unit_args[s.per], len(s.job_keys)) if s.per else [[()]]
        order = " | " + " ".join(d for n in s.after for d in targets_of(n)) if s.after else ""   # order-only
        for job in jobs:
            outs, deps = [], ([f"$(NB)/{s.notebook}.ipynb"] if s.notebook else [])
            for unit in job:   # one recipe makes every product of the job's units
                kw = dict(zip(s.per, unit))
                outs += [_product(p, **kw) for p in s.products]
                # the method files feed a fine-tuning unit (every method it trains)
                methods = tuple(dict.fromkeys(r.method for r in us[unit[0]])) if s.per == ("task",) else ()
                deps += [d for n in s.needs for d in targets_of(n, unit)] + pfiles(s, methods)
            deps += (["$(PROFILE_YAML)"] if s.name == "pretrain" else []) + [f"$({s.code_var})"]
            sep = " &: " if len(outs) > 1 else ": "
            lines.append(" ".join(outs) + sep + " ".join(dict.fromkeys(deps)) + order)
            if s.per:   # $(call <stage>,<key>,...,<the rest of each unit's keys, space-separated>)
                k = len(s.job_keys)     # a grouped stage's job: its tasks, space-separated, then the rest
                lead = [" ".join(dict.fromkeys(u[0] for u in job))] if s.grouped else list(job[0][:k])
                rest = [" ".join(dict.fromkeys(u[i] for u in job)) for i in range(k, len(s.per))]
                lines.append(f"\t$(call {s.name},{','.join([*lead, *rest])})")
            elif s.notebook:
                nb_out = _product(f"{s.notebook}.ipynb")
                lines.append(f"\t$(call papermill,{s.notebook},{nb_out},,,{s.label or s.name})")
            else:
                lines.append(f"\t$(PY) -m {s.module} $(PROFILE)")
    return lines


def make_include(profile: str) -> str:
    """Every Make rule of the study (:func:`_stage_rules`), after each stage's code files
    (``CODE_<STAGE>``, :func:`code_variables`) and targets (``STAGE_<name>``, which the Makefile's entry
    points build).

    The whole configuration is validated first (:func:`lib.config.check_all`: the profile, every
    stage file, every method file; then the grid's names against their registries): Make runs this
    before anything else, so a bad parameter stops the build before any work. Every name is an
    identifier (checked at load, and again here), every path is escaped for Make."""
    config.check_all(profile)
    cfg = config.load_profile(profile)
    us = units(cfg)
    evs = evaluation_units(runs(cfg))
    _make_name(profile, "profile")
    for t, m in evs:
        _make_name(t, "task")
        _make_name(m, "method")
    lines = [f"# generated by python -m lib.pipeline.grid {profile} --make from the declared pipeline "
             f"(lib/pipeline/stages.py); do not edit",
             "# each stage's code: the import closure inside lib/ of its entry modules",
             *code_variables(), f"N_UNITS := {len(us)}", *_stage_rules(profile, cfg, us, evs)]
    return "\n".join(lines) + "\n"


def _jobs(units: list[tuple], k: int) -> list[list[tuple]]:
    """``units`` grouped into jobs by their first ``k`` keys, in order of first appearance."""
    out: OrderedDict = OrderedDict()
    for u in units:
        out.setdefault(u[:k], []).append(u)
    return list(out.values())


def tasks_per_job(profile: str, params: str) -> int:
    """``tasks_per_job`` of a stage's parameter file (``params/<params>.yaml`` and the profile's overlay;
    default 1): how many tasks one job runs in one process. How to run, not what is computed."""
    return int(config.stage_params(params, profile).get("tasks_per_job") or 1)


def task_jobs(profile: str, params: str, tasks: list[str]) -> list[list[str]]:
    """``tasks`` (in the fine-tuning units' order: the most runs first) in jobs of :func:`tasks_per_job`,
    dealt round-robin, so each job gets an equal share of the large and the small units and parallel jobs
    finish together (study3: 8 jobs of 4 tasks, each with one of the 8 seed-noise tasks)."""
    k = tasks_per_job(profile, params)
    n = -(-len(tasks) // k) if tasks else 0
    return [tasks[i::n] for i in range(n)]


def evaluation_jobs(rs: list[RunId]) -> "OrderedDict[str, list[str]]":
    """The evaluation jobs: task -> its methods (one process each, :mod:`lib.pipeline.stages`)."""
    return OrderedDict((job[0][0], [m for _, m in job]) for job in _jobs(list(evaluation_units(rs)), 1))


def _make_name(name: str, what: str) -> str:
    """A name written into grid.mk (a ``$(call ...)`` argument, part of a target): an identifier, always
    (the loader refused anything else; checked again here, as no escape makes ',' or ')' safe there)."""
    return config.check_name(name, what, key="grid.mk")


def _make_path(p: str) -> str:
    """A file name as a Make target or prerequisite: ``$`` doubled; ``#``, ``:``, ``%`` and spaces
    escaped with a backslash; a line break or a backslash (which Make cannot carry) refused."""
    if any(ch in p for ch in "\n\r\t\\"):
        raise ConfigError(f"the path {p!r} holds a line break, tab or backslash: it cannot be written into "
                          f"grid.mk; rename the file or folder")
    out = p.replace("$", "$$")
    for ch in ("#", ":", " ", "%"):
        out = out.replace(ch, "\\" + ch)
    return out


def _rel(p, profile: str) -> str:
    return str(p.relative_to(paths.profile_dir(profile)))


def _rel_root(p) -> str:
    try:
        return str(p.relative_to(paths.ROOT))
    except ValueError:
        return str(p)


def notebook_command(py: str, notebook: str, out, profile: str, label: str, extra: str = "") -> str:
    """The shell command that runs ``notebooks/<notebook>.ipynb`` into ``out`` (through a temporary
    name, moved into place only when it ran through); ``py`` is already quoted."""
    q = shlex.quote
    tmp = q(str(out.with_suffix(".tmp.ipynb")))
    return (f"mkdir -p {q(str(out.parent))} && CLIPMIS_RUN_LABEL={q(label)} {py} -m papermill "
            f"notebooks/{notebook}.ipynb {tmp} -k python3 --cwd . --log-output -p profile {q(profile)}"
            f"{extra} && mv {tmp} {q(str(out))}")


def unit_commands(cfg: dict, py: str) -> tuple[list[str], list[str]]:
    """The fine-tuning units' commands (one per task) and the evaluation jobs' (one per task, for all
    its methods) of a loaded profile; ``py`` is already quoted."""
    q, profile = shlex.quote, cfg["name"]
    ft = [notebook_command(py, "02_finetune", paths.unit_notebook(profile, t), profile, f"finetune {t}",
                           f" -p task {q(t)}") for t in units(cfg)]
    ev = [f"{py} -m lib.pipeline.evaluate {q(profile)} {q(t)} " + " ".join(q(m) for m in ms)
          for t, ms in evaluation_jobs(runs(cfg)).items()]
    return ft, ev


def commands(profile: str, python: str = "python") -> list[str]:
    """One self-contained shell command per unit of work, in dependency order: fine-tuning units
    (one per task, independent of each other), then evaluation jobs (one per task, every method).
    Each runs from the repository root. Every phase, the stages before and after the units included
    (pretrain, zero-shot, figures): :func:`lib.pipeline.launch.phases` (``make commands``)."""
    config.check_all(profile)
    py = " ".join(shlex.quote(w) for w in shlex.split(python)) or "python"
    ft, ev = unit_commands(config.load_profile(profile), py)
    return ft + ev


def progress_line(profile: str, stage: str) -> str:
    """``[k/N] <stage> units done · elapsed · ETA`` from the files on disk (cheap: no model, no
    validation). The clock starts when the stage could start: when 00_pretrain finished."""
    cfg = config.load_profile(profile)
    rs = runs(cfg, validate=False)
    us = [(t,) for t in dict.fromkeys(r.task for r in rs)] if stage == "finetune" else list(evaluation_units(rs))
    first = paths.profile_dir(profile) / "00_pretrain.ipynb"

    def done_unit(t: str, m: str | None = None) -> bool:  # made in this round: newer than what it was made from
        f = paths.unit_notebook(profile, t) if m is None else paths.unit_eval_csv(profile, t, m)
        src = first if m is None else paths.unit_notebook(profile, t)
        return f.exists() and (not src.exists() or f.stat().st_mtime >= src.stat().st_mtime)
    done = sum(done_unit(*u) for u in us)
    t0 = max(float(os.environ.get("CLIPMIS_T0") or 0), first.stat().st_mtime if first.exists() else 0) or time.time()
    if stage == "evaluate":  # evaluation units start as their fine-tuning units finish: clock from the first
        starts = [(read_json(paths.unit_eval_timing(profile, *u)) or {}).get("start")
                  for u in us if paths.unit_eval_csv(profile, *u).exists()]
        t0 = min([x for x in starts if x] or [t0])
    return stage_counter(done, len(us), t0, f"{stage} units done (profile {profile})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lib.pipeline.grid", description=__doc__.split("\n")[0])
    ap.add_argument("profile")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--make", action="store_true")
    mode.add_argument("--commands", action="store_true")
    mode.add_argument("--runs", action="store_true")
    mode.add_argument("--progress", choices=["finetune", "evaluate"])
    ap.add_argument("--python", default="python", help="interpreter named in --commands (default: python)")
    a = ap.parse_args(argv)
    try:
        config.check_profile_name(a.profile)
        if a.make:
            print(make_include(a.profile), end="")
        elif a.commands:
            print("\n".join(commands(a.profile, a.python)))
        elif a.runs:
            cfg = config.load_profile(a.profile)
            print("\n".join(r.label for r in sweep_runs(cfg) + runs(cfg)))
        else:
            print(progress_line(a.profile, a.progress))
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: the grid of profile {a.profile!r} cannot be built: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
