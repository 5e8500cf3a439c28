"""Run a command while holding a per-profile lock, so two ``make`` runs never share a build folder.

    python -m lib.pipeline.lock build/.<profile>.lock -- <command ...>

A second run finds the lock held, names the process that holds it and exits with status 3 before
touching anything. The lock is an OS file lock (``fcntl.flock``): it is released when the holder
exits, even after a crash or ``kill -9``, so there is no stale lock to delete.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m lib.pipeline.lock <lockfile> -- <command ...>", file=sys.stderr)
        return 2
    path, cmd = Path(argv[0]), argv[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        import fcntl
    except ImportError:  # Windows: no lock, say so and carry on
        print(f"warning: no file locking on this platform; do not run two makes on {path.parent}", file=sys.stderr)
        return subprocess.call(cmd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        except ValueError:
            holder = {}
        print(f"error: another run holds {path} (pid {holder.get('pid', '?')}, started "
              f"{holder.get('started', '?')}: {holder.get('cmd', '?')}). Wait for it to finish or stop it; "
              f"two runs on one profile would overwrite each other's files.", file=sys.stderr)
        return 3
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                              "cmd": " ".join(cmd)[:300]}).encode(), 0)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 130
    finally:
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
