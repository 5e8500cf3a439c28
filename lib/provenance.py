"""What produced a result: params, seed, git commit (dirty or not), package versions, device, processor.

``processor()`` records the CPU a run computed on -- vendor, model name, and the instruction-set level
that decides which kernels the math libraries may pick (AVX2 / AVX-512 / AVX-512 BF16 / AMX) -- and
the kernel pins in force (``lib.determinism``): two machines give the same bytes only when the pins
hold both to the same code path and the thread counts agree (``lib/determinism.py``,
``docs/reliability.md``).  It never fails: what cannot be read is ``None``."""
from __future__ import annotations

import importlib.metadata as md
import os
import platform
import re
import subprocess
import sys
from functools import lru_cache

from . import determinism, paths


@lru_cache(maxsize=1)
def git_state() -> dict:
    def run(*args):
        try:
            return subprocess.run(["git", *args], cwd=paths.ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    commit = run("rev-parse", "HEAD") or "unknown"
    dirty = bool(run("status", "--porcelain", "--untracked-files=no", "--", "lib", "params", "notebooks"))
    return {"commit": commit, "dirty": dirty}


@lru_cache(maxsize=1)
def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("torch", "torchvision", "open_clip_torch", "peft", "numpy", "scikit-learn", "pandas",
                "papermill"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def device_name() -> str:
    # lib.provenance (16 ms to import) is imported by lib.analysis.report, which stays torch-free:
    # start-up: torch adds 1.2-1.9 s to `import lib.analysis` (2-core dev machine, loaded)
    import torch
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


# ISA features that change which kernels ATen / oneDNN / MKL / OpenBLAS may run, lowest first
# (/proc/cpuinfo flag names).
ISA_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
             "amx_int8")
ISA_LEVELS = (("amx", ("amx_tile",)), ("avx512_bf16", ("avx512_bf16",)), ("avx512", ("avx512f",)),
              ("avx2", ("avx2",)), ("avx", ("avx",)))
_SYSCTL = {"vendor": "machdep.cpu.vendor", "model": "machdep.cpu.brand_string",
           "features": "machdep.cpu.features", "leaf7": "machdep.cpu.leaf7_features"}


def parse_cpuinfo(text: str) -> dict:
    """vendor, model name and the ISA flags of the first processor of a Linux ``/proc/cpuinfo``."""
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break                  # the first processor's block is enough
            continue
        k, _, v = line.partition(":")
        fields.setdefault(k.strip().lower(), v.strip())
    flags = set((fields.get("flags") or fields.get("features") or "").lower().split())
    return {"vendor": fields.get("vendor_id") or fields.get("cpu implementer"),
            "model": fields.get("model name") or fields.get("hardware") or fields.get("processor"),
            "flags": flags}


def isa_level(flags: set | None, machine: str | None = None) -> str | None:
    """The widest vector ISA of ``flags``: 'amx', 'avx512_bf16', 'avx512', 'avx2', 'avx', else the
    machine ('arm64', ...); None when nothing is known."""
    if flags:
        for level, need in ISA_LEVELS:
            if all(f in flags for f in need):
                return level
    return machine or None


def _sysctl(name: str) -> str | None:
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def processor() -> dict:
    """The processor of this machine: ``vendor``, ``model``, ``isa`` (the widest level, see
    :func:`isa_level`), ``flags`` (which of :data:`ISA_FLAGS` it has), ``machine``, ``cores``, and
    ``pins`` (the kernel pins and thread counts in force now, ``lib.determinism.status()``).  Never raises."""
    out = dict(_cpu())
    out["flags"] = list(out["flags"])
    try:
        out["pins"] = {k: v for k, v in determinism.status().items() if v is not None}
    except Exception:  # noqa: BLE001
        out["pins"] = None
    return out


@lru_cache(maxsize=1)
def _cpu() -> dict:
    info = {"vendor": None, "model": None, "flags": set()}
    try:
        if sys.platform.startswith("linux") and os.path.exists("/proc/cpuinfo"):
            with open("/proc/cpuinfo", errors="replace") as fh:
                info = parse_cpuinfo(fh.read())
        elif sys.platform == "darwin":
            feats = " ".join(x for x in (_sysctl(_SYSCTL["features"]), _sysctl(_SYSCTL["leaf7"])) if x)
            info = {"vendor": _sysctl(_SYSCTL["vendor"]) or ("Apple" if platform.machine() == "arm64" else None),
                    "model": _sysctl(_SYSCTL["model"]),
                    "flags": {f.lower().replace(".", "_") for f in feats.split()}}
    except Exception:  # noqa: BLE001 - provenance must never stop a run
        pass
    machine = platform.machine() or None
    model = info.get("model") or platform.processor() or None
    flags = info.get("flags") or set()
    out = {"vendor": info.get("vendor"), "model": re.sub(r"\s+", " ", model).strip() if model else None,
           "isa": isa_level(flags, machine), "flags": [f for f in ISA_FLAGS if f in flags], "machine": machine,
           "cores": os.cpu_count()}
    return out


def processor_line(proc: dict | None, threads: int | None = None) -> str | None:
    """A processor record of :func:`processor` as one line, e.g. ``GenuineIntel Intel(R) Xeon(R)
    Processor (amx), 2 threads``; None when the record names no processor."""
    if not isinstance(proc, dict) or not (proc.get("vendor") or proc.get("model")):
        return None
    s = " ".join(str(x) for x in (proc.get("vendor"), proc.get("model")) if x)
    if proc.get("isa"):
        s += f" ({proc['isa']})"
    if threads:
        s += f", {threads} threads"
    return s


def collect(profile_cfg: dict | None = None, **extra) -> dict:
    out = {"git": git_state(), "versions": versions(), "device": device_name(), "processor": processor()}
    if profile_cfg is not None:
        out["profile"] = profile_cfg.get("name")
    out.update(extra)
    return out
