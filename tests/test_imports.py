"""Imports in lib/ sit at the module top unless there is a stated reason (issue "Structure v2", item 5).

An import that is not a direct statement of a module's body (inside a function, a class, or a
top-level ``if`` / ``try``) must carry one of two tags, on its own line or the line just above it:

* ``# start-up: <what it costs, measured>`` - kept off a path that must start fast, with the figure
  (e.g. ``# start-up: `grid --progress` 0.14 s without torch, 2.7 s with it``);
* ``# optional: <package> may be absent`` - a package the project does not require (IPython, fcntl).

There is no third reason: an import circle is not one (tests/test_codegraph.py keeps lib/ free of
them, function-level imports included). Read with :mod:`ast`; nothing of lib is imported here.
"""
import ast
import re
from pathlib import Path

LIB = Path(__file__).resolve().parent.parent / "lib"
TAGS = ("# start-up:", "# optional:")

# Files not yet brought under the rule, each with why. Remove an entry once its file is done.
PENDING: dict[str, str] = {}


def nested_imports(tree: ast.Module):
    """Import statements that are not direct children of the module body."""
    top = {id(n) for n in tree.body}
    return sorted((n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in top),
                  key=lambda n: n.lineno)


def untagged(source: str) -> list[int]:
    """Line numbers of the nested imports of ``source`` that carry no tag (or a start-up tag without a figure)."""
    lines = source.splitlines()
    bad = []
    for node in nested_imports(ast.parse(source)):
        near = lines[node.lineno - 2:node.end_lineno] if node.lineno > 1 else lines[:node.end_lineno]
        tags = [ln[ln.index(t):] for ln in near for t in TAGS if t in ln]
        if not tags or all(t.startswith("# start-up:") and not re.search(r"\d", t) for t in tags):
            bad.append(node.lineno)
    return bad


def covers(key: str, rel: str) -> bool:
    """PENDING's ``key`` (a file, or a folder ending in /) covers ``rel`` (a path under lib/)."""
    return rel.startswith(key) if key.endswith("/") else rel == key


def pending(rel: str) -> str | None:
    return next((why for key, why in PENDING.items() if covers(key, rel)), None)


def lib_files():
    return sorted(p for p in LIB.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_nested_import_in_lib_is_tagged():
    problems = []
    for f in lib_files():
        rel = f.relative_to(LIB).as_posix()
        if pending(rel):
            continue
        problems += [f"lib/{rel}:{n}" for n in untagged(f.read_text(encoding="utf-8"))]
    assert not problems, (
        "imports inside a function (or an if / try) with no reason given: move them to the module top, or tag "
        "the line (or the line above) `# start-up: <measured cost>` or `# optional: <package> may be absent`:\n  "
        + "\n  ".join(problems))


def test_no_cycle_tag():
    """An import circle is not a reason to import late: break the circle instead."""
    found = [f"lib/{f.relative_to(LIB).as_posix()}:{i}" for f in lib_files()
             for i, ln in enumerate(f.read_text(encoding="utf-8").splitlines(), 1) if re.search(r"#\s*cycle:", ln)]
    assert not found, "`# cycle:` is not an allowed reason: " + ", ".join(found)


def test_pending_entries_are_still_needed():
    """Each PENDING entry names files that exist and still hold an untagged import (else remove it)."""
    for key in PENDING:
        files = [f for f in lib_files() if covers(key, f.relative_to(LIB).as_posix())]
        assert files, f"PENDING names lib/{key}, which does not exist"
        assert any(untagged(f.read_text(encoding="utf-8")) for f in files), \
            f"lib/{key} has no untagged nested import left: remove it from PENDING"


def test_the_check_catches_what_it_should():
    src = ("import os\n"
           "def f():\n    import json\n"                                       # untagged: caught
           "def g():\n    import fcntl  # optional: fcntl may be absent\n"      # tagged on its line
           "def h():\n    # start-up: torch 1.4 s\n    import torch\n"         # tagged on the line above
           "def k():\n    import torch  # start-up: torch\n"                    # no figure: caught
           "if os.name == 'nt':\n    import msvcrt\n"                           # top-level if: caught
           "def m():\n    from a import (b,\n                   c)  # optional: a may be absent\n")
    assert untagged(src) == [3, 10, 12]
