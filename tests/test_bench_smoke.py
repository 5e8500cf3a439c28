"""bench/bench_smoke.py with a stand-in `make` (the real `make smoke` takes minutes: the bench itself
measures it): the command it runs, the table it prints, the build folder it removes, a failed run."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "bench_smoke.py"

FAKE_MAKE = '''
import os, sys, time
from pathlib import Path
open(os.environ["FAKE_MAKE_LOG"], "w").write(" ".join(sys.argv[1:]) + "\\n" + os.environ.get("MAKELEVEL", "-"))
build = Path(next(a for a in sys.argv if a.startswith("BUILD="))[6:])
(build / "smoke").mkdir(parents=True)
block = bytearray(int(os.environ["FAKE_MAKE_MB"]) * 2**20)  # resident: every page written
for i in range(0, len(block), 4096):
    block[i] = 1
time.sleep(1.2)
print("stand-in make done")
sys.exit(int(os.environ.get("FAKE_MAKE_RC", "0")))
'''


def run_bench(tmp_path, *args, rc=0, mb=150):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    make = bin_dir / "make"
    make.write_text(f"#!{sys.executable}\n" + textwrap.dedent(FAKE_MAKE))
    make.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", FAKE_MAKE_LOG=str(tmp_path / "argv"),
               FAKE_MAKE_MB=str(mb), FAKE_MAKE_RC=str(rc), MAKELEVEL="1", MAKEFLAGS="-j2")
    r = subprocess.run([sys.executable, str(BENCH), "--log", str(tmp_path / "make.log"), *args], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=120)
    return r, (tmp_path / "argv").read_text().split("\n") if (tmp_path / "argv").exists() else None


def test_help_and_dry_run_run_nothing(tmp_path):
    r = subprocess.run([sys.executable, str(BENCH), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--dry-run" in r.stdout
    r, argv = run_bench(tmp_path, "--dry-run")
    assert r.returncode == 0 and argv is None
    assert "make --no-print-directory smoke BUILD=" in r.stdout and "LOCK=none" in r.stdout


def test_measures_a_run_from_an_empty_build_folder_and_removes_it(tmp_path):
    r, (argv, makelevel) = run_bench(tmp_path, "--jobs", "2", mb=150)
    assert r.returncode == 0, r.stderr
    args = argv.split()
    assert args[:2] == ["--no-print-directory", "smoke"]
    assert f"PY={sys.executable}" in args and "LOCK=none" in args and "JOBS=2" in args
    build = Path(next(a for a in args if a.startswith("BUILD="))[6:])
    assert not build.exists()  # the temporary build folder is gone
    assert makelevel == "-"  # a top-level make: the caller's Make variables are not passed on
    out = r.stdout
    assert "| wall time of `make smoke` |" in out and "<= 3 min" in out and "<= 4 GB" in out
    row = next(line for line in out.splitlines() if "largest single process" in line)
    assert 0.15 <= float(row.split("|")[2].split()[0]) < 4  # GB: the stand-in's 150 MiB block
    assert "all processes together (PSS" in out or "all processes together (psutil missing" in out
    assert "stand-in make done" in (tmp_path / "make.log").read_text()


def test_a_failed_make_says_so_and_exits_1(tmp_path):
    r, _ = run_bench(tmp_path, rc=3, mb=1)
    assert r.returncode == 1
    assert "make failed, exit 3" in r.stdout and "stand-in make done" in r.stdout


def test_refuses_a_build_folder_that_is_not_empty(tmp_path):
    (tmp_path / "b" / "smoke").mkdir(parents=True)
    r, argv = run_bench(tmp_path, "--build", str(tmp_path / "b"))
    assert r.returncode == 2 and argv is None and "not empty" in r.stderr


def test_run_all_lists_it_outside_the_default_set():
    sys.path.insert(0, str(ROOT / "bench"))
    import run_all
    assert "smoke" in run_all.SCRIPTS and (ROOT / "bench" / run_all.SCRIPTS["smoke"][0]).exists()
    assert "smoke" not in run_all.DEFAULT and set(run_all.DEFAULT) == set(run_all.SCRIPTS) - {"smoke"}
