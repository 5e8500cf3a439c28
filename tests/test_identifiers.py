"""Names are identifiers: every name that becomes a path, a Make target or a shell word (profile,
task, method, variant) matches ``^[a-z][a-z0-9_]*$``, checked once where it is loaded.

Each attack of issue #20 is fed in -- through a temporary copy of ``params/`` and the loader, through
the entry points' command lines, and (slow) through Make on a copy of the repository -- and must be
refused before anything runs, with a message naming the file, the key and the fix, and with nothing
written outside the build folder."""
from __future__ import annotations

import re
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lib import config, paths
from lib.config import ConfigError
from lib.paths import RunId
from lib.pipeline import grid

ROOT = paths.ROOT
IDENT = r"is not an identifier: .*\^\[a-z\]\[a-z0-9_\]\*\$.*rename it"


@pytest.fixture(autouse=True)
def _tmp_build(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPMIS_BUILD", str(tmp_path / "build"))


@pytest.fixture
def params_copy(tmp_path, monkeypatch) -> Path:
    dest = tmp_path / "params"
    shutil.copytree(paths.PARAMS, dest)
    monkeypatch.setattr(paths, "PARAMS", dest)
    return dest


def _edit(f: Path, old: str, new: str) -> None:
    text = f.read_text()
    assert old in text, f"{old!r} not in {f}"
    f.write_text(text.replace(old, new))


def _files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def outside(tmp_path):
    """Asserts after the test that nothing was written outside the build folder: in the temporary
    folder (but build/), in the folder above it (where ``../x`` lands) and above the repository."""
    watch = [tmp_path, tmp_path.parent, ROOT.parent]
    before = {str(w): {p.name for p in w.iterdir()} for w in watch}
    snap = _files(tmp_path)
    yield
    after = _files(tmp_path)
    changed = sorted(k for k in set(snap) | set(after) if snap.get(k) != after.get(k)
                     and not k.startswith(("build/", "params/")))  # params/: the test's own edits
    assert not changed, f"written outside the build folder: {changed}"
    for w in watch:
        new = {p.name for p in w.iterdir()} - before[str(w)]
        suspicious = {n for n in new if n in ("x", "y", "v", "victim", "pwned") or n.startswith("pwned")}
        assert not suspicious, f"created in {w}: {suspicious}"


SMOKE_ABLATION_TASKS = "      tasks: [objects]\n"


# ----------------------------------------------------------------------------- the validator itself
@pytest.mark.parametrize("name", ["objects", "camera_trap", "camelyon17", "q", "first2", "a_b_c"])
def test_identifiers_pass(name):
    assert config.check_name(name, "task") == name


@pytest.mark.parametrize("name", ["", "../x", "../../../../v", "$(shell touch ../x)", "x;touch ../y", "Objects",
                                  "2d", "_x", "a b", "a-b", "a.b", "a/b", "x\n", "é", "`id`", "'q'", None, 3])
def test_non_identifiers_are_refused_with_the_fix(name):
    with pytest.raises(ConfigError, match=rf"params/x.yaml: grid.tasks\[0\]: the task name .* {IDENT}"):
        config.check_name(name, "task", source="params/x.yaml", key="grid.tasks[0]")


# ----------------------------------------------------------------------------- attacks through params/
@pytest.mark.parametrize("bad", ["$(shell touch ../x)", "x;touch ../y", "../x", "Objects"])
def test_ablation_task_is_refused_at_load(params_copy, outside, capsys, bad):
    f = params_copy / "profiles" / "smoke.yaml"
    _edit(f, SMOKE_ABLATION_TASKS, f"      tasks: [objects, {bad!r}]\n".replace("'", '"'))
    with pytest.raises(ConfigError, match=rf"profiles/smoke.yaml: grid.ablations.aclip.tasks\[1\]: the task name .*{IDENT}"):
        config.load_profile("smoke")
    # what Make runs first (grid.mk) and what `make commands` prints: refused, nothing written
    for mode in ("--make", "--commands", "--runs"):
        assert grid.main(["smoke", mode]) == 2
        err = capsys.readouterr()
        assert "grid.ablations.aclip.tasks[1]" in err.err and "not an identifier" in err.err
        assert err.out == "", f"{mode} printed something although the grid is refused"
    assert not (paths.build_root() / "smoke" / "grid.mk").exists()


@pytest.mark.parametrize("where,bad", [
    ("grid.tasks", "../x"), ("grid.methods", "x;touch ../y"), ("world.tasks", "$(shell id)"),
])
def test_grid_and_world_names_are_refused_at_load(params_copy, outside, where, bad):
    f = params_copy / "profiles" / ("smoke.yaml" if where == "grid.tasks" else "mini.yaml")
    if where == "grid.tasks":
        _edit(f, "tasks: [objects, pathology]", f'tasks: [objects, "{bad}"]')
    elif where == "grid.methods":
        _edit(f, "methods: [full, clip_adapter,", f'methods: ["{bad}", clip_adapter,')
    else:
        _edit(f, "tasks: [objects, digits,", f'tasks: ["{bad}", digits,')
    with pytest.raises(ConfigError, match=rf"{where}\[\d\]: the \w+ name '{_re(bad)}' {IDENT}"):
        config.load_profile("smoke")


def _re(s: str) -> str:
    import re
    return re.escape(s)


def test_ablation_method_key_is_an_identifier(params_copy, outside):
    _edit(params_copy / "profiles" / "smoke.yaml", "    aclip:\n      variants: [q, first2]",
          '    "../aclip":\n      variants: [q, first2]')
    with pytest.raises(ConfigError, match=rf"smoke.yaml: grid.ablations.../aclip: the method name '../aclip' {IDENT}"):
        config.load_profile("smoke")


def test_path_variant_in_a_method_file_is_refused(params_copy, outside, capsys):
    """The issue's `../../../../v`: a variant that trains and writes its files outside build/."""
    _edit(params_copy / "methods" / "aclip.yaml", "  first2: {blocks: 2}", '  first2: {blocks: 2}\n  "../../../../v": {blocks: 1}')
    _edit(params_copy / "profiles" / "smoke.yaml", "variants: [q, first2]", 'variants: [q, "../../../../v"]')
    with pytest.raises(ConfigError, match=rf"methods/aclip.yaml: variants.../../../../v: the variant name '../../../../v' {IDENT}"):
        config.method_params("aclip", "smoke")
    with pytest.raises(ConfigError, match=rf"smoke.yaml: grid.ablations.aclip.variants\[1\]: the variant name '../../../../v' {IDENT}"):
        config.load_profile("smoke")
    assert grid.main(["smoke", "--make"]) == 2
    err = capsys.readouterr().err
    assert "methods/aclip.yaml" in err and "grid.ablations.aclip.variants[1]" in err, err
    assert not (paths.build_root() / "v").exists() and not (paths.build_root() / "smoke").exists()


@pytest.mark.parametrize("reserved", ["default", "sweep"])
def test_reserved_variant_names(params_copy, reserved):
    _edit(params_copy / "methods" / "aclip.yaml", "  first2: {blocks: 2}", f"  {reserved}: {{blocks: 1}}")
    with pytest.raises(ConfigError, match=rf"variants.{reserved}: '{reserved}' is a reserved variant name"):
        config.method_params("aclip", "smoke")


def test_method_file_with_a_bad_name_is_refused_by_check(params_copy):
    (params_copy / "methods" / "Lo-Ra.yaml").write_text((params_copy / "methods" / "lora.yaml").read_text())
    with pytest.raises(ConfigError, match=rf"methods/Lo-Ra.yaml: file name: the method name 'Lo-Ra' {IDENT}"):
        config.check_all("smoke")


def test_profile_extends_and_design_keys(params_copy):
    _edit(params_copy / "profiles" / "smoke.yaml", "extends: mini", 'extends: "../mini"')
    with pytest.raises(ConfigError, match=rf"smoke.yaml: extends: the profile name '../mini' {IDENT}"):
        config.load_profile("smoke")
    _edit(params_copy / "profiles" / "smoke.yaml", 'extends: "../mini"', "extends: mini")
    _edit(params_copy / "profiles" / "mini.yaml", "    objects: {coverage", '    "ob jects": {coverage')
    with pytest.raises(ConfigError, match=rf"world.design.ob jects: the task name 'ob jects' {IDENT}"):
        config.load_profile("mini")


def test_method_argument_cannot_name_a_file_outside_params(params_copy):
    with pytest.raises(ConfigError, match=rf"the method name '../profiles/smoke' {IDENT}"):
        config.method_params("../profiles/smoke", "smoke")
    assert config.main(["params", "02_finetune", "smoke", "../profiles/smoke"]) == 1
    assert config.main(["files", "02_finetune", "smoke", "../profiles/smoke"]) == 1


# ----------------------------------------------------------------------------- command lines
def test_publish_refuses_a_path_as_profile(tmp_path, outside, capsys):
    """`python -m lib.pipeline.publish ../../victim` deleted and rewrote build/../../victim/figures."""
    from lib.pipeline import publish
    victim = paths.build_root() / ".." / ".." / "victim" / "figures"
    victim.mkdir(parents=True)
    (victim / "precious.txt").write_text("keep me")
    snap = _files(victim.resolve().parent)
    assert publish.main(["../../victim"]) == 2
    assert publish.main(["../../victim", "--publish"]) == 2
    assert publish.main(["../../victim", "--summary"]) == 2
    err = capsys.readouterr().err
    assert "'../../victim' is not a profile name" in err and "valid profiles: colab, mini, paper, smoke" in err
    assert _files(victim.resolve().parent) == snap, "the victim's files were touched"
    shutil.rmtree(victim.resolve().parent)


@pytest.mark.parametrize("module,argv,match", [
    ("grid", ["../x", "--make"], r"'../x' is not a profile name"),
    ("grid", ["x;touch ../y", "--commands"], r"is not a profile name"),
    ("aggregate", ["finetune", "../x"], r"'../x' is not a profile name"),
    ("verify", ["../x"], r"'../x' is not a profile name"),
    ("evaluate", ["../x", "objects", "lora"], r"'../x' is not a profile name"),
    ("evaluate", ["smoke", "../x", "lora"], rf"a <task> argument: the task name '../x' {IDENT}"),
    ("evaluate", ["smoke", "objects", "lora;id"], rf"a <method> argument: the method name 'lora;id' {IDENT}"),
    ("evaluate", ["smoke", "objects", "full", "lora;id"], rf"a <method> argument: the method name 'lora;id' {IDENT}"),
    ("evaluate", ["smoke", "objects"], r"usage: python -m lib.pipeline.evaluate <profile> <task> \[<task> ...\] --methods"),
    ("evaluate", ["smoke", "objects", "--methods"], r"usage: python -m lib.pipeline.evaluate"),
    ("evaluate", ["smoke", "objects", "../x", "--methods", "lora"], rf"a <task> argument: the task name '../x' {IDENT}"),
    ("notebook_job", ["../x", "objects"], r"'../x' is not a profile name"),
    ("notebook_job", ["smoke", "objects", "../x"], rf"a <task> argument: the task name '../x' {IDENT}"),
    ("notebook_job", ["smoke"], r"usage: python -m lib.pipeline.notebook_job <profile> <task>"),
])
def test_entry_points_check_their_arguments_first(module, argv, match, outside, capsys):
    import importlib
    import re
    mod = importlib.import_module(f"lib.pipeline.{module}")
    assert mod.main(argv) != 0
    assert re.search(match, capsys.readouterr().err)
    assert not paths.build_root().exists() or not any(paths.build_root().rglob("*")), "a refused command wrote files"


def test_config_cli_checks_the_profile():
    for argv in (["check", "../smoke"], ["params", "02_finetune", "../smoke"], ["files", "02_finetune", "../smoke"]):
        assert config.main(argv) == 1


# ----------------------------------------------------------------------------- defence in depth
def test_printed_commands_are_shell_quoted():
    """Every word of `--commands` is quoted: an interpreter path with a space stays one word."""
    py = "/opt/my tools/bin/python"
    cmds = grid.commands("smoke", python=shlex.quote(py))
    for c in cmds:
        words = shlex.split(c)
        assert py in words, c
    ft = shlex.split(cmds[0])
    assert ft[ft.index("profile") + 1] == "smoke" and ft[ft.index("task") + 1] == "objects"


def test_a_hostile_name_that_bypassed_the_loader_stays_one_shell_word(tmp_path, monkeypatch):
    """Names are validated at load; if one ever got past, the printed commands still quote it: run
    them (the interpreter replaced by `echo`) and the name's `touch ../y` does not run."""
    bad = "x;touch ../y"
    runs = [RunId(bad, "lora", "default", 0)]
    monkeypatch.setattr(grid, "units", lambda cfg, validate=True: {bad: runs})
    monkeypatch.setattr(grid, "runs", lambda cfg, validate=True: runs)
    cmds = grid.commands("smoke", python="echo")
    assert all(bad in shlex.split(c) for c in cmds)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    for c in cmds:
        subprocess.run(["bash", "-c", c], cwd=cwd, capture_output=True, timeout=60)
    assert not (tmp_path / "y").exists(), "a name ran as a shell command"
    # grid.mk cannot carry such a name at all (no escape makes ',' or ')' safe in $(call ...)): refused
    monkeypatch.setattr(grid, "units", lambda cfg, validate=True: {"$(shell touch ../x)": runs})
    with pytest.raises(ConfigError, match=r"grid.mk: the task name"):
        grid.make_include("smoke")


def test_make_paths_are_escaped():
    assert grid._make_path("params/a$b.yaml") == "params/a$$b.yaml"
    assert grid._make_path("my params/a#b:c%.yaml") == "my\\ params/a\\#b\\:c\\%.yaml"
    with pytest.raises(ConfigError, match="line break"):
        grid._make_path("a\nb")


def test_generated_make_include_holds_no_unescaped_dollar():
    text = grid.make_include("paper")
    for line in text.splitlines():
        rest = line.replace("$$", "")
        # a notebook stage's recipe: papermill on its notebook into the build folder, with its label
        rest = re.sub(r"^\t\$\(call papermill,(\d\d_[a-z_]+),\$\(B\)/\1\.ipynb,,,[a-z_-]+\)$", "", rest)
        # the only Make references are the Makefile's own variables and functions
        for ref in re.findall(r"\$\(([^)]*)\)", rest):
            assert ref in ("B", "NB", "PY", "PROFILE", "PROFILE_YAML") or re.fullmatch(r"CODE_[A-Z_]+", ref) \
                or re.fullmatch(r"call (finetune|evaluate)_unit,[a-z0-9_,]+( [a-z0-9_]+)*", ref), line


# ----------------------------------------------------------------------------- through Make (the real attack)
def _repo_copy(dest: Path) -> Path:
    for name in ("lib", "params", "notebooks"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.mark.slow
def test_make_dry_run_and_commands_do_not_run_a_name(tmp_path):
    """`tasks: [objects, "$(shell touch ../x)"]` ran the command on `make dry-run`; `x;touch ../y` ran
    when a printed command was executed. Both are refused while the grid is built; nothing runs."""
    repo = _repo_copy(tmp_path / "repo")
    env = {k: v for k, v in os.environ.items() if k not in ("CLIPMIS_BUILD", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    f = repo / "params" / "profiles" / "smoke.yaml"
    for bad, goal, pwned in (("$(shell touch ../pwned_make)", "dry-run", "pwned_make"),
                             ("x;touch ../pwned_shell", "commands", "pwned_shell")):
        f.write_text((ROOT / "params" / "profiles" / "smoke.yaml").read_text()
                     .replace(SMOKE_ABLATION_TASKS, f'      tasks: [objects, "{bad}"]\n'))
        r = subprocess.run(["make", "--no-print-directory", goal, "PROFILE=smoke", f"PY={sys.executable}"],
                           cwd=repo, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode != 0, r.stdout[-2000:]
        assert "grid.ablations.aclip.tasks[1]" in r.stderr and "not an identifier" in r.stderr, r.stderr[-2000:]
        assert " -m papermill " not in r.stdout and "touch" not in r.stdout, "commands were printed"
        assert not (tmp_path / pwned).exists() and not (repo / pwned).exists(), f"{bad!r} ran"
        assert not (repo / "build" / "smoke" / "grid.mk").exists()
