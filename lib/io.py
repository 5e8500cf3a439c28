"""Every file the project writes goes through here: atomic writes, CSV + provenance, JSON.

A write goes to a temporary name that is unique per writer (process id + random suffix, in the
target's folder) and is then renamed over the target with ``os.replace``: a reader sees the old
file or the new one, never a half-written one, and two writers never share a temporary file.
Readers of markers and caches use :func:`read_json`, which treats a file that does not parse as
absent, so a damaged file is recomputed instead of trusted.

Content hashes: :func:`content_hash` (of a JSON-able value, canonical form) and :func:`file_sha256`
(of a file's bytes). :func:`write_csv` records the table's own hash in its provenance file
(``content_sha256``) and :func:`csv_hash_problem` checks it on read; the evaluation cache and the
run markers record theirs (``lib.pipeline.evaluate``, ``lib.pipeline.finetune``).

Every text file that is published or shown to a reader (README blocks, Markdown tables,
``claims.md``) should be written with :func:`write_text` (atomic), never ``Path.write_text``.
"""
from __future__ import annotations

import hashlib
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
    """Atomic text write (UTF-8): a reader sees the old file or the new one, never a half-written one."""
    return write_bytes(path, text.encode("utf-8"))


def canonical_json(obj: Any) -> str:
    """The canonical JSON text of ``obj`` (sorted keys, no spaces; NaN kept as ``NaN``), so a value
    and the same value read back from a JSON file hash alike."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


# Hash lengths in hex digits, chosen per use and named at each call: FULL (all 64) where a hash
# checks content (files, rows, markers, manifests); SHORT (16) where it names an input (fingerprints
# of parameters, code, data and states, cache keys). Two older identifiers keep their lengths, as
# they are recorded in existing tables and cache files: 12 for a subset of a split
# (``lib.splits.Split.subset``) and 24 for an embedding cache file (``lib.evaluate``).
FULL = None
SHORT = 16


def sha256_hex(*parts, length: int | None = FULL) -> str:
    """sha256 (hex) of the concatenation of ``parts``, cut to its first ``length`` hex digits (all 64
    for :data:`FULL`). A part is bytes, a str (UTF-8 encoded) or an iterable of bytes (read as it
    goes: a large file is never held whole). The project's one hashing helper: :func:`content_hash`
    and :func:`file_sha256` build on it."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, str):
            h.update(p.encode("utf-8"))
        elif isinstance(p, (bytes, bytearray, memoryview)):
            h.update(p)
        else:
            for chunk in p:
                h.update(chunk)
    return h.hexdigest()[:length]


def content_hash(obj: Any, length: int | None = FULL) -> str:
    """sha256 (hex) of the canonical JSON of ``obj``; equal for a value and its JSON round trip."""
    return sha256_hex(canonical_json(json.loads(canonical_json(obj))), length=length)


_FILE_HASHES: dict = {}


def file_sha256(path: Path) -> str:
    """sha256 (hex) of a file's bytes; remembered per (path, inode, size, mtime, ctime) within a
    process, so a reader that checks the same large file many times reads it once (a file replaced
    or rewritten since has another inode or time stamp and is read again)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _FILE_HASHES:
        with open(path, "rb") as f:
            _FILE_HASHES[key] = sha256_hex(iter(lambda: f.read(1 << 20), b""))
    return _FILE_HASHES[key]


def json_safe(obj: Any) -> Any:
    """Plain JSON types: numpy scalars to Python, non-finite floats to None, paths to str."""
    import numpy as np  # start-up: numpy adds 0.16 s to lib.io; grid --progress imports lib.io and loads no numpy
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


def provenance_path(path: Path) -> Path:
    """The provenance file of a table: ``<name>.provenance.json`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".provenance.json")


def write_csv(df, path: Path, provenance: dict | None = None, float_format: str = "%.6g") -> Path:
    """Atomic CSV write, with ``<name>.provenance.json`` beside it when ``provenance`` is given; the
    provenance then records the CSV's own hash (``content_sha256``, see :func:`csv_hash_problem`)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format=float_format)
        digest = sha256_hex(Path(tmp).read_bytes())
    if provenance is not None:
        write_json(provenance_path(path), {**provenance, "content_sha256": digest})
    return path


def csv_hash_problem(path: Path) -> str | None:
    """Why a table's bytes no longer match the hash its provenance file recorded, or None when they
    match or nothing was recorded (no provenance file, or one written before hashes were)."""
    prov = read_json(provenance_path(path))
    want = prov.get("content_sha256") if isinstance(prov, dict) else None
    if not want:
        return None
    got = file_sha256(path)
    if got != want:
        return (f"{path} does not match the content hash recorded in {provenance_path(path).name} "
                f"(recorded {want[:12]}..., now {got[:12]}...): it was edited or damaged after it was written")
    return None


def save_npy(path: Path, array) -> Path:
    import numpy as np  # start-up: numpy adds 0.16 s to lib.io; grid --progress imports lib.io and loads no numpy
    with atomic_path(path) as tmp:
        np.save(tmp, array)
    return Path(path)


def load_npy(path: Path, shape0: int | None = None):
    """A cached array, or None if it is missing, unreadable or has the wrong number of rows."""
    import numpy as np  # start-up: numpy adds 0.16 s to lib.io; grid --progress imports lib.io and loads no numpy
    try:
        arr = np.load(path)
    except (OSError, ValueError, EOFError):
        return None
    if shape0 is not None and (arr.ndim < 1 or arr.shape[0] != shape0):
        return None
    return arr


def save_safetensors(path: Path, tensors: dict, metadata: dict | None = None) -> Path:
    from safetensors.torch import save_file  # start-up: loads torch (1.9 s)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)
