"""``MANIFEST.json`` of a folder of generated files (the figures folder): what is in it and what made it.

The manifest lists every file under the folder (relative POSIX path, sha256, size in bytes), except
itself and temporary files, and records what produced them (``produced_by``: notebook, profile,
git commit + dirty flag, package versions, device, fingerprints of the input tables...). It is
written last and atomically, so a folder whose manifest verifies (:func:`verify_manifest`) is the
complete output of that producer.
"""
from __future__ import annotations

import json
from pathlib import Path

from .io import sha256_hex, write_text

MANIFEST_NAME = "MANIFEST.json"
MANIFEST_VERSION = 1


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 (hex, all 64 digits) of a file's bytes, read now (a manifest checks what is on disk)."""
    with open(path, "rb") as f:
        return sha256_hex(iter(lambda: f.read(chunk), b""))


def _is_temporary(rel: str) -> bool:
    return ".tmp" in Path(rel).name


def listed_files(folder: Path) -> list[str]:
    """Relative POSIX paths of the files a manifest of ``folder`` covers, sorted."""
    folder = Path(folder)
    # a subfolder with a manifest of its own is another publication (paper_figures/<profile>/): not ours
    nested = [p.parent for p in folder.rglob(MANIFEST_NAME) if p.parent != folder]
    out = []
    for p in folder.rglob("*"):
        if p.is_file() and not any(n in p.parents for n in nested):
            rel = p.relative_to(folder).as_posix()
            if rel != MANIFEST_NAME and not _is_temporary(rel):
                out.append(rel)
    return sorted(out)


def write_manifest(folder: Path, produced_by: dict) -> Path:
    """Write ``<folder>/MANIFEST.json`` listing each file with sha256 and size, and ``produced_by``.

    ``produced_by`` is stored as given (JSON; non-JSON values as strings), e.g. ``{"notebook":
    "04_figures", "profile": ..., "git": {"commit": ..., "dirty": ...}, "versions": {...},
    "inputs": {"zero_shot.csv": <sha256[:16]>, ...}}`` (``lib.provenance.collect`` +
    ``lib.analysis.input_fingerprints``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write a manifest of {folder}: no such folder")
    if not isinstance(produced_by, dict):
        raise TypeError(f"produced_by must be a dict, got {type(produced_by).__name__}")
    files = [{"path": rel, "sha256": sha256_file(folder / rel), "size": (folder / rel).stat().st_size}
             for rel in listed_files(folder)]
    doc = {"manifest_version": MANIFEST_VERSION,   # no timestamp: same files + producer, same manifest
           "produced_by": produced_by,
           "files": files}
    out = folder / MANIFEST_NAME
    write_text(out, json.dumps(doc, indent=1, sort_keys=False, default=str) + "\n")
    return out


def read_manifest(folder: Path) -> dict:
    f = Path(folder) / MANIFEST_NAME
    if not f.exists():
        raise FileNotFoundError(f"{f} does not exist: run the notebook that produces {Path(folder).name}/")
    return json.loads(f.read_text())


def verify_manifest(folder: Path) -> list[str]:
    """Problems of ``folder`` against its manifest (empty list: every file listed, hashes match)."""
    folder = Path(folder)
    doc = read_manifest(folder)
    listed = {e["path"]: e for e in doc.get("files", [])}
    present = set(listed_files(folder))
    problems = [f"not listed in the manifest: {p}" for p in sorted(present - set(listed))]
    problems += [f"listed but missing: {p}" for p in sorted(set(listed) - present)]
    for p in sorted(present & set(listed)):
        e = listed[p]
        size = (folder / p).stat().st_size
        if size != e.get("size"):
            problems.append(f"size differs: {p} ({size} != {e.get('size')})")
        elif sha256_file(folder / p) != e.get("sha256"):
            problems.append(f"sha256 differs: {p}")
    return problems
