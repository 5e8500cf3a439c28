"""Datasets: one registry for the embedded world and the real datasets.

The types (:class:`Split`, :class:`TaskSpec`, :class:`DatasetSource`), the torch side and the
registry live one layer down in :mod:`lib.splits` (re-exported here); ``lib.world`` (embedded
profiles: generated arrays under ``build/<profile>/world/``) and ``lib.real_data`` (the paper
profile: the real datasets' on-disk layouts) register their sources there, and
:func:`source_for` picks a profile's.
"""
from __future__ import annotations

from . import real_data, world  # noqa: F401  (importing them registers "real" and "embedded")
from .config import ConfigError
from .splits import (SOURCES, ArrayImages, DatasetSource, FileImages, Split, TaskSpec, iterate,
                     register_source, torch_dataset)

__all__ = ["SOURCES", "ArrayImages", "DatasetSource", "FileImages", "Split", "TaskSpec", "iterate",
           "register_source", "source_for", "torch_dataset"]


def source_for(profile_cfg: dict) -> DatasetSource:
    """The data source of a profile (``data.source``: ``embedded``, the default, or ``real``)."""
    kind = profile_cfg.get("data", {}).get("source", "embedded")
    if kind not in SOURCES:
        raise ConfigError(f"unknown data source {kind!r}; valid: {', '.join(SOURCES)}")
    return SOURCES[kind](profile_cfg)
