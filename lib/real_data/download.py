"""``python -m lib.real_data.download <profile> [--list]``: fetch every download of a profile's tasks.

Each resource is made ready by :func:`lib.real_data.fetch.ensure` (resumable, checksummed, unpacked
atomically; see that module); with ``--list`` it only prints the table of downloads (dataset, file,
host, size, checksum and where the checksum comes from). Exit status 1 names every download that
failed, each with its URLs and the manual fallback. The pipeline needs none of this (a stage whose
data is missing downloads it when the profile has ``data.download: true``); the Colab launcher runs
it first so that the downloads show their own progress.
"""
from __future__ import annotations

import sys

from .. import config
from ..config import ConfigError
from .fetch import DownloadError, ensure, table
from .source import TASKS, RealSource


def profile_resources(profile: str):
    cfg = config.load_profile(profile)
    src = RealSource(cfg)
    seen, out = set(), []
    for name in src.task_names:
        for r in getattr(TASKS[name], "resources", ()):
            if r.key not in seen:
                seen.add(r.key)
                out.append(r)
    return src, out


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    if len(args) != 1:
        print("usage: python -m lib.real_data.fetch <profile> [--list]", file=sys.stderr)
        return 2
    try:
        src, resources = profile_resources(args[0])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    total = sum(r.size_mb for r in resources)
    print(f"{len(resources)} downloads, {total / 1024:.1f} GB, into {src.root}")
    if "--list" in argv:
        print(table(resources))
        return 0
    failed = []
    for r in resources:
        try:
            ensure(src.root, r)
        except DownloadError as exc:
            print(str(exc), file=sys.stderr)
            failed.append(r.dataset)
    if failed:
        print(f"error: {len(failed)} downloads failed ({', '.join(failed)}); the messages above name the "
              f"URLs and the manual fallback", file=sys.stderr)
        return 1
    print(f"every download of profile {args[0]!r} is in place under {src.root}")
    return 0



if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
