"""What `make setup` checks before it builds .venv: the Python, the venv module, free disk, an existing
venv of another Python. Each problem is one message with what to do; exit status 1 on any.

    python3 tools/check_setup.py [--venv .venv] [--cpu]

Runs under the Python that will make the venv (``$(PYTHON)``), which may be the wrong one: so it is
written for any Python 3 (no f-strings, no newer syntax) and imports nothing from the project.
"""
import argparse
import os
import shutil
import subprocess
import sys

NEED = (3, 11, 5)            # the lock was resolved for 3.11 (some pins need 3.11.5)
DISK_GB = {"cuda": 6.0, "cpu": 2.5, "update": 1.0}   # a fresh venv (Linux, CUDA wheels) / CPU=1 / an update

FIX_PYTHON = ("Install Python 3.11 (3.11.5 or newer) and point make at it:\n"
              "  Debian/Ubuntu/WSL2: sudo apt install python3.11 python3.11-venv   (older Ubuntu: the deadsnakes PPA)\n"
              "  macOS:              brew install python@3.11\n"
              "  any OS:             pyenv install 3.11   or   uv python install 3.11\n"
              "then:  make setup PYTHON=python3.11\n"
              "Or use an environment you already have (its own torch): make smoke PY=python (README \"Install\").")


def version_of(python):
    try:
        out = subprocess.run([python, "-c", "import sys; print('%d %d %d' % sys.version_info[:3])"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    try:
        return tuple(int(x) for x in out.stdout.split())
    except ValueError:
        return None


def check_python(info=sys.version_info, where=sys.executable):
    v = tuple(info[:3])
    if v[:2] == NEED[:2] and v >= NEED:
        return []
    why = ("the lock (requirements-lock.txt) pins every package for Python 3.11 only: on 3.12 or newer pip "
           "installs unpinned packages, on 3.10 or older it stops at numpy==2.4.6")
    if v[:2] == NEED[:2]:
        why = "some pins of the lock (e.g. soupsieve==4.1.3) need 3.11.5 or newer"
    return ["error: make setup needs Python 3.11.5 or newer 3.11; {} is Python {}.\n  Why: {}.\n{}".format(
        where, ".".join(str(x) for x in v), why, FIX_PYTHON)]


def check_venv_module():
    try:
        import ensurepip  # noqa: F401  (Debian/Ubuntu ship it only with python3.X-venv)
        import venv  # noqa: F401
    except ImportError:
        return ["error: this Python has no venv/ensurepip module, so '{} -m venv' cannot make .venv.\n"
                "  Debian/Ubuntu/WSL2: sudo apt install python{}.{}-venv  (or python3-venv), then make setup again."
                .format(sys.executable, sys.version_info[0], sys.version_info[1])]
    return []


def check_existing_venv(venv):
    py = os.path.join(venv, "Scripts" if os.name == "nt" else "bin", "python.exe" if os.name == "nt" else "python")
    if not os.path.exists(py):
        return []
    v = version_of(py)
    if v is None or v[:2] == NEED[:2]:
        return []   # a half-made venv (python that does not run, no pip) is made again by make setup
    return ["error: {} was made with Python {}, not 3.11: its packages would not match the lock.\n"
            "  Remove it (rm -rf {}) and run make setup again.".format(venv, ".".join(str(x) for x in v), venv)]


def pip_works(venv):
    py = os.path.join(venv, "bin", "python")
    try:
        return subprocess.run([py, "-m", "pip", "--version"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=120).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def check_disk(venv, cpu, free_bytes=None):
    kind = "update" if pip_works(venv) else ("cpu" if cpu else "cuda")
    need = DISK_GB[kind]
    where = os.path.dirname(os.path.abspath(venv)) or "."
    if free_bytes is None:
        free_bytes = shutil.disk_usage(where).free
    free = free_bytes / 1e9
    if free >= need:
        return []
    what = {"cuda": "a fresh .venv on Linux takes ~6 GB (4 GB of them torch's CUDA runtime wheels)",
            "cpu": "a fresh CPU-only .venv (CPU=1) takes ~2.5 GB",
            "update": "updating .venv takes up to ~1 GB"}[kind]
    return ["error: {:.1f} GB free on the filesystem of {}; {}.\n"
            "  Free some space, or put the venv elsewhere (make setup VENV=/bigdisk/clipmis-venv), or on Linux "
            "without a GPU use CPU=1; pip's cache (~/.cache/pip) takes as much again: PIP_NO_CACHE_DIR=1 avoids it."
            .format(free, where, what)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--venv", default=".venv")
    ap.add_argument("--cpu", action="store_true")
    a = ap.parse_args(argv)
    problems = check_python() or (check_venv_module() + check_existing_venv(a.venv))
    if not problems:
        problems = check_disk(a.venv, a.cpu)
    for p in problems:
        sys.stderr.write(p + "\n")
    if problems:
        return 1
    print("  Python {} ({}), venv module present, enough free disk".format(
        ".".join(str(x) for x in sys.version_info[:3]), sys.executable))
    return 0


if __name__ == "__main__":
    sys.exit(main())
