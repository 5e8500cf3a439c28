"""Pins that make the CPU pipeline give the same bytes on any x86-64 machine with AVX2.

Why two machines differ
-----------------------
The math libraries under torch and numpy pick their kernels at run time from the processor's
instruction set, and kernels of different widths round differently (another summation order):

* **ATen** (torch's own CPU kernels: softmax, reductions, the vision tower's activations) has
  DEFAULT / AVX2 / AVX512 builds of each kernel (``ATEN_CPU_CAPABILITY``);
* **oneDNN** (torch's convolutions, GELU and parts of the transformer blocks) has AVX2 /
  AVX-512 / AMX code paths (``ONEDNN_MAX_CPU_ISA``, formerly ``DNNL_MAX_CPU_ISA``);
* **MKL** (torch's matrix products) dispatches by processor and vendor; conditional numerical
  reproducibility (``MKL_CBWR``) fixes its code path;
* **OpenBLAS** (numpy's matrix products, used by the metrics) has per-processor kernels
  (``OPENBLAS_CORETYPE``);
* the **number of threads** changes how reductions are split (torch and OpenBLAS).

Measured on an AVX-512 machine (one process, the tiny CLIP's forward and backward): ATen AVX2 vs
AVX512 changes softmax, the image embeddings and every gradient; oneDNN AVX2 vs AVX-512 changes
GELU, both towers' embeddings and the gradients; OpenBLAS SkylakeX vs Haswell changes float64
products; one vs two threads changes full reductions and the gradients.  MKL gave the same bytes
under every setting on that (AMD) processor: it runs its AVX2 path on AMD already, and ``MKL_CBWR``
keeps an Intel AVX-512 processor on the same path.

What ``apply()`` pins
---------------------
``PINS`` below: every library is held to its AVX2 code path, which every x86-64 processor since
2013 (Intel Haswell, AMD Excavator / Zen) runs, so an AVX-512 machine computes what an AVX2
machine computes.  ``OPENBLAS_CORETYPE`` is set to Haswell only where the machine does not set it
already (some machines set it because older OpenBLAS builds fail on them; that choice is kept and
``status()`` reports it).  With ``threads`` the thread count of torch, OpenMP, MKL and OpenBLAS is
fixed as well; byte identity across machines needs the same thread count on both.

How the pipeline must call it
-----------------------------
The variables are read when each library first runs a kernel, so ``apply()`` must run before
torch or numpy compute anything, ideally before they are imported: first thing in
``lib/__init__.py`` (every notebook imports ``lib`` before torch), or in the environment of every
process (``python -m lib.determinism --make`` prints ``export`` lines for a Makefile).  If torch
has already picked another ISA, ``apply()`` raises instead of silently not pinning.
``CLIPMIS_NO_ISA_PINS=1`` turns the ISA pins off (fastest kernels, bytes of this machine only).
"""
from __future__ import annotations

import os
import sys

PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "DNNL_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}
OPENBLAS_CORETYPE = "Haswell"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class DeterminismError(RuntimeError):
    """The pins could not take effect (a library already chose its kernels)."""


def pinned_env(threads: int | None = None) -> dict:
    """The environment variables ``apply`` sets (for a Makefile or a subprocess)."""
    if os.environ.get("CLIPMIS_NO_ISA_PINS") == "1":
        env = {}
    else:
        env = dict(PINS)
        if not os.environ.get("OPENBLAS_CORETYPE"):
            env["OPENBLAS_CORETYPE"] = OPENBLAS_CORETYPE
    if threads is not None:
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        env.update({k: str(threads) for k in THREAD_VARS})
    return env


def apply(threads: int | None = None) -> dict:
    """Pin the kernels (and, with ``threads``, the thread count); returns the variables set.

    Call before torch / numpy compute anything (module docstring).
    """
    env = pinned_env(threads)
    os.environ.update(env)
    if "torch" in sys.modules:
        # start-up: runs only when torch is already loaded; at the top it would load torch (1.4 s) before the pins are set
        import torch
        if threads is not None:
            torch.set_num_threads(threads)
        if "ATEN_CPU_CAPABILITY" in env:
            cap = torch.backends.cpu.get_cpu_capability()
            if cap not in ("AVX2", "DEFAULT") and _has_avx2():
                raise DeterminismError(
                    f"torch already runs {cap} kernels: call lib.determinism.apply() before torch computes "
                    f"anything (first in lib/__init__.py), or export the variables of "
                    f"`python -m lib.determinism --make` before starting Python")
    return env


def _has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo") as fh:
            return " avx2" in fh.read()
    except OSError:
        return True


def status() -> dict:
    """What this process runs with: for provenance records and the tests."""
    out = {k: os.environ.get(k) for k in (*PINS, "OPENBLAS_CORETYPE", *THREAD_VARS)}
    if "torch" in sys.modules:
        # start-up: runs only when torch is already loaded; at the top it would load torch (1.4 s) before the pins are set
        import torch
        out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        out["torch_threads"] = torch.get_num_threads()
    try:
        import threadpoolctl  # optional: threadpoolctl may be absent
        for info in threadpoolctl.threadpool_info():
            if info.get("internal_api") == "openblas":
                out["openblas_kernel"] = info.get("architecture")
    except ImportError:
        pass
    out["openblas_coretype_kept_from_machine"] = os.environ.get("OPENBLAS_CORETYPE") not in (None, OPENBLAS_CORETYPE)
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    n = None
    if "--threads" in args:
        n = int(args[args.index("--threads") + 1])
    if "--kv" in args:  # one line of K=V pairs, for the Makefile's $(shell ...)
        print(" ".join(f"{k}={v}" for k, v in pinned_env(n).items()))
    elif "--make" in args:
        for k, v in pinned_env(n).items():
            print(f"export {k} := {v}")
    else:
        for k, v in pinned_env(n).items():
            print(f"export {k}={v}")
