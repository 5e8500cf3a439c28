"""Class names and prompt templates from CLIP_benchmark's package data (``clip-benchmark==1.6.2``).

The tasks of the ``colab`` profile take their class names and zero-shot templates from the two JSON
files CLIP_benchmark ships (``clip_benchmark/datasets/en_classnames.json`` and
``en_zeroshot_classification_templates.json``), read from the installed package, never retyped.
The files are located without importing the package (``importlib.util.find_spec``: its
dependencies -- webdataset, pycocoevalcap, transformers -- are not needed to read two JSON files,
so ``pip install --no-deps clip-benchmark==1.6.2`` is enough) and checked against the sha256 of the
1.6.2 files (:data:`SHA256`): another version is refused with the pin to install, so the prompts of
a run are the ones this artifact documents.

CLIP_benchmark's rules, kept here: a dataset's templates are its own key in the templates file,
else ``imagenet1k``'s (``default_dataset_for_templates`` in its ``datasets/builder.py``); class
names of CIFAR-10, STL-10, DTD and Rendered SST2 are not in the class-name file (CLIP_benchmark
takes torchvision's ``dataset.classes``, read from the data), so those tasks hold them as constants
that their loaders check against the data's own files. Templates use ``{c}``; the repository's
prompts use ``{}`` (``str.format``), so ``{c}`` becomes ``{}``.

``CLIPMIS_CLIP_BENCHMARK_DIR`` may name a folder holding the two files instead (the tests point it
at ``tests/data/clip_benchmark/``, a copy of the few entries they need); no version check then.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path

from ..config import ConfigError

VERSION = "1.6.2"
PIN = f"clip-benchmark=={VERSION}"
CLASSNAMES = "en_classnames.json"
TEMPLATES = "en_zeroshot_classification_templates.json"
SHA256 = {  # of the files in the clip-benchmark 1.6.2 wheel (its RECORD lists the same digests)
    CLASSNAMES: "73d279021a4bc88059884d01fae66c35ec33793ede8bc9ae54c46632625c4993",
    TEMPLATES: "b78cc883ce1d6aefd304f180046ee25e778d627e099222fbcc57f01657c53c31",
}
DEFAULT_TEMPLATES_KEY = "imagenet1k"   # CLIP_benchmark's default_dataset_for_templates
ENV = "CLIPMIS_CLIP_BENCHMARK_DIR"
INSTALL = (f"install it with `pip install --no-deps {PIN}` (the two JSON files are all this project "
           f"reads; requirements-colab.txt pins it)")


def data_dir() -> tuple[Path, bool]:
    """(folder holding the two JSON files, whether it is the installed package's)."""
    override = os.environ.get(ENV)
    if override:
        return Path(override), False
    spec = importlib.util.find_spec("clip_benchmark")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the colab profile's tasks read their class names and prompt templates from "
                          f"CLIP_benchmark's package data, and clip_benchmark is not installed: {INSTALL}")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets", True


@lru_cache(maxsize=None)
def _load(name: str, folder: str, installed: bool) -> dict:
    path = Path(folder) / name
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path} ({exc.strerror or exc}): {INSTALL}") from exc
    if installed:
        got = hashlib.sha256(raw).hexdigest()
        if got != SHA256[name]:
            raise ConfigError(f"{path} is not the file of {PIN} (sha256 {got[:16]}..., expected "
                              f"{SHA256[name][:16]}...): another clip-benchmark version is installed; "
                              f"{INSTALL}")
    return json.loads(raw.decode("utf-8"))


def _file(name: str) -> dict:
    folder, installed = data_dir()
    return _load(name, str(folder), installed)


def classnames(key: str) -> list[str]:
    """CLIP_benchmark's class names of dataset ``key`` (``en_classnames.json``)."""
    data = _file(CLASSNAMES)
    if key not in data:
        raise ConfigError(f"CLIP_benchmark's {CLASSNAMES} has no class names for {key!r}")
    return list(data[key])


def templates(key: str) -> list[str]:
    """CLIP_benchmark's zero-shot templates of dataset ``key`` (its own, else ``imagenet1k``'s, as
    CLIP_benchmark does), with ``{c}`` written as ``{}``."""
    data = _file(TEMPLATES)
    found = data.get(key, data.get(DEFAULT_TEMPLATES_KEY))
    if not found:
        raise ConfigError(f"CLIP_benchmark's {TEMPLATES} has no templates for {key!r}")
    out = []
    for t in found:
        if t.count("{c}") != 1 or t.replace("{c}", "").count("{") or t.replace("{c}", "").count("}"):
            raise ConfigError(f"CLIP_benchmark template {t!r} of {key!r} does not hold exactly one {{c}}")
        out.append(t.replace("{c}", "{}"))
    return out
