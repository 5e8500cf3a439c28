"""One make per profile: a second run stops at once, names the first, and touches nothing."""
import subprocess
import sys
import time


def test_second_run_is_refused_while_the_first_holds_the_lock(tmp_path):
    lock = tmp_path / ".smoke.lock"
    first = subprocess.Popen([sys.executable, "-m", "lib.pipeline.lock", str(lock), "--", "sleep", "20"])
    try:
        for _ in range(100):
            if lock.exists() and lock.read_text():
                break
            time.sleep(0.1)
        marker = tmp_path / "ran"
        second = subprocess.run([sys.executable, "-m", "lib.pipeline.lock", str(lock), "--", "touch", str(marker)],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 3
        assert f"pid {first.pid}" in second.stderr and "sleep 20" in second.stderr
        assert not marker.exists(), "the refused command must not run"
    finally:
        first.kill()
        first.wait()
    # released when the holder dies (even by SIGKILL): the next run goes through
    again = subprocess.run([sys.executable, "-m", "lib.pipeline.lock", str(lock), "--", "true"], timeout=60)
    assert again.returncode == 0


def test_exit_status_of_the_command_is_passed_on(tmp_path):
    r = subprocess.run([sys.executable, "-m", "lib.pipeline.lock", str(tmp_path / "l"), "--", "false"], timeout=60)
    assert r.returncode == 1
