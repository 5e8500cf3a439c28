"""The one loader of the YAML parameters in ``params/``, with schema validation.

Every consumer (the Makefile through ``python -m lib.config``, the grid, the notebooks and the
stages) reads parameters through this module, so a wrong value is refused the same way
everywhere, before any work starts.

Files
-----
* ``params/profiles/<profile>.yaml`` -- profile-wide settings (``world`` / ``data``, ``model``,
  ``grid``, ``device``, ``description``).  A profile may ``extends:`` another profile.
* ``params/<stage>.yaml`` -- a stage's defaults (the smoke values), then
  ``params/<profile>/<stage>.yaml`` -- that profile's overlay.  Only the profile's OWN folder
  applies: a profile that ``extends`` another does not inherit the other's stage overlays
  (``smoke`` extends ``mini`` but runs on the stage defaults).
* ``params/methods/<method>.yaml`` then ``params/<profile>/methods/<method>.yaml`` -- a
  fine-tuning method's ``lr`` (optional ``lr_grid``), ``options`` and ``variants``.

Overlay semantics (profile ``extends``, stage and method overlays)
-----------------------------------------------------------------
* a **mapping** deep-merges: keys of the overlay replace or add to the inherited keys;
* a **list** or a **scalar** replaces the inherited value (an empty list is refused, except
  ``grid.tasks: []`` = every task of the data source; docs/params.md "Empty lists");
* ``key: !replace {...}`` replaces an inherited mapping whole instead of merging it;
  ``key: !replace {}`` clears it;
* ``key: null`` sets the value to null, which only keys documented as nullable accept
  (e.g. ``data.max_test_per_domain``).

Validation (``ConfigError`` naming the file, the key and the fix)
-----------------------------------------------------------------
Unknown keys (with a "did you mean" suggestion), types, ranges, choices, duplicates in lists
(``grid.seeds: [0, 0]``, a task listed twice), duplicate keys in one YAML mapping, YAML anchors and
aliases (refused: no alias expansion), files that cannot be read or are not UTF-8, names (profile,
task, method, variant) that are not identifiers (:func:`check_name`, ``^[a-z][a-z0-9_]*$``: they
become folders, Make targets and shell words), empty lists, stages missing a key.  Option keys of
methods and variants are checked by ``lib.methods.resolve_options`` (the grid does that); this
module checks their structure.

Command line (to check or inspect a profile by hand)::

    python -m lib.config check <profile>                 # validate everything the profile uses
    python -m lib.config profile-name <name>             # exit 1 unless <name> is a profile
    python -m lib.config params <stage> <profile> [<method>]   # merged, validated YAML
    python -m lib.config files <stage> <profile> [<method>]    # the files that feed it
"""
from __future__ import annotations

import copy
import difflib
import json
import functools
import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import paths
from .pipeline.stages import PARAM_STAGES

# the stages' parameter files (params/<stage>.yaml): the declared pipeline's (lib/pipeline/stages.py)
STAGES = PARAM_STAGES
# Every name that becomes a folder, a Make target or a shell word (profile, task, domain, method,
# variant) is an identifier: a lower-case letter, then lower-case letters, digits or '_'. No path
# separator, no '.', no '$', no space, no shell or Make metacharacter can get through.
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
_PROFILE_NAME = IDENTIFIER
# variant names the runs' folders use already (runs/<task>/<method>/default/, .../sweep/)
RESERVED_VARIANTS = ("default", "sweep")


class ConfigError(ValueError):
    """A malformed or unknown parameter; the message says what and how to fix it."""


def is_identifier(name) -> bool:
    """Whether ``name`` is a string matching :data:`IDENTIFIER` (``^[a-z][a-z0-9_]*$``)."""
    return isinstance(name, str) and IDENTIFIER.fullmatch(name) is not None


def _as_identifier(name: str) -> str:
    """A suggestion for a bad name: lower-case, every other character '_', a letter first."""
    out = re.sub(r"[^a-z0-9_]+", "_", str(name).lower()).strip("_")
    out = re.sub(r"^[0-9_]+", "", out)
    return out or "name"


