"""Layered YAML parameters.

Two kinds of YAML live in ``params/``:

* ``params/profiles/<profile>.yaml`` -- profile-wide settings (world / datasets, model,
  experiment grid).  A profile may ``extends:`` another one; mappings are deep-merged.
* ``params/<stage>.yaml`` (stage defaults), ``params/<profile>/<stage>.yaml`` (profile
  overlay) and ``params/methods/<method>.yaml`` -- handed to papermill with ``-f``.
  Their keys must exist in the notebook's ``parameters`` cell (a test checks this).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from . import paths


class ConfigError(ValueError):
    """A malformed or unknown parameter; the message says what and how to fix it."""


def deep_merge(base: dict, overlay: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (overlay or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"parameter file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML in {path}: {exc}. Fix the syntax of that file.") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of parameters, not {type(data).__name__}")
    return data


def available_profiles() -> list[str]:
    return sorted(p.stem for p in (paths.PARAMS / "profiles").glob("*.yaml"))


def load_profile(profile: str) -> dict:
    """The merged profile-wide configuration, with ``name`` set."""
    path = paths.PARAMS / "profiles" / f"{profile}.yaml"
    if not path.exists():
        raise ConfigError(
            f"unknown profile {profile!r}; valid profiles: {', '.join(available_profiles())} "
            f"(each is a file params/profiles/<name>.yaml)"
        )
    cfg = read_yaml(path)
    parent = cfg.pop("extends", None)
    if parent:
        cfg = deep_merge(load_profile(parent), cfg)
    cfg["name"] = profile
    return cfg


def stage_param_files(stage: str, profile: str, method: str | None = None) -> list[Path]:
    """The YAML files papermill gets with ``-f`` for a stage, in order (later wins)."""
    files = [paths.PARAMS / f"{stage}.yaml", paths.PARAMS / profile / f"{stage}.yaml"]
    if method is not None:
        files += [paths.PARAMS / "methods" / f"{method}.yaml",
                  paths.PARAMS / profile / "methods" / f"{method}.yaml"]
    return [f for f in files if f.exists()]


def load_stage_params(stage: str, profile: str, method: str | None = None) -> dict:
    out: dict = {}
    for f in stage_param_files(stage, profile, method):
        out = deep_merge(out, read_yaml(f))
    return out


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
    import hashlib
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def code_fingerprint(*modules: str) -> str:
    """Hash of lib source files, so a result is recomputed when the code that made it changes."""
    import hashlib
    h = hashlib.sha256()
    for m in modules:
        h.update((paths.ROOT / "lib" / f"{m}.py").read_bytes())
    return h.hexdigest()[:16]


# --- interim API (the schema-validating loader replaces these) -------------------------------
def check_profile_name(name: str) -> str:
    if not name or "/" in name or name not in available_profiles():
        raise ConfigError(f"PROFILE={name!r} is not a profile; valid profiles: {', '.join(available_profiles())} "
                          f"(each is a file params/profiles/<name>.yaml)")
    return name


def param_files(stage: str, profile: str, method: str | None = None) -> list[Path]:
    return stage_param_files(stage, profile, method)


def stage_params(stage: str, profile: str) -> dict:
    return load_stage_params(stage, profile)


def method_params(method: str, profile: str) -> dict:
    out: dict = {}
    for f in (paths.PARAMS / "methods" / f"{method}.yaml", paths.PARAMS / profile / "methods" / f"{method}.yaml"):
        if f.exists():
            out = deep_merge(out, read_yaml(f))
    return out
