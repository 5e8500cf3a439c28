"""One make per profile: a second run stops at once, names the first, and touches nothing -- also after
the first run's lock process was killed while the work it started still runs."""
import json
import os
import signal
import subprocess
import sys
import time

LOCK = [sys.executable, "-m", "lib.pipeline.lock"]


def _wait_for(pred, timeout=30.0):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def _record(lock):
    try:
        return json.loads(lock.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie (exited, not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _second(lock, marker, timeout=60):
    return subprocess.run([*LOCK, str(lock), "--", "touch", str(marker)], capture_output=True, text=True,
                          timeout=timeout)


def test_second_run_is_refused_while_the_first_holds_the_lock(tmp_path):
    lock = tmp_path / ".smoke.lock"
    first = subprocess.Popen([*LOCK, str(lock), "--", "sleep", "20"])
    child = None
    try:
        assert _wait_for(lambda: "child" in _record(lock))
        child = _record(lock)["child"]
        marker = tmp_path / "ran"
        second = _second(lock, marker)
        assert second.returncode == 3
        assert f"pid {first.pid}" in second.stderr and "sleep 20" in second.stderr
        assert not marker.exists(), "the refused command must not run"
    finally:
        first.kill()
        first.wait()
        if child:
            _kill(child)
    # released when the holder and its command are gone: the next run goes through
    assert _wait_for(lambda: not _alive(child))
    again = subprocess.run([*LOCK, str(lock), "--", "true"], timeout=60)
    assert again.returncode == 0


def test_lock_holds_while_the_work_lives_after_the_holder_is_killed(tmp_path):
    """kill -9 of the lock process (as a user killing `python -m lib.pipeline.lock` would) leaves its
    command running; the command holds the locked descriptor, so a second run is refused until the
    command ends, and then goes through."""
    lock = tmp_path / ".smoke.lock"
    script = "import time; time.sleep(60)"
    holder = subprocess.Popen([*LOCK, str(lock), "--", sys.executable, "-c", script])
    child = None
    try:
        assert _wait_for(lambda: "child" in _record(lock))
        child = _record(lock)["child"]
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        assert _alive(child), "the stand-in work must outlive its holder for this test"
        marker = tmp_path / "ran"
        second = _second(lock, marker)
        assert second.returncode == 3, second.stderr
        assert f"pid {holder.pid}, which has exited" in second.stderr and f"pid {child}" in second.stderr
        assert not marker.exists(), "a second run started while the first one's work still runs"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if child:
            _kill(child)
    assert _wait_for(lambda: not _alive(child))
    marker = tmp_path / "ran"
    assert _second(lock, marker).returncode == 0 and marker.exists()


def test_lock_holds_while_a_grandchild_lives(tmp_path):
    """make -> recipe -> notebook: the lock holds while any process down the tree lives, even when the
    holder and its direct command were both killed with SIGKILL."""
    lock = tmp_path / ".smoke.lock"
    pidfile = tmp_path / "grandchild.pid"
    holder = subprocess.Popen([*LOCK, str(lock), "--", "bash", "-c", f"sleep 60 & echo $! > {pidfile}; wait"])
    child = grandchild = None
    try:
        assert _wait_for(lambda: "child" in _record(lock) and pidfile.exists() and pidfile.read_text().strip())
        child, grandchild = _record(lock)["child"], int(pidfile.read_text())
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        os.kill(child, signal.SIGKILL)
        assert _wait_for(lambda: not _alive(child))
        assert _alive(grandchild)
        marker = tmp_path / "ran"
        second = _second(lock, marker)
        assert second.returncode == 3, second.stderr
        assert not marker.exists()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        for pid in (child, grandchild):
            if pid:
                _kill(pid)
    assert _wait_for(lambda: not _alive(grandchild))
    assert subprocess.run([*LOCK, str(lock), "--", "true"], timeout=60).returncode == 0


def test_sigterm_to_the_holder_reaches_the_command(tmp_path):
    lock = tmp_path / ".smoke.lock"
    holder = subprocess.Popen([*LOCK, str(lock), "--", "sleep", "60"])
    child = None
    try:
        assert _wait_for(lambda: "child" in _record(lock))
        child = _record(lock)["child"]
        holder.send_signal(signal.SIGTERM)
        assert holder.wait(timeout=30) != 0
        assert _wait_for(lambda: not _alive(child)), "SIGTERM was not passed on to the command"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if child:
            _kill(child)
    assert subprocess.run([*LOCK, str(lock), "--", "true"], timeout=60).returncode == 0


def test_exit_status_of_the_command_is_passed_on(tmp_path):
    r = subprocess.run([*LOCK, str(tmp_path / "l"), "--", "false"], timeout=60)
    assert r.returncode == 1


def test_a_filesystem_without_locks_is_not_called_busy(tmp_path, monkeypatch, capsys):
    """flock failing with ENOLCK / EOPNOTSUPP (NFS without lockd, some parallel filesystems) is not
    "another run holds the lock": exit 4 naming LOCK=none; with CLIPMIS_LOCK=none the command runs."""
    import errno
    import fcntl

    from lib.pipeline import lock
    monkeypatch.delenv("CLIPMIS_LOCK", raising=False)
    marker = tmp_path / "ran"
    for code in (errno.ENOLCK, errno.EOPNOTSUPP):
        def no_locks(fd, op, code=code):
            raise OSError(code, os.strerror(code))
        monkeypatch.setattr(fcntl, "flock", no_locks)
        assert lock.main([str(tmp_path / ".smoke.lock"), "--", "touch", str(marker)]) == 4
        err = capsys.readouterr().err
        assert "does not support file locks" in err and "LOCK=none" in err and "another run" not in err
        assert not marker.exists()
    monkeypatch.setenv("CLIPMIS_LOCK", "none")
    assert lock.main([str(tmp_path / ".smoke.lock"), "--", "touch", str(marker)]) == 0
    assert marker.exists() and "LOCK=none" in capsys.readouterr().err


def test_busy_names_the_host_of_a_holder_elsewhere(tmp_path):
    from lib.pipeline import lock
    msg = lock._refusal(tmp_path / "l", {"pid": 4242, "child": 4343, "host": "node-elsewhere", "cmd": "make"})
    assert "pid 4242 on host node-elsewhere" in msg and "pid 4343 there" in msg
