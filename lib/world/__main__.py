"""``python -m lib.world <profile>``: verify the profile's world and regenerate it if it is missing,
stale or damaged."""
from __future__ import annotations

import sys

from .. import paths
from ..config import ConfigError, load_profile
from .design import check_design, corpus_entries
from .generation import WorldNotReady, generate, verify_world


if __name__ == "__main__":
    # python -m lib.world <profile>: verify the world and regenerate it if it is missing, stale or damaged
    try:
        cfg = load_profile(sys.argv[1] if len(sys.argv) > 1 else "")
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    if cfg.get("data", {}).get("source", "embedded") != "embedded":
        sys.exit(f"profile {cfg['name']} reads real data (data.source: {cfg['data']['source']}): it has no embedded world")
    try:
        check_design(cfg["world"])
        corpus_entries(cfg["world"])
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    try:
        verify_world(cfg, deep=True)
        print(f"world of {cfg['name']}: ok ({paths.world_dir(cfg['name'])})")
    except WorldNotReady as exc:
        print(f"world of {cfg['name']}: {str(exc).split(': regenerate')[0]}; regenerating", file=sys.stderr)
        generate(cfg, progress=False)
        verify_world(cfg, deep=True)
        print(f"world of {cfg['name']}: regenerated ({paths.world_dir(cfg['name'])})")
