"""Run a command while holding a per-profile lock, so two ``make`` runs never share a build folder.

    python -m lib.pipeline.lock build/.<profile>.lock -- <command ...>

A second run finds the lock held, names the process that holds it and exits with status 3 before
touching anything. The lock is an OS file lock (``fcntl.flock``) on an open file description: it is
released when the last process holding that description exits, even after a crash or ``kill -9``,
so there is no stale lock to delete.

The guarded command inherits the locked file descriptor (``pass_fds``: it is not close-on-exec), and
so do its children (``make`` passes it to every recipe, papermill, the evaluation jobs...). The lock
is therefore held as long as ANY process of the guarded work is alive: killing this holder (even
with SIGKILL) does not let a second run in while the first one's ``make`` or notebooks still run.
SIGTERM / SIGHUP sent to the holder are passed on to the command (``make`` passes SIGTERM to its jobs).

"Busy" and "no locks here" are told apart: ``flock`` failing with ``EWOULDBLOCK`` means another run
holds the lock (exit 3, naming it); failing with ``ENOLCK`` / ``EOPNOTSUPP`` / ``ENOSYS`` /
``EINVAL`` means the filesystem of the build folder cannot lock at all (some NFS or parallel
filesystems): exit 4 with what to do (``LOCK=none``, i.e. ``CLIPMIS_LOCK=none``: run without a lock,
one make per profile by hand; or a build folder on a local disk). With ``CLIPMIS_LOCK=none`` the
command runs unguarded after a one-line warning.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    return True


def _refusal(path: Path, holder: dict) -> str:
    pid, child = holder.get("pid", "?"), holder.get("child")
    host = holder.get("host")
    who = f"pid {pid}"
    if host and host != socket.gethostname():   # on another machine: its pids mean nothing here
        who += f" on host {host}"
        if child is not None:
            who += f"; its command is pid {child} there"
    elif child is not None and not _alive(pid):
        who += (f", which has exited; the work it started still runs and holds the lock (its command is pid {child}; "
                f"stop that process and its children, or wait)")
    elif child is not None:
        who += f"; its command is pid {child}"
    return (f"error: another run holds {path} ({who}; started {holder.get('started', '?')}: "
            f"{holder.get('cmd', '?')}). Wait for it to finish or stop it; two runs on one profile would "
            f"overwrite each other's files.")


BUSY = {errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES}
NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}


def _no_locks(path: Path, exc: OSError) -> str:
    return (f"error: the filesystem of {path.parent} does not support file locks ({os.strerror(exc.errno)}), so "
            f"this run cannot make sure no other make works on the same build folder. Either run without the "
            f"lock and start one make per profile at a time yourself: add LOCK=none (make ... LOCK=none, or "
            f"CLIPMIS_LOCK=none in the environment); or put the build folder on a local disk "
            f"(BUILD=/local/scratch/clipmis).")


def _unlocked(path: Path, cmd: list[str]) -> int:
    print(f"warning: LOCK=none: running without the lock on {path}; do not start a second make on this "
          f"profile until this one ends", file=sys.stderr)
    try:
        return subprocess.call(cmd)
    except OSError as exc:
        print(f"error: cannot run {cmd[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        return 127


def _record(fd: int, info: dict) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m lib.pipeline.lock <lockfile> -- <command ...>", file=sys.stderr)
        return 2
    path, cmd = Path(argv[0]), argv[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    if os.environ.get("CLIPMIS_LOCK", "").strip().lower() == "none":
        return _unlocked(path, cmd)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl  # optional: fcntl may be absent (POSIX only)
    except ImportError:  # Windows: no lock, say so and carry on
        print(f"warning: no file locking on this platform; do not run two makes on {path.parent}", file=sys.stderr)
        return subprocess.call(cmd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in BUSY:
            os.close(fd)
            print(_no_locks(path, exc) if exc.errno in NO_LOCKS else
                  f"error: cannot lock {path}: {exc.strerror or exc} (LOCK=none runs without the lock)",
                  file=sys.stderr)
            return 4
        try:
            holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        except ValueError:
            holder = {}
        print(_refusal(path, holder if isinstance(holder, dict) else {}), file=sys.stderr)
        return 3
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "cmd": " ".join(cmd)[:300]}
    _record(fd, info)
    # the command and everything it starts keep the locked descriptor open: the lock lives while they do
    os.set_inheritable(fd, True)
    try:
        proc = subprocess.Popen(cmd, pass_fds=(fd,))
    except OSError as exc:
        print(f"error: cannot run {cmd[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        os.close(fd)
        return 127
    _record(fd, {**info, "child": proc.pid})

    def forward(signum, _frame):
        try:
            proc.send_signal(signum)
        except OSError:
            pass
    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return proc.wait()
    except KeyboardInterrupt:  # Ctrl-C reached the command too (same process group): let it stop first
        try:
            proc.wait(timeout=30)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            pass
        return 130
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
