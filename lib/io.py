"""Every file the project writes goes through here: atomic writes, CSV + provenance, JSON.

A write goes to a temporary name that is unique per writer (process id + random suffix, in the
target's folder) and is then renamed over the target with ``os.replace``: a reader sees the old
file or the new one, never a half-written one, and two writers never share a temporary file.
Readers of markers and caches use :func:`read_json`, which treats a file that does not parse as
absent, so a damaged file is recomputed instead of trusted.
"""
from __future__ import annotations

import json
import math
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

TMP_TAG = ".tmp-"


def tmp_path(path: Path) -> Path:
    """A temporary sibling of ``path``, unique per writer; same suffix so libraries accept it."""
    path = Path(path)
    return path.with_name(f".{path.stem}{TMP_TAG}{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")


def is_temporary(name: str) -> bool:
    return TMP_TAG in name or name.endswith(".tmp")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path: Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def json_safe(obj: Any) -> Any:
    """Plain JSON types: numpy scalars to Python, non-finite floats to None, paths to str."""
    import numpy as np
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        obj = float(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: Path, obj: Any, *, indent: int = 1, sort_keys: bool = False, safe: bool = False,
               default: Callable | None = str) -> Path:
    if safe:
        obj = json_safe(obj)
    return write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default))


def read_json(path: Path) -> Any | None:
    """The parsed JSON of ``path``, or None if it is missing, empty or does not parse."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_csv(df, path: Path, provenance: dict | None = None, float_format: str = "%.6g") -> Path:
    """Atomic CSV write, with ``<name>.provenance.json`` beside it when ``provenance`` is given."""
    path = Path(path)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format=float_format)
    if provenance is not None:
        write_json(path.with_name(path.name + ".provenance.json"), provenance)
    return path


def save_npy(path: Path, array) -> Path:
    import numpy as np
    with atomic_path(path) as tmp:
        np.save(tmp, array)
    return Path(path)


def load_npy(path: Path, shape0: int | None = None):
    """A cached array, or None if it is missing, unreadable or has the wrong number of rows."""
    import numpy as np
    try:
        arr = np.load(path)
    except (OSError, ValueError, EOFError):
        return None
    if shape0 is not None and (arr.ndim < 1 or arr.shape[0] != shape0):
        return None
    return arr


def save_npz(path: Path, **arrays) -> Path:
    import numpy as np
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)
    return Path(path)


def save_safetensors(path: Path, tensors: dict, metadata: dict | None = None) -> Path:
    from safetensors.torch import save_file
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)
