"""What every real task shares: the shipped class lists, seeds from strings, file listings, the
error messages of missing or malformed data, :func:`fingerprint_files` (a split's fingerprint) and
:class:`RealTask`, the base class of the tasks (one module per dataset beside this one)."""
from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path

CLASSNAMES_DIR = Path(__file__).resolve().parent.parent / "classnames"   # lib/classnames
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
SPLITS = ("train", "val", "test")
ROOT_HINT = ("Point data.root in params/profiles/<profile>.yaml (or the env var "
             "CLIPMIS_DATA_ROOT) at the folder holding it.")


def _read_list(name: str) -> list[str]:
    path = CLASSNAMES_DIR / name
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _seed_of(*parts) -> list[int]:
    """Entropy for np.random.default_rng from ints and strings (strings via crc32: stable)."""
    return [p if isinstance(p, int) else zlib.crc32(str(p).encode()) for p in parts]


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTS


def _list_images(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if _is_image(e.name) and e.is_file())


def _has_image(folder: Path) -> bool:
    with os.scandir(folder) as it:
        return any(_is_image(e.name) for e in it)


def _subdirs(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir())


def _missing(task: "RealTask", path: Path, root: Path, what: str = "folder") -> FileNotFoundError:
    state = "does not exist" if not path.exists() else "is empty"
    return FileNotFoundError(
        f"[data] task {task.name!r} needs the {what} {path}, which {state}.\n"
        f"Expected layout under the data root {root}:\n{task.layout}\n"
        f"How to get it: {task.how_to_get}\n{ROOT_HINT}")


def _malformed(task: "RealTask", path: Path, problem: str) -> ValueError:
    return ValueError(f"[data] task {task.name!r}: {path} is malformed: {problem}.\n"
                      f"Expected layout:\n{task.layout}\nHow to get a clean copy: {task.how_to_get}")


def _nonempty(folder: Path) -> bool:
    with os.scandir(folder) as it:
        return any(True for _ in it)


def _require_dir(task, path: Path, root: Path) -> Path:
    if not path.is_dir() or not _nonempty(path):
        raise _missing(task, path, root)
    return path


def _require_file(task, path: Path, root: Path) -> Path:
    if not path.is_file() or path.stat().st_size == 0:
        raise _missing(task, path, root, what="file")
    return path


def _check_class_dirs(task, folder: Path, root: Path, expected: list[str], what: str) -> None:
    """``folder`` must hold exactly the ``expected`` class folders, each with an image."""
    _require_dir(task, folder, root)
    found = _subdirs(folder)
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        parts = [f"found {len(found)} class folders, expected the {len(expected)} {what}"]
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {', '.join(missing[:5])})")
        if extra:
            parts.append(f"unexpected {len(extra)} (e.g. {', '.join(extra[:5])})")
        raise _malformed(task, folder, "; ".join(parts))
    for name in expected:
        if not _has_image(folder / name):
            raise _malformed(task, folder / name, "class folder without any image file")


def fingerprint_files(relative_files, labels) -> str:
    """sha256 of the sorted ``relpath<TAB>label`` lines (no image bytes are read)."""
    h = hashlib.sha256(b"clipmis-real-split-v1\n")
    for rel, y in sorted(zip(relative_files, (int(v) for v in labels))):
        h.update(f"{rel}\t{y}\n".encode())
    return h.hexdigest()[:16]


# ============================================================================= tasks
class RealTask:
    """One real task. Subclasses fill in the attributes and the four methods.

    ``src`` in the methods is the :class:`lib.real_data.source.RealSource` that reads the task (its
    ``root``, seeds and listing cache); not annotated here, where that module is not imported (it
    imports this one).
    """
    name: str = ""
    kind: str = ""
    id_domain: str = "id"
    ood_domains: tuple = ()
    ood_val_domains: tuple = ()      # OOD domains that also have an official "val" split
    templates: tuple = ()
    layout: str = ""                 # short tree, shown in error messages
    how_to_get: str = ""

    def classnames(self) -> list[str]:
        raise NotImplementedError

    def check(self, src) -> None:
        """Raise FileNotFoundError / ValueError when the data is missing or malformed."""
        raise NotImplementedError

    def present(self, src) -> bool:
        """Cheap test whether the task's top folder exists (used before downloading)."""
        return True

    def fetch(self, src) -> None:
        """Download with the dataset's own tooling (data.download: true). Default: manual."""

    def index(self, src, domain: str, split: str):
        """-> (relative paths, labels, classnames, meta) of one split, deterministic."""
        raise NotImplementedError
