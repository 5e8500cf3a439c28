"""The static import graph of ``lib/`` (read with :mod:`ast`, nothing is imported).

A module's *closure* is every ``lib`` module it imports, transitively: imports at module top and
inside functions alike, plus the packages (``__init__.py``) Python executes on the way. From it:

* :func:`closure_files` - the source files of a closure: the Make prerequisites of a stage
  (``python -m lib.pipeline.grid <profile> --make`` writes them into ``grid.mk``);
* :func:`closure_hash` - one hash of those files' bytes: the code fingerprint of a fine-tuning run
  (:mod:`lib.pipeline.finetune`) and of an evaluation cache (:mod:`lib.pipeline.evaluate`), so a
  change to any module the stage runs (``lib/schedule.py`` under ``lib/train.py``, ``lib/metrics.py``
  under ``lib/evaluate.py``) recomputes its results and a change elsewhere does not;
* :func:`cycles` - the import circles of ``lib/`` (a test keeps this empty).

Imports by a computed name (``importlib.import_module(x)``) are not seen; ``lib`` has none.

``python -m lib.pipeline.codegraph [module ...]`` prints each module's closure (default: the
circles of ``lib/``, if any).
"""
from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

from ..io import sha256_hex

PACKAGE = "lib"
ROOT = Path(__file__).resolve().parents[2]  # the repository (the folder that holds lib/)


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The source file of module ``name`` (``lib.x.y``) under ``root``, or None if there is none."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts)
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _is_package(name: str, root: Path) -> bool:
    return (root.joinpath(*name.split(".")) / "__init__.py").is_file()


def _parents(name: str) -> list[str]:
    """The packages Python imports before ``name``: ``lib.a.b`` -> ``lib``, ``lib.a``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@functools.lru_cache(maxsize=None)
def _direct(name: str, root: Path, stamp: tuple) -> frozenset[str]:
    f = module_file(name, root)
    tree = ast.parse(f.read_bytes(), filename=str(f))
    here = name if _is_package(name, root) else name.rpartition(".")[0]  # the package `from .` means
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = here.split(".")
                pkg = pkg[:len(pkg) - (node.level - 1)]
                mod = ".".join(pkg + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from P import n`: n is a submodule of P (an import of P.n) or a name P defines (of P)
            subs = [f"{mod}.{a.name}" for a in node.names if module_file(f"{mod}.{a.name}", root)]
            targets = subs + ([mod] if len(subs) < len(node.names) else [])
        else:
            continue
        for t in targets:
            if t.split(".")[0] == PACKAGE and module_file(t, root) is not None:
                out.add(t)
    out.discard(name)
    return frozenset(out)


def imports(name: str, root: Path = ROOT) -> frozenset[str]:
    """The ``lib`` modules that module ``name`` names in an import statement (anywhere in it)."""
    f = module_file(name, root)
    if f is None:
        raise ModuleNotFoundError(f"no module {name!r} under {root / PACKAGE}")
    st = f.stat()
    return _direct(name, Path(root), (st.st_mtime_ns, st.st_size))


def closure(*names: str, root: Path = ROOT) -> list[str]:
    """Every ``lib`` module that importing ``names`` runs (them included), sorted: their imports,
    transitively, and each module's parent packages."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo += [p for p in _parents(m) if module_file(p, root) is not None]
        todo += imports(m, root)
    return sorted(seen)


def closure_files(*names: str, root: Path = ROOT) -> list[str]:
    """The source files of :func:`closure` as paths relative to ``root`` (POSIX), sorted."""
    return sorted(module_file(m, root).relative_to(root).as_posix() for m in closure(*names, root=root))


def closure_hash(*names: str, root: Path = ROOT, length: int | None = 16) -> str:
    """sha256 (hex, first ``length`` digits; all 64 for None) of the closure's sources: each
    file's relative path and bytes, in sorted order. Any edit to a module the closure holds (a
    comment too) changes it; a module outside it does not."""
    parts = []
    for rel in closure_files(*names, root=root):
        data = (Path(root) / rel).read_bytes()
        parts.append(f"{rel}\0{len(data)}\0".encode() + data)
    return sha256_hex(*parts, length=length)


def all_modules(root: Path = ROOT) -> list[str]:
    """Every module under ``root/lib`` (packages by their name, not ``.__init__``), sorted."""
    out = []
    for f in sorted((Path(root) / PACKAGE).rglob("*.py")):
        parts = list(f.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append(".".join(parts))
    return out


def graph(root: Path = ROOT) -> dict[str, list[str]]:
    """Module -> the ``lib`` modules it names in an import statement, for every module of ``lib``."""
    return {m: sorted(imports(m, root)) for m in all_modules(root)}


def cycles(root: Path = ROOT) -> list[list[str]]:
    """The import circles of ``lib/``: each strongly connected component of :func:`graph` with more
    than one module (Tarjan's algorithm), each sorted; empty when there are none. A package's
    ``from . import x`` of its own submodule is an edge like any other."""
    g = graph(root)
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return sorted(out)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        for m in argv:
            print(f"{m} ({closure_hash(m)}):")
            for f in closure_files(m):
                print(f"  {f}")
        return 0
    circles = cycles()
    for c in circles:
        print("import circle: " + " <-> ".join(c))
    if not circles:
        print("no import circle in lib/")
    return 1 if circles else 0


if __name__ == "__main__":
    sys.exit(main())
