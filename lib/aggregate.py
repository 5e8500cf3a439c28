"""``python -m lib.aggregate finetune <profile>``: rebuild aggregated CSVs from per-run files."""
import sys

from .stages import aggregate_finetune

if __name__ == "__main__":
    what, profile = sys.argv[1], sys.argv[2]
    if what != "finetune":
        sys.exit(f"unknown aggregate {what!r}; valid: finetune")
    print(aggregate_finetune(profile))
