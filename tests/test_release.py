"""A release a reader can cite and install: `make release-check` (tools/release_check.py) on the
repository and on damaged copies, requirements-cpu.txt against the lock, and `make setup`'s guards
(tools/check_setup.py; a half-made venv made again, driven with a stand-in Python)."""
import importlib.util
import os
import shutil
import stat
import subprocess
import sys

import pytest

from lib import paths

ROOT = paths.ROOT


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


release_check = _load("release_check")
check_setup = _load("check_setup")
FILES = ("pyproject.toml", "LICENSE", "CITATION.cff", "CHANGELOG.md", ".zenodo.json")


def _copy(tmp_path):
    for f in FILES:
        shutil.copy2(ROOT / f, tmp_path / f)
    return tmp_path


def test_the_repository_passes_release_check():
    assert release_check.check(ROOT) == []
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    r = subprocess.run(["make", "--no-print-directory", "release-check", f"PY={sys.executable}"], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0 and "release-check: ok" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("damage, expect", [
    (lambda d: (d / "CITATION.cff").write_text((d / "CITATION.cff").read_text().replace("version: 0.3.0", "version: 0.2.9")),
     "CITATION.cff: version"),
    (lambda d: (d / "CITATION.cff").write_text("title: [unclosed\n"), "CITATION.cff: not valid YAML"),
    (lambda d: (d / "CITATION.cff").write_text((d / "CITATION.cff").read_text().replace("cff-version:", "cff_version:")),
     "required key cff-version"),
    (lambda d: (d / "CITATION.cff").write_text((d / "CITATION.cff").read_text().replace("2402.09613", "0000.00000")),
     "arXiv:2402.09613"),
    (lambda d: (d / "CHANGELOG.md").write_text("# Changelog\n\n## [0.2.0]\n"), "CHANGELOG.md: no '## [0.3.0]'"),
    (lambda d: (d / ".zenodo.json").write_text("{'title': 1}"), ".zenodo.json: not valid JSON"),
    (lambda d: (d / "LICENSE").unlink(), "LICENSE: missing"),
    (lambda d: (d / "LICENSE").write_text("Apache License\nVersion 2.0\n"), "LICENSE: pyproject.toml says MIT"),
    (lambda d: (d / "pyproject.toml").write_text((d / "pyproject.toml").read_text().replace('license = "MIT"\n', "")),
     "[project] has no license"),
    (lambda d: (d / "pyproject.toml").write_text((d / "pyproject.toml").read_text().replace('version = "0.3.0"', 'version = "0.4.0"')),
     "differs from pyproject.toml's '0.4.0'"),
])
def test_release_check_names_each_problem(tmp_path, damage, expect):
    d = _copy(tmp_path)
    damage(d)
    problems = release_check.check(d)
    assert any(expect in p for p in problems), problems
    assert release_check.main([str(d)]) == 1


def test_cpu_requirements_are_the_lock_without_cuda_and_with_cpu_torch():
    def pins(name):
        return [ln.strip() for ln in (ROOT / name).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    lock, cpu = pins("requirements-lock.txt"), pins("requirements-cpu.txt")
    assert cpu[0] == "--extra-index-url https://download.pytorch.org/whl/cpu"
    expected = []
    for ln in lock:
        if 'platform_system == "Linux"' in ln:
            continue
        name = ln.split("==")[0]
        expected.append(ln.split(";")[0].strip() + "+cpu" if name in ("torch", "torchvision") else ln)
    assert cpu[1:] == expected
    assert not any("nvidia" in ln or "triton" in ln or ln.startswith("cuda-") for ln in cpu)


def test_setup_checks_the_python_version_with_the_fix():
    assert check_setup.check_python((3, 11, 7), "py") == []
    msg = check_setup.check_python((3, 10, 12), "/usr/bin/python3")[0]
    assert "Python 3.10.12" in msg and "numpy==2.4.6" in msg and "make setup PYTHON=python3.11" in msg
    assert "unpinned" in check_setup.check_python((3, 12, 1), "p")[0]
    assert "3.11.5" in check_setup.check_python((3, 11, 2), "p")[0]


def test_setup_checks_free_disk(tmp_path):
    msg = check_setup.check_disk(str(tmp_path / "venv"), cpu=False, free_bytes=2e9)
    assert msg and "~6 GB" in msg[0] and "VENV=" in msg[0]
    assert check_setup.check_disk(str(tmp_path / "venv"), cpu=True, free_bytes=3e9) == []


def _stand_in(path, body):
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_setup_remakes_a_half_made_venv_and_shows_progress(tmp_path):
    """A venv whose creation failed (pyvenv.cfg and a python, no working pip) is removed and made
    again; each step prints a line and pip runs without -q. A stand-in Python records what it is
    asked to do (nothing is installed)."""
    log = tmp_path / "calls.log"
    venv_py = f'''echo "venv-python $*" >> {log}
exit 0
'''
    stand_in_python = tmp_path / "python3.11"
    _stand_in(stand_in_python, f'''echo "python $*" >> {log}
if [[ "$1" == "-m" && "$2" == "venv" ]]; then
  mkdir -p "$3/bin" && touch "$3/pyvenv.cfg"
  printf '%s\\n' '#!/usr/bin/env bash' '{venv_py.splitlines()[0]}' 'exit 0' > "$3/bin/python"; chmod +x "$3/bin/python"
fi
exit 0
''')
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /nowhere\n")
    _stand_in(venv / "bin" / "python", "exit 1\n")          # the half-made venv: its pip does not run
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CLIPMIS_BUILD", "PY")}
    r = subprocess.run(["make", "--no-print-directory", "setup", f"VENV={venv}", f"PYTHON={stand_in_python}"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    for k in range(1, 6):
        assert f"[setup {k}/5]" in r.stdout, r.stdout
    assert "half made" in r.stdout
    calls = log.read_text().splitlines()
    assert f"python -m venv {venv}" in calls
    pip = [c for c in calls if c.startswith("venv-python -m pip install")]
    assert pip and all(" -q" not in c for c in pip) and any("-r requirements-lock.txt" in c for c in pip)
    assert (venv / ".installed").read_text().strip() == "requirements-lock.txt"


def test_setup_without_the_python_stops_at_once_with_the_fix(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CLIPMIS_BUILD", "PY")}
    r = subprocess.run(["make", "--no-print-directory", "setup", f"VENV={tmp_path / 'v'}", "PYTHON=python3.99"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode != 0 and "no 'python3.99' on PATH" in r.stderr and "PYTHON=python3.11" in r.stderr
    assert not (tmp_path / "v").exists()