def check_name(name, what: str, *, source: str | None = None, key: str | None = None) -> str:
    """``name`` if it is an identifier (:data:`IDENTIFIER`); else a :class:`ConfigError` naming
    ``what`` (task, domain, method, variant, profile), where it was found (``source`` file, ``key``)
    and the fix. The one validator of every name that becomes a path, a Make target or a shell word."""
    if is_identifier(name):
        return name
    where = ": ".join(x for x in (source, key) if x)
    shown = repr(name) if isinstance(name, str) else f"{name!r} ({type(name).__name__})"
    raise ConfigError(f"{where + ': ' if where else ''}the {what} name {shown} is not an identifier: names "
                      f"become folders, Make targets and shell words, so they must match {IDENTIFIER.pattern} "
                      f"(a lower-case letter, then lower-case letters, digits or '_'; no path, no space, "
                      f"no '.', '$', ';' or quotes); rename it, e.g. {_as_identifier(name)!r}")


# ============================================================================ YAML reading
class Replace(dict):
    """A mapping tagged ``!replace``: replaces the inherited mapping instead of merging into it."""


class _Loader(yaml.SafeLoader):
    """Safe YAML without anchors / aliases and with duplicate keys refused."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            ev = self.peek_event()
            raise ConfigError(f"YAML alias *{ev.anchor} at line {ev.start_mark.line + 1}: anchors and "
                              f"aliases are not allowed in params files; write the values out")
        ev = self.peek_event()
        if getattr(ev, "anchor", None):
            raise ConfigError(f"YAML anchor &{ev.anchor} at line {ev.start_mark.line + 1}: anchors and "
                              f"aliases are not allowed in params files; write the values out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise ConfigError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1} "
                                  f"(first at line {seen[key]}): keep one")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _construct_replace(loader, node):
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"!replace at line {node.start_mark.line + 1} must tag a mapping "
                          f"(lists always replace: write the new list)")
    return Replace(loader.construct_mapping(node, deep=True))


_Loader.add_constructor("!replace", _construct_replace)


def _plain(obj):
    """Drop the ``Replace`` markers (after merging)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def deep_merge(base: dict, overlay: dict) -> dict:
    """Mappings merge, ``!replace`` mappings / lists / scalars replace (module docstring)."""
    out = copy.deepcopy(base)
    for key, value in (overlay or {}).items():
        if isinstance(value, Replace):
            out[key] = _plain(value)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = _plain(copy.deepcopy(value))
    return out


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(paths.ROOT))
    except ValueError:
        return str(path)


