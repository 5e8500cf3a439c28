"""Temporary: progress over an iterable (replaced by lib.progress)."""
from __future__ import annotations


def progress_iter(iterable, total=None, label="", enabled=True):
    from tqdm.auto import tqdm
    return tqdm(iterable, total=total, desc=label, disable=not enabled, leave=False)
