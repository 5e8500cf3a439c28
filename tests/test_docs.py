"""Docs that cannot drift: facts the code owns, checked where README.md and docs/*.md state them.

Fast (no torch, no pipeline): the Makefile's targets, the file tree, ``params/`` (read with
``yaml.safe_load``) and the ``lib`` modules' source (read with ``ast``, never imported) against

* the README's length (the long material lives in docs/);
* every ``make <target>`` named in a code span or code block;
* every repository path named in backticks (``lib/...``, ``params/...``, ``notebooks/...``,
  ``docs/...``, ``tools/...``, ``bench/...``, ``tests/...``, ``binder/...``, ``paper_figures/...``;
  ``<placeholders>`` match any name; ``tests/x.py::name`` also needs ``name``), every ``lib.x.y``
  name, and every link to a docs page and its ``#section``;
* the profiles the README lists (exactly ``params/profiles/*.yaml``) and every ``PROFILE=<name>``;
* the methods' learning-rate grids, LoRA forms, option tables and training recipe stated in
  docs/methods.md (against ``params/methods/``, ``params/paper/methods/``, ``params/02_finetune.yaml``
  and its overlays).

Each checker is a function of the text, and ``test_checkers_catch_drift`` feeds each one a broken
fact, so every check here can fail.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
MAX_README_LINES = 220
PATH_ROOTS = ("lib", "params", "notebooks", "docs", "tools", "bench", "tests", "binder", "paper_figures")

FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.M | re.S)
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")


def read(p: Path) -> str:
    return p.read_text(encoding="utf-8")


def rel(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


def code_of(text: str) -> list[str]:
    """The code a page shows: each fenced block, then each inline code span outside them."""
    blocks = [m.group(0) for m in FENCE.finditer(text)]
    return blocks + INLINE.findall(FENCE.sub("", text))


# ------------------------------------------------------------------ make targets
def makefile_targets(makefile: str) -> set[str]:
    """Explicit targets of the Makefile: rule lines (not recipes, assignments or pattern/path rules)
    and .PHONY."""
    text = makefile.replace("\\\n", " ")
    out: set[str] = set()
    for line in text.splitlines():
        if not line or line[0] in " \t#" or line.startswith(("$(", "ifeq", "ifneq", "else", "endif", "define",
                                                             "endef", "include", "export")):
            continue
        m = re.match(r"^([^:=#]+?)\s*&?::?(?!=)(.*)$", line)
        if not m:
            continue
        names, rest = m.group(1).split(), m.group(2)
        if names == [".PHONY"]:
            out |= set(rest.split())
        else:
            out |= {n for n in names if not any(c in n for c in "$%/()")}
    return out


MAKE_CALL = re.compile(r"(?<![\w$(/.-])make((?:[ \t]+[^\s;|&)`]+)*)")
OPTIONS_WITH_ARG = {"-C", "-f", "-j", "-o", "-W", "-I"}


def make_targets_named(text: str) -> set[str]:
    """Targets in ``make ...`` commands of the code spans and blocks (first non-option, non-variable
    word; placeholders such as ``<targets>`` and ``...`` are skipped)."""
    found = set()
    for code in code_of(text):
        for m in MAKE_CALL.finditer(code):
            words = m.group(1).split()
            skip = False
            for w in words:
                if skip:
                    skip = False
                    continue
                if w in OPTIONS_WITH_ARG:
                    skip = True
                    continue
                if w.startswith("-") or "=" in w or w.startswith("["):
                    continue
                if re.fullmatch(r"[a-z][a-z0-9-]*", w):
                    found.add(w)
                break
    return found


def unknown_make_targets(text: str, targets: set[str]) -> set[str]:
    return make_targets_named(text) - targets


def test_make_targets_exist():
    targets = makefile_targets(read(ROOT / "Makefile"))
    assert {"reproduce", "test", "publish", "verify"} <= targets
    bad = {rel(p): sorted(unknown_make_targets(read(p), targets)) for p in PAGES}
    assert not {k: v for k, v in bad.items() if v}, f"make targets the Makefile does not have: {bad}"


# ------------------------------------------------------------------ paths and lib names
PATH_SPAN = re.compile(rf"^(?:{'|'.join(PATH_ROOTS)})/\S*$")


def missing_paths(text: str, root: Path = ROOT) -> list[str]:
    """Backticked repository paths that do not exist (``<x>`` matches any name; ``a.py::name``
    also needs ``def name`` / ``class name`` in the file)."""
    bad = []
    for span in INLINE.findall(FENCE.sub("", text)):
        span = span.strip()
        if not PATH_SPAN.match(span) or "..." in span:
            continue
        path, _, member = span.partition("::")
        pattern = re.sub(r"<[^>/]*>", "*", path.rstrip("/"))
        hits = sorted(root.glob(pattern)) if "*" in pattern else [root / pattern] if (root / pattern).exists() else []
        if not hits:
            bad.append(span)
        elif member and not any(re.search(rf"^\s*(def|class)\s+{re.escape(member.split('[')[0])}\b",
                                          read(h), re.M) for h in hits if h.is_file()):
            bad.append(span)
    return bad


# Known drift in a page another change owns, named here so that it is visible and the rest is still
# checked: (page, path) -> why. An entry whose path exists again, or that the page no longer names,
# fails the test: remove it then.
PENDING_PATHS: dict = {}


def test_paths_exist():
    bad = {rel(p): sorted(set(missing_paths(read(p)))) for p in PAGES}
    stale = [k for k in PENDING_PATHS if k[1] not in bad.get(k[0], [])]
    assert not stale, f"PENDING_PATHS entries that are fixed now: remove them from tests/test_docs.py: {stale}"
    bad = {k: [x for x in v if (k, x) not in PENDING_PATHS] for k, v in bad.items()}
    assert not {k: v for k, v in bad.items() if v}, f"paths named in backticks that do not exist: {bad}"


LIB_NAME = re.compile(r"(?<![\w./])lib(?:\.[A-Za-z_]\w*)+")


def _module_file(parts: list[str], root: Path) -> Path | None:
    base = root.joinpath(*parts)
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _defines(source: str, name: str) -> bool:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return True
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any((a.asname or a.name) == name for a in node.names):
            return True
    return False


def unknown_lib_names(text: str, root: Path = ROOT) -> list[str]:
    """``lib.x.y[.attr]`` names in code that name no module (and, after the longest module, no name
    that module defines or imports)."""
    bad = []
    for code in code_of(text):
        for name in LIB_NAME.findall(code):
            parts = name.split(".")
            k = max((i for i in range(1, len(parts) + 1) if _module_file(parts[:i], root)), default=0)
            if k == 0:
                bad.append(name)
            elif k < len(parts) and not _defines(read(_module_file(parts[:k], root)), parts[k]):
                bad.append(name)
    return bad


def test_lib_names_exist():
    bad = {rel(p): unknown_lib_names(read(p)) for p in PAGES}
    assert not {k: v for k, v in bad.items() if v}, f"lib names that no module defines: {bad}"


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", FENCE.sub("", text), re.M)}


LINK = re.compile(r"\]\(([^)\s]+)\)")


def broken_links(page: Path, text: str) -> list[str]:
    """Relative links to Markdown pages (and their #sections) that do not resolve."""
    bad = []
    for target in LINK.findall(FENCE.sub("", text)):
        if re.match(r"^[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            bad.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(read(dest) if dest != page else text):
            bad.append(target)
    return bad


def test_links_resolve():
    bad = {rel(p): broken_links(p, read(p)) for p in PAGES}
    assert not {k: v for k, v in bad.items() if v}, f"links to missing pages or sections: {bad}"


# ------------------------------------------------------------------ README
def test_readme_is_short():
    n = len(read(README).splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines (at most {MAX_README_LINES}): move detail to docs/"


def profiles_listed(readme: str) -> set[str]:
    """The profiles of the README's profiles section: its list items ``- `name`...``."""
    m = re.search(r"^## Profiles.*?$(.*?)(?=^## )", readme, re.M | re.S)
    assert m, "README.md has no '## Profiles' section"
    return set(re.findall(r"^- `([a-z][a-z0-9_]*)`", m.group(1), re.M))


def profile_files(root: Path = ROOT) -> set[str]:
    return {p.stem for p in (root / "params" / "profiles").glob("*.yaml")}


def test_readme_profiles_are_the_profile_files():
    assert profiles_listed(read(README)) == profile_files()


def unknown_profiles(text: str, profiles: set[str]) -> set[str]:
    return {p for code in code_of(text) for p in re.findall(r"\bPROFILE=([a-z][a-z0-9_]*)", code)} - profiles


def test_profile_names_exist():
    bad = {rel(p): sorted(unknown_profiles(read(p), profile_files())) for p in PAGES}
    assert not {k: v for k, v in bad.items() if v}, f"PROFILE=<name> with no params/profiles/<name>.yaml: {bad}"


def test_readme_keeps_the_generated_block_and_the_commands():
    text = read(README)
    src = read(ROOT / "lib" / "analysis" / "report.py")
    begin, end = re.search(r'README_BEGIN, README_END = "([^"]+)", "([^"]+)"', src).groups()
    assert text.count(begin) == 1 and text.count(end) == 1 and text.index(begin) < text.index(end)
    assert "make reproduce" in text and "make test" in text
    assert re.search(r"^make test\b", read(ROOT / ".ci" / "run"), re.M), ".ci/run no longer runs make test"


# ------------------------------------------------------------------ methods' defaults
def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def method_params(method: str, profile: str | None, root: Path = ROOT) -> dict:
    """params/methods/<m>.yaml with params/<profile>/methods/<m>.yaml over it (the keys docs state)."""
    out = load(root / "params" / "methods" / f"{method}.yaml")
    over = root / "params" / str(profile) / "methods" / f"{method}.yaml"
    if profile and over.exists():
        o = load(over)
        out = {**out, **{k: v for k, v in o.items() if k not in ("options", "variants")},
               "options": {**(out.get("options") or {}), **(o.get("options") or {})},
               "variants": {**(out.get("variants") or {}), **(o.get("variants") or {})}}
    return out


def stage_params(stage: str, profile: str | None, root: Path = ROOT) -> dict:
    out = load(root / "params" / f"{stage}.yaml")
    over = root / "params" / str(profile) / f"{stage}.yaml"
    return {**out, **(load(over) if profile and over.exists() else {})}


METHODS = sorted(p.stem for p in (ROOT / "params" / "methods").glob("*.yaml"))


def _rates(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"[0-9.]+(?:e-?[0-9]+)?", cell)]


def lr_grid_problems(methods_md: str, root: Path = ROOT) -> list[str]:
    """The ``lr_grid`` table of docs/methods.md (columns: embedded profiles, paper) against the files;
    every method has a row."""
    rows = re.findall(r"^\s*\| `([a-z_]+)` \| ([0-9e., -]+) \| ([0-9e., -]+) \|\s*$", methods_md, re.M)
    assert rows, "docs/methods.md has no lr_grid table"
    bad = [f"no row for {m}" for m in sorted(set(METHODS) - {r[0] for r in rows})]
    for m, embedded, paper in rows:
        for profile, cell in ((None, embedded), ("paper", paper)):
            want = [float(x) for x in method_params(m, profile, root)["lr_grid"]]
            if _rates(cell) != want:
                bad.append(f"{m} ({profile or 'embedded'}): docs {_rates(cell)} vs params {want}")
    return bad


def test_lr_grids_match_params():
    assert lr_grid_problems(read(ROOT / "docs" / "methods.md")) == []


def _value(s: str):
    s = s.strip()
    try:
        return float(s)
    except ValueError:
        return None if s == "null" else s


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


def option_table_problems(methods_md: str, root: Path = ROOT) -> list[str]:
    """The trainable-parameter tables (``| method | variant | `{options}` | ...``): one row per method
    and variant of params/methods/, each stating exactly the YAML's options (``options``, which names
    every option's default, with the variant's over it)."""
    rows = re.findall(r"^\| ([a-z_]+) \| ([a-z0-9_]+) \| `(\{.*?\})` \|", methods_md, re.M)
    assert rows, "docs/methods.md has no option tables"
    bad = []
    seen: dict[str, list] = {}
    for m, variant, js in rows:
        seen.setdefault(m, []).append(variant)
        p = method_params(m, None, root)
        if variant != "default" and variant not in (p.get("variants") or {}):
            bad.append(f"{m}/{variant}: no such variant in params/methods/{m}.yaml")
            continue
        want = {**(p.get("options") or {}), **((p.get("variants") or {}).get(variant) or {})}
        got = json.loads(js)
        bad += [f"{m}/{variant}: {k} docs {got.get(k)!r} vs params {v!r}" for k, v in want.items()
                if k not in got or not _same(got[k], v)]
        bad += [f"{m}/{variant}: docs name option {k!r}, params/methods/{m}.yaml does not" for k in got
                if k not in want]
    for m in METHODS:
        n_tables = 2
        want = sorted(["default", *(method_params(m, None, root).get("variants") or {})] * n_tables)
        if sorted(seen.get(m, [])) != want:
            bad.append(f"{m}: table rows {sorted(seen.get(m, []))} vs default + variants (in {n_tables} tables)")
    return bad


def test_option_tables_match_params():
    assert option_table_problems(read(ROOT / "docs" / "methods.md")) == []


def lora_form_problems(methods_md: str, root: Path = ROOT) -> list[str]:
    """The LoRA forms table (``| `variant` | `targets: ..., rank: ...` ...``) against its variants."""
    variants = method_params("lora", None, root)["variants"]
    rows = re.findall(r"^\| `([a-z0-9_]+)` \| `(targets: [^`]*)`", methods_md, re.M)
    assert rows, "docs/methods.md has no LoRA forms table"
    bad = []
    for v, spec in rows:
        if v not in variants:
            bad.append(f"lora/{v}: not a variant")
            continue
        for k, val in re.findall(r"(\w+): ([\w.]+)", spec):
            if k not in variants[v] or not _same(_value(val), variants[v][k]):
                bad.append(f"lora/{v}: {k} docs {val} vs params {variants[v].get(k)!r}")
    return bad


def test_lora_forms_match_params():
    assert lora_form_problems(read(ROOT / "docs" / "methods.md")) == []


def recipe_problems(methods_md: str, root: Path = ROOT) -> list[str]:
    """The training recipe docs/methods.md states: momentum and weight decay, epochs and batch size
    per profile, ``lr_extend``."""
    base = stage_params("02_finetune", None, root)
    bad = []
    m = re.search(r"SGD, momentum ([0-9.]+), weight decay ([0-9.e-]+)", methods_md)
    if not m or float(m.group(1)) != base["momentum"] or float(m.group(2)) != base["weight_decay"]:
        bad.append(f"SGD recipe: docs {m and m.groups()} vs params {base['momentum']}, {base['weight_decay']}")
    for profile, epochs, batch in re.findall(r"(mini|paper): (\d+)\s+epochs, batch (\d+)", methods_md):
        p = stage_params("02_finetune", profile, root)
        if (int(epochs), int(batch)) != (p["epochs"], p["batch_size"]):
            bad.append(f"{profile}: docs {epochs} epochs, batch {batch} vs params {p['epochs']}, {p['batch_size']}")
    for n in re.findall(r"`lr_extend: (\d+)`", methods_md):
        if int(n) != base.get("lr_extend"):
            bad.append(f"lr_extend: docs {n} vs params {base.get('lr_extend')}")
    return bad


def test_recipe_matches_params():
    assert recipe_problems(read(ROOT / "docs" / "methods.md")) == []


# ------------------------------------------------------------------ every check can fail
def test_checkers_catch_drift(tmp_path):
    targets = makefile_targets(read(ROOT / "Makefile"))
    assert unknown_make_targets("run `make reproduce PROFILE=mini` then `make publsh`", targets) == {"publsh"}
    assert unknown_make_targets("```bash\nmake -C x --no-print-directory tset JOBS=2\n```", targets) == {"tset"}
    assert missing_paths("see `lib/no_such_module.py` and `params/<profile>/nothing.yaml`") == [
        "lib/no_such_module.py", "params/<profile>/nothing.yaml"]
    assert missing_paths("`tests/test_docs.py::test_no_such_test`") == ["tests/test_docs.py::test_no_such_test"]
    assert unknown_lib_names("`lib.pipeline.finetune.choose_rate` and `python -m lib.nothing`") == [
        "lib.pipeline.finetune.choose_rate", "lib.nothing"]
    assert broken_links(README, "[x](docs/usage.md#no-such-section) [y](docs/nothing.md)") == [
        "docs/usage.md#no-such-section", "docs/nothing.md"]
    assert profiles_listed("## Profiles\n\n- `smoke`: a\n- `tiny`: b\n\n## Next\n") == {"smoke", "tiny"}
    assert unknown_profiles("`make reproduce PROFILE=huge`", profile_files()) == {"huge"}
    methods_md = read(ROOT / "docs" / "methods.md")
    assert lr_grid_problems(methods_md.replace("| `lora` | 1e-1,", "| `lora` | 1e-2,", 1))
    assert option_table_problems(methods_md.replace('"rank": 16', '"rank": 4', 1))
    assert option_table_problems(methods_md.replace('{"ratio": 0.2,', '{"gate": 1, "ratio": 0.2,', 1))
    assert lora_form_problems(methods_md.replace("targets: qv, rank: 16", "targets: qv, rank: 32", 1))
    assert recipe_problems(methods_md.replace("momentum 0.9", "momentum 0.8", 1))
    assert recipe_problems(methods_md.replace("`lr_extend: 2`", "`lr_extend: 3`", 1))