def read_yaml(path: Path) -> dict:
    """One params file as a mapping (``Replace`` markers kept for merging). Errors name the file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"parameter file {path} does not exist")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read parameter file {path}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path} is not UTF-8 text: byte 0x{raw[exc.start]:02x} at line {line} "
                          f"(offset {exc.start}); save the file as UTF-8") from exc
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML in {path}: {exc}. Fix the syntax of that file.") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of parameters, not {type(data).__name__}")
    return data


# ============================================================================ schema
@dataclass
class F:
    """A field of a schema: its type, range and structure."""
    kind: Any = None                 # type or tuple of types; None = anything
    min: float | None = None
    max: float | None = None
    min_open: bool = False           # min is exclusive
    max_open: bool = False           # max is exclusive
    choices: tuple | None = None
    nullable: bool = False
    items: "F | None" = None         # list items
    unique: bool = False             # list without duplicates
    nonempty: bool = False
    keys: "dict[str, F] | None" = None   # a mapping with these keys only
    required: tuple = ()                 # keys required after merging
    values: "F | None" = None            # a mapping of free keys -> values of this field
    name: str | None = None              # a string that is an identifier: "task", "method", ...
    key_name: str | None = None          # the free keys of the mapping are identifiers of this kind
    reserved: tuple = ()                 # identifiers that may not be used (key_name / name)
    empty: str = ""                      # the fix when an empty list is refused (with nonempty)
    doc: str = ""


def _num(**kw):
    return F(kind=float, **kw)


def _int(**kw):
    return F(kind=int, **kw)


def _names(what: str, empty: str | None, reserved: tuple = ()) -> F:
    """A list of identifiers (task, method, variant names), unique; empty only where ``empty`` is None
    (else ``empty`` is the fix the refusal names)."""
    return F(kind=list, items=F(kind=str, name=what, reserved=reserved), unique=True, nonempty=empty is not None,
             empty=empty or "")


# the claim rules a profile may name (analysis.claim_rule; lib.analysis.claims applies them), default first
CLAIM_RULES = ("v3", "v4")

_SEEDS = F(kind=list, items=_int(min=0), unique=True, nonempty=True,
           empty="list at least one seed, e.g. [0]")

PROFILE_SCHEMA = F(kind=dict, required=("model", "grid"), keys={
    "description": F(kind=str),
    "extends": F(kind=str, name="profile"),
    "device": F(kind=str, doc="auto, cpu, cuda, cuda:N, mps"),
    "data": F(kind=dict, keys={
        "source": F(kind=str, choices=("embedded", "real")),
        "root": F(kind=str, nullable=True),
        "download": F(kind=bool),
        "shots": _int(min=1, nullable=True),
        "seed": _int(min=0),
        "val_fraction": _num(min=0, min_open=True, max=0.5, max_open=True),
        "max_test_per_domain": _int(min=1, nullable=True),
        "tasks": _names("task", "list the tasks to use (see the README's data layouts)"),
        "templates": F(kind=dict, key_name="task", values=F(kind=list, items=F(kind=str), nonempty=True,
                                                          empty="list at least one template or drop the task")),
    }),
    # world v2: a 2x2x2 factorial design of tasks (docs/world.md); lib.world.check_design checks
    # the design's cells (every task of world.tasks in one cell; all cells once when 8 tasks)
    "world": F(kind=dict, required=("seed", "tasks", "sizes", "corpus", "levels", "design"), keys={
        "seed": _int(min=0),
        "tasks": _names("task", "list the world's tasks (docs/world.md)"),
        "sizes": F(kind=dict, required=("train", "val", "test"), keys={
            "train": _int(min=1), "val": _int(min=1), "test": _int(min=1)}),
        "corpus": F(kind=dict, required=("n_pairs", "domain_share"), keys={
            "n_pairs": _int(min=1),
            "domain_share": F(kind=dict, required=("id", "mild", "strong"), keys={
                "id": _num(min=0), "mild": _num(min=0), "strong": _num(min=0)}),
        }),
        "levels": F(kind=dict, required=("coverage", "caption_noise", "diversity"), keys={
            "coverage": F(kind=dict, required=("low", "high"), keys={
                "low": _num(min=0, min_open=True), "high": _num(min=0, min_open=True)}),
            "caption_noise": F(kind=dict, required=("clean", "noisy"), keys={
                "clean": _num(min=0, max=1, max_open=True), "noisy": _num(min=0, max=1, max_open=True)}),
            "diversity": F(kind=dict, required=("tight", "varied"), keys={
                "tight": _num(min=0, max=1), "varied": _num(min=0, max=1)}),
        }),
        "design": F(kind=dict, key_name="task", values=F(kind=dict, required=("coverage", "caption_noise", "diversity"), keys={
            "coverage": F(kind=str, choices=("low", "high")),
            "caption_noise": F(kind=str, choices=("clean", "noisy")),
            "diversity": F(kind=str, choices=("tight", "varied")),
        })),
    }),
    "model": F(kind=dict, required=("name",), keys={
        "name": F(kind=str),
        "pretrained": F(kind=str, doc='"self", an open_clip tag or a checkpoint path'),
    }),
    "grid": F(kind=dict, keys={
        # the one empty list with a meaning: ``tasks: []`` (or no key) = every task of the data
        # source (world.tasks / data.tasks); docs/params.md "Empty lists"
        "tasks": _names("task", None),
        "methods": _names("method", "list at least one method (params/methods/<method>.yaml)"),
        "seeds": _SEEDS,
        # study v3: the sweeps' seed, one no study run uses (absent: the first of seeds, whose study run
        # then reuses its sweep point), and a seed-noise subset (these tasks x these extra seeds)
        "sweep_seed": _int(min=0),
        "seed_noise": F(kind=dict, required=("tasks", "seeds"), keys={
            "tasks": _names("task", "list the seed-noise subset's tasks, or remove seed_noise"),
            "seeds": _SEEDS}),
        "ablations": F(kind=dict, key_name="method", values=F(kind=dict, required=("variants",), keys={
            "variants": _names("variant", "list at least one variant, or remove this method's ablation "
                                          "(write `ablations: !replace {}` to clear every ablation)",
                               reserved=RESERVED_VARIANTS),
            "tasks": _names("task", "omit 'tasks' to ablate on every task of the grid, or list tasks"),
            "seeds": _SEEDS,
        })),
    }),
    # the rule the claims read (lib.analysis.claims.CLAIM_RULES; docs/methods.md): v3 (default), or v4,
    # the rule registered for new data (equivalence within +/-2 points, "holds" as an intersection-union test)
    "analysis": F(kind=dict, keys={"claim_rule": F(kind=str, choices=CLAIM_RULES)}),
    # where `make publish` puts the profile's figures (lib.pipeline.publish.published_dir): "top" =
    # paper_figures/ itself (the default profile), "own" = paper_figures/<profile>/ beside it, with a
    # README results block of its own
    "publish": F(kind=str, choices=("top", "own")),
})

_BATCH = _int(min=1)
_WORKERS = _int(min=0)
# threads of every process of the stage; fixed for byte-identical results on any machine (the
# number of threads changes how sums are split), null = cores / JOBS (see lib.pipeline.common.setup)
_THREADS = _int(min=1, nullable=True)
# tasks_per_job (optional; absent = 1): how many tasks one job of a per-task stage runs in one process
# (fine-tuning: one Jupyter kernel for their notebooks; evaluation: one process), so that the start-up
# of a process (kernel, imports of torch, open_clip and peft: ~7 s on 2 cores) is paid once per job.
# How to run, not what is computed: no result, fingerprint or cache key reads it (lib.pipeline.grid)
_TASKS_PER_JOB = _int(min=1)
# required: the keys every stage's merged parameters must have (params/<stage>.yaml holds them all;
# ``threads``, ``lr_extend`` and ``lr_rule`` have defaults in the code), so an emptied file is refused here
STAGE_SCHEMAS: dict[str, F] = {
    "00_pretrain": F(kind=dict, required=("seed", "epochs", "batch_size", "lr", "weight_decay", "warmup_steps",
                                          "holdout"), keys={
        "seed": _int(min=0), "epochs": _int(min=1), "batch_size": _BATCH, "lr": _num(min=0, min_open=True),
        "weight_decay": _num(min=0), "warmup_steps": _int(min=0), "holdout": _int(min=1), "threads": _THREADS}),
    "01_zero_shot": F(kind=dict, required=("batch_size", "num_workers"), keys={"batch_size": _BATCH, "num_workers": _WORKERS, "threads": _THREADS}),
    "02_finetune": F(kind=dict, required=("epochs", "batch_size", "momentum", "weight_decay", "warmup_steps",
                                          "cosine", "num_workers", "eval_batch_size", "cache_features"), keys={
        "epochs": _int(min=1), "batch_size": _BATCH, "momentum": _num(min=0, max=1, max_open=True),
        "weight_decay": _num(min=0), "warmup_steps": _int(min=0), "cosine": F(kind=bool),
        "num_workers": _WORKERS, "eval_batch_size": _BATCH, "cache_features": F(kind=bool), "threads": _THREADS,
        "tasks_per_job": _TASKS_PER_JOB, "lr_extend": _int(min=0), "lr_rule": F(kind=str, choices=("best", "one_se")),
        # precision (optional; absent = fp32, every profile before colab): "fp16" = fp16 autocast and a
        # GradScaler on CUDA (fp32 elsewhere), "bf16" = bf16 autocast on any device (lib.train.Amp)
        "precision": F(kind=str, choices=("fp32", "fp16", "bf16")),
        # text_chunk (optional; absent = off): encode the class prompts with gradients in checkpointed chunks
        # of this many prompts, recomputed in the backward pass (same numbers, the memory of one chunk):
        # the colab profile's T4 holds DTD's 376 prompts that way (lib.train)
        "text_chunk": _int(min=1)}),
    # forgetting_panel (study v3): the tasks whose ID test split measures every run's forgetting (null or
    # absent: every task, every domain, world v2's full cross-evaluation)
    "03_evaluate": F(kind=dict, required=("batch_size", "num_workers"), keys={
        "batch_size": _BATCH, "num_workers": _WORKERS, "threads": _THREADS, "tasks_per_job": _TASKS_PER_JOB,
        "forgetting_panel": F(kind=list, items=F(kind=str, name="task"), unique=True, nonempty=True, nullable=True,
                              empty="list the panel's tasks, or write null for every task"),
        # sweep_eval_images (study v3): evaluate every learning-rate sweep point too (ID, DG and forgetting
        # accuracy) on the first N test images of each of its splits; null or absent: sweep points are not
        # evaluated (their sweep_evaluation.csv holds no rows)
        "sweep_eval_images": _int(min=1, nullable=True)}),
    "04_figures": F(kind=dict, keys={"publish": F(kind=bool)}),
}

# A fine-tuning run's hyperparameters (lib.train.resolve_hp): the 02_finetune keys a run uses, with
# their bounds from STAGE_SCHEMAS, and the run's learning rate (an entry of the method's lr_grid)
_RUN_KEYS = ("epochs", "batch_size", "momentum", "weight_decay", "warmup_steps", "cosine", "cache_features",
             "eval_batch_size", "num_workers")
RUN_HP_SCHEMA = F(kind=dict, required=("lr", *_RUN_KEYS), keys={
    "lr": _num(min=0, min_open=True), **{k: STAGE_SCHEMAS["02_finetune"].keys[k] for k in (*_RUN_KEYS, "precision", "text_chunk")}})

# Pretraining's hyperparameters (lib.pretrain.validate): the 00_pretrain keys without the seed and the
# thread count (the stage passes the seed on its own; threads say how to run, not how to train)
PRETRAIN_HP_SCHEMA = F(kind=dict, required=tuple(k for k in STAGE_SCHEMAS["00_pretrain"].required if k != "seed"),
                       keys={k: v for k, v in STAGE_SCHEMAS["00_pretrain"].keys.items() if k not in ("seed", "threads")})

_OPTION_VALUE = F(kind=(str, int, float, bool, list), nullable=True)
METHOD_SCHEMA = F(kind=dict, required=("lr_grid",), keys={
    "lr_grid": F(kind=list, items=_num(min=0, min_open=True), unique=True, nonempty=True,
                 empty="list at least one learning rate (one rate = no sweep)"),
    "options": F(kind=dict, values=_OPTION_VALUE),
    "variants": F(kind=dict, key_name="variant", reserved=RESERVED_VARIANTS, values=F(kind=dict, values=_OPTION_VALUE)),
})


def _type_name(kind) -> str:
    if isinstance(kind, tuple):
        return " or ".join(_type_name(k) for k in kind)
    return {dict: "a mapping", list: "a list", str: "a string", bool: "true/false",
            int: "an integer", float: "a number"}.get(kind, getattr(kind, "__name__", str(kind)))


def _suggest(key: str, known) -> str:
    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def validate(value: Any, spec: F, where: str, source: str, *, merged: bool = False) -> Any:
    """Check ``value`` against ``spec``; ``where`` is the dotted key, ``source`` names the file(s).

    With ``merged`` the required keys of mappings are enforced too (a single overlay file may
    leave them to the file it extends). Returns the value (ints accepted where floats are).
    """
    def fail(msg):
        raise ConfigError(f"{source}: {where or 'top level'}: {msg}")

    if value is None:
        if spec.nullable or spec.kind is None:
            return None
        fail(f"must be {_type_name(spec.kind)}, got null (only keys documented as nullable accept null)")
    kind = spec.kind
    if kind is not None:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value) if kinds == (float,) else value
        if isinstance(value, bool) and bool not in kinds:
            fail(f"must be {_type_name(kind)}, got the boolean {value!r}")
        if not isinstance(value, kinds):
            hint = (" (write floats like 1.0e-4: YAML reads 1e-4 as a string)"
                    if float in kinds and isinstance(value, str) else "")
            fail(f"must be {_type_name(kind)}, got {value!r} ({type(value).__name__}){hint}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value or value in (float("inf"), float("-inf")):
            fail(f"must be a finite number, got {value!r}")
        if spec.min is not None and (value <= spec.min if spec.min_open else value < spec.min):
            fail(f"must be {'>' if spec.min_open else '>='} {spec.min:g}, got {value!r}")
        if spec.max is not None and (value >= spec.max if spec.max_open else value > spec.max):
            fail(f"must be {'<' if spec.max_open else '<='} {spec.max:g}, got {value!r}")
    if spec.choices is not None and value not in spec.choices:
        fail(f"{value!r} is not one of {', '.join(map(str, spec.choices))}")
    if spec.name is not None and isinstance(value, str):
        check_name(value, spec.name, source=source, key=where)
        if value in spec.reserved:
            fail(f"{value!r} is a reserved {spec.name} name (its runs' folder is used by other runs); rename it")
    if isinstance(value, list):
        if spec.nonempty and not value:
            fail(f"must not be empty{': ' + spec.empty if spec.empty else ''}")
        if spec.items is not None:
            value = [validate(v, spec.items, f"{where}[{i}]", source, merged=merged) for i, v in enumerate(value)]
        if spec.unique:
            seen, dups = set(), []
            for v in value:
                k = json.dumps(v, sort_keys=True, default=str)
                if k in seen and v not in dups:
                    dups.append(v)
                seen.add(k)
            if dups:
                fail(f"lists {', '.join(map(repr, dups))} more than once: each entry must appear once "
                     f"(duplicates would repeat runs and rows)")
    if isinstance(value, dict):
        out = type(value)()
        for k, v in value.items():
            sub = f"{where}.{k}" if where else str(k)
            if not isinstance(k, str):
                fail(f"key {k!r} must be a string")
            if spec.key_name is not None:
                check_name(k, spec.key_name, source=source, key=sub)
                if k in spec.reserved:
                    raise ConfigError(f"{source}: {sub}: {k!r} is a reserved {spec.key_name} name (its runs' "
                                      f"folder is used by other runs); rename it")
            if spec.keys is not None:
                if k not in spec.keys:
                    raise ConfigError(f"{source}: unknown key {sub!r}{_suggest(k, spec.keys)}; "
                                      f"valid keys{' of ' + where if where else ''}: {', '.join(spec.keys)}")
                out[k] = validate(v, spec.keys[k], sub, source, merged=merged)
            elif spec.values is not None:
                out[k] = validate(v, spec.values, sub, source, merged=merged)
            else:
                out[k] = v
        if merged:
            missing = [k for k in spec.required if k not in value]
            if missing:
                fail(f"missing key(s) {', '.join(missing)}; add them (docs/params.md lists the files and keys)")
        value = out
    return value


# ============================================================================ profiles
def available_profiles() -> list[str]:
    return sorted(p.stem for p in (paths.PARAMS / "profiles").glob("*.yaml"))


def check_profile_name(name) -> str:
    """``name`` if it names a file ``params/profiles/<name>.yaml``; else a ConfigError listing them."""
    valid = ", ".join(available_profiles())
    if name is None or not isinstance(name, str) or name.strip() == "":
        raise ConfigError(f"no profile given (PROFILE is empty); valid profiles: {valid} "
                          f"(each is a file params/profiles/<name>.yaml)")
    if not is_identifier(name):
        raise ConfigError(f"{name!r} is not a profile name (an identifier, {IDENTIFIER.pattern}: a lower-case "
                          f"letter, then lower-case letters, digits or '_'; no path); valid profiles: {valid}")
    if not (paths.PARAMS / "profiles" / f"{name}.yaml").is_file():
        raise ConfigError(f"unknown profile {name!r}{_suggest(name, available_profiles())}; valid profiles: "
                          f"{valid} (each is a file params/profiles/<name>.yaml)")
    return name


def _profile_chain(profile: str) -> list[tuple[Path, dict]]:
    """[(file, validated raw mapping)] from the root ancestor to ``profile``."""
    chain: list[tuple[Path, dict]] = []
    seen: list[str] = []
    name = check_profile_name(profile)
    while name:
        check_profile_name(name)
        if name in seen:
            raise ConfigError(f"params/profiles/{seen[-1]}.yaml: 'extends' makes a cycle: "
                              f"{' -> '.join([*seen, name])}")
        seen.append(name)
        path = paths.PARAMS / "profiles" / f"{name}.yaml"
        raw = validate(read_yaml(path), PROFILE_SCHEMA, "", _rel(path))
        chain.append((path, raw))
        name = raw.get("extends")
    return chain[::-1]


# ---------------------------------------------------------------------------- read once per process
# The loaders below read and validate their files once per process: the result is kept while no file
# under params/ changes (their paths, sizes and modification times are the key), and every caller
# gets its own deep copy (it may change what it got). A stage loads its profile once in
# lib.pipeline.common.setup and passes the mapping down; the callees that still ask by profile name
# (the grid's lr_grid, a method's parameters) get the parsed, validated copy, never a re-read.
_CACHE: dict = {}
_CACHE_SIG: list = [None]


def _params_signature() -> tuple:
    root = paths.PARAMS
    return (str(root), tuple(sorted((str(f), st.st_mtime_ns, st.st_size)
                                    for f in root.rglob("*.yaml") for st in (f.stat(),))))


def _once(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kw):
        sig = _params_signature()
        if sig != _CACHE_SIG[0]:
            _CACHE.clear()
            _CACHE_SIG[0] = sig
        key = (fn.__name__, args, tuple(sorted(kw.items())))
        if key not in _CACHE:
            _CACHE[key] = fn(*args, **kw)  # a refusal raises and is not kept
        return copy.deepcopy(_CACHE[key])
    wrapper.reads = fn  # the uncached loader
    return wrapper


@_once
def load_profile(profile: str) -> dict:
    """The merged, validated profile-wide configuration, with ``name`` set."""
    chain = _profile_chain(profile)
    cfg: dict = {}
    for _, raw in chain:
        cfg = deep_merge(cfg, {k: v for k, v in raw.items() if k != "extends"})
    cfg = _plain(cfg)
    source = " + ".join(_rel(p) for p, _ in chain)
    validate(cfg, PROFILE_SCHEMA, "", source, merged=True)
    if cfg.get("data", {}).get("source", "embedded") == "embedded" and "world" not in cfg:
        raise ConfigError(f"{source}: the embedded data source needs a 'world' mapping "
                          f"(seed, tasks, sizes, corpus); see params/profiles/mini.yaml")
    cfg["name"] = profile
    return cfg


# ============================================================================ stages and methods
def _check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}{_suggest(stage, STAGES)}; valid: {', '.join(STAGES)}")
    return stage


def _method_files(method: str, profile: str) -> list[Path]:
    check_name(method, "method")
    return [paths.PARAMS / "methods" / f"{method}.yaml", paths.PARAMS / profile / "methods" / f"{method}.yaml"]


def param_files(stage: str, profile: str, method: str | None = None) -> list[Path]:
    """Every existing file that feeds ``stage_params`` (and ``method_params``), in order (later wins)."""
    _check_stage(stage)
    check_profile_name(profile)
    files = [paths.PARAMS / f"{stage}.yaml", paths.PARAMS / profile / f"{stage}.yaml"]
    if method is not None:
        files += _method_files(method, profile)
    return [f for f in files if f.is_file()]


def _merge_files(files: list[Path], spec: F) -> tuple[dict, str]:
    out: dict = {}
    for f in files:
        out = deep_merge(out, validate(read_yaml(f), spec, "", _rel(f)))
    return _plain(out), " + ".join(_rel(f) for f in files) or "(no file)"


@_once
def stage_params(stage: str, profile: str) -> dict:
    """``params/<stage>.yaml`` then ``params/<profile>/<stage>.yaml``, validated."""
    _check_stage(stage)
    check_profile_name(profile)
    out, source = _merge_files(param_files(stage, profile), STAGE_SCHEMAS[stage])
    return validate(out, STAGE_SCHEMAS[stage], "", source, merged=True)


@_once
def method_params(method: str, profile: str) -> dict:
    """``params/methods/<m>.yaml`` then ``params/<profile>/methods/<m>.yaml``, validated.

    Keys: ``lr`` (float), optional ``lr_grid`` (list of floats), ``options`` (mapping) and
    ``variants`` (mapping name -> options mapping).
    """
    check_profile_name(profile)
    check_name(method, "method", key="method")
    files = [f for f in _method_files(method, profile) if f.is_file()]
    if not files or files[0] != _method_files(method, profile)[0]:
        known = sorted(p.stem for p in (paths.PARAMS / "methods").glob("*.yaml"))
        raise ConfigError(f"unknown method {method!r}{_suggest(method, known)}: no file "
                          f"params/methods/{method}.yaml; valid methods: {', '.join(known)}")
    out, source = _merge_files(files, METHOD_SCHEMA)
    out = validate(out, METHOD_SCHEMA, "", source, merged=True)
    out.setdefault("options", {})
    out.setdefault("variants", {})
    return out


def check_all(profile: str) -> dict:
    """Validate the profile, every stage's params and every method file the profile can use.

    Each file is checked on its own and every problem is reported, one line each (file, key, fix),
    in one :class:`ConfigError`; returns the merged profile when there is none."""
    check_profile_name(profile)
    problems: list[str] = []
    cfg = None

    def attempt(fn, *args):
        try:
            return fn(*args)
        except ConfigError as exc:
            if str(exc) not in problems:
                problems.append(str(exc))
            return None

    cfg = attempt(load_profile, profile)
    for stage in STAGES:
        attempt(stage_params, stage, profile)
    base, overlay = paths.PARAMS / "methods", paths.PARAMS / profile / "methods"
    for folder in (base, overlay):
        for f in sorted(folder.glob("*.yaml")):
            if not is_identifier(f.stem):
                attempt(lambda: check_name(f.stem, "method", source=_rel(f), key="file name"))
            elif folder == overlay and not (base / f.name).is_file():
                problems.append(f"{_rel(f)} overlays a method that does not exist (no params/methods/{f.name}): "
                                f"rename it after a method or delete it")
            elif folder == base:
                attempt(method_params, f.stem, profile)
    if problems:
        raise ConfigError(problems[0] if len(problems) == 1 else
                          f"{len(problems)} problems in the parameters of profile {profile!r}:\n"
                          + "\n".join(f"  - {p}" for p in problems))
    return cfg


# ============================================================================ small helpers
def check_type(name: str, value: Any, kind: type | tuple, *, positive: bool = False,
               nonneg: bool = False, choices=None) -> Any:
    """Validate one parameter early with a message that names it and the fix."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) and kind in (int, float):
        raise ConfigError(f"parameter {name!r} must be a number, got the boolean {value!r}")
    if not isinstance(value, kind):
        hint = " (write floats like 1.0e-4: YAML reads 1e-4 as a string)" if kind is float else ""
        raise ConfigError(f"parameter {name!r} must be {getattr(kind, '__name__', kind)}, "
                          f"got {value!r} ({type(value).__name__}){hint}")
    if positive and not value > 0:
        raise ConfigError(f"parameter {name!r} must be > 0, got {value!r}")
    if nonneg and value < 0:
        raise ConfigError(f"parameter {name!r} must be >= 0, got {value!r}")
    if choices is not None and value not in choices:
        raise ConfigError(f"parameter {name!r}={value!r} is not one of {sorted(choices)}")
    return value


def fingerprint(obj: Any) -> str:
    """A short stable hash of a JSON-able object (params, lists of files...)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def code_fingerprint(*modules: str) -> str:
    """Hash of lib source files, so a result is recomputed when the code that made it changes."""
    h = hashlib.sha256()
    for m in modules:
        h.update((paths.ROOT / "lib" / f"{m}.py").read_bytes())
    return h.hexdigest()[:16]


# ============================================================================ command line
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = ("usage: python -m lib.config check <profile> | profile-name <name> | "
             "params <stage> <profile> [<method>] | files <stage> <profile> [<method>]")
    if not argv or argv[0] not in ("check", "profile-name", "params", "files"):
        print(usage, file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    try:
        if cmd == "profile-name":
            check_profile_name(args[0] if args else "")
        elif cmd == "check":
            check_all(args[0] if args else "")
            print(f"params of profile {args[0]}: ok")
        elif len(args) not in (2, 3):
            print(usage, file=sys.stderr)
            return 2
        elif cmd == "params":
            stage, profile, *m = args
            out = {"stage": stage_params(stage, profile)}
            if m:
                out["method"] = method_params(m[0], profile)
            yaml.safe_dump(out, sys.stdout, sort_keys=True, default_flow_style=False)
        else:
            stage, profile, *m = args
            check_profile_name(profile)
            if m:
                method_params(m[0], profile)
            print(" ".join(_rel(f) for f in param_files(stage, profile, *m)))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
