"""lib.determinism pins the CPU kernels: AVX-512 and AVX2 settings give the same bytes once pinned."""
import json
import os
import subprocess
import sys

import pytest

from lib import determinism, paths

CPUINFO = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
needs_avx2 = pytest.mark.skipif(" avx2" not in CPUINFO, reason="needs an x86-64 processor with AVX2")
needs_avx512 = pytest.mark.skipif(" avx512f" not in CPUINFO, reason="needs AVX-512 to compare two ISAs")

# A small network through the kernels that dispatch on the ISA: oneDNN convolution and GELU, ATen
# softmax / layer norm / reductions, MKL matrix products; forward and backward. Prints a hash.
PROBE = r"""
import hashlib, json, os, sys
sys.path.insert(0, {root!r})
if os.environ.get("PROBE_PIN") == "1":
    from lib import determinism
    determinism.apply(threads=1)
import torch
torch.set_num_threads(1)
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 4, 4), torch.nn.Flatten(2))
block = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, activation="gelu", batch_first=True)
x = torch.rand(16, 3, 32, 32)
h = block(net(x).transpose(1, 2))
loss = torch.softmax(h @ h.transpose(1, 2), -1).logsumexp(-1).mean()
loss.backward()
g = torch.cat([p.grad.flatten() for p in [*net.parameters(), *block.parameters()]])
print(json.dumps({{"cap": torch.backends.cpu.get_cpu_capability(),
                  "hash": hashlib.sha256(h.detach().numpy().tobytes() + g.numpy().tobytes()).hexdigest()}}))
"""


def probe(pin: bool, **env) -> dict:
    e = {**os.environ, "PROBE_PIN": "1" if pin else "0", **env}
    for k in determinism.PINS:
        if k not in env:
            e.pop(k, None)
    r = subprocess.run([sys.executable, "-c", PROBE.format(root=str(paths.ROOT))], env=e, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


AVX512 = {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}
# every library restricted to AVX2 by hand (MKL too: on a processor with AMX / AVX-512 BF16, MKL's
# default matrix kernels differ from its AVX2 ones, so ATen + oneDNN alone do not give the AVX2 bytes)
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


@pytest.mark.slow
@needs_avx2
@needs_avx512
def test_isa_changes_bytes_without_pins_and_not_with_them():
    fast, narrow = probe(False, **AVX512), probe(False, **AVX2)
    assert fast["cap"] == "AVX512" and narrow["cap"] == "AVX2"
    assert fast["hash"] != narrow["hash"], "the ISA no longer changes the bytes here: the probe has no teeth"
    pinned_fast, pinned_narrow = probe(True, **AVX512), probe(True, **AVX2)
    assert pinned_fast["cap"] == pinned_narrow["cap"] == "AVX2"
    assert pinned_fast["hash"] == pinned_narrow["hash"] == narrow["hash"]


@pytest.mark.slow  # subprocess: a fresh interpreter importing torch (fast tier: issue #21 item 9)
@needs_avx2
def test_pins_reach_torch_when_applied_first():
    assert probe(True)["cap"] == "AVX2"


@pytest.mark.slow  # subprocess: a fresh interpreter importing torch (fast tier: issue #21 item 9)
@needs_avx512
def test_late_apply_is_an_error_not_a_silent_no_op():
    code = ("import sys; sys.path.insert(0, %r); import torch; torch.randn(8).softmax(0); "
            "from lib import determinism; determinism.apply()") % str(paths.ROOT)
    e = {k: v for k, v in os.environ.items() if k not in determinism.PINS}
    r = subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "call lib.determinism.apply() before torch computes" in r.stderr


def test_pinned_env(monkeypatch):
    monkeypatch.delenv("CLIPMIS_NO_ISA_PINS", raising=False)
    env = determinism.pinned_env(threads=2)
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["MKL_CBWR"] == "AVX2" and env["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "2"
    if os.environ.get("OPENBLAS_CORETYPE"):
        assert "OPENBLAS_CORETYPE" not in env, "a machine's own OPENBLAS_CORETYPE is kept"
    else:
        assert env["OPENBLAS_CORETYPE"] == "Haswell"
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            determinism.pinned_env(threads=bad)
    monkeypatch.setenv("CLIPMIS_NO_ISA_PINS", "1")
    assert determinism.pinned_env() == {}


def test_make_exports():
    r = subprocess.run([sys.executable, "-m", "lib.determinism", "--make", "--threads", "1"], cwd=paths.ROOT,
                       capture_output=True, text=True, timeout=60,
                       env={k: v for k, v in os.environ.items() if k != "CLIPMIS_NO_ISA_PINS"})
    assert r.returncode == 0
    assert "export ATEN_CPU_CAPABILITY := avx2" in r.stdout and "export OMP_NUM_THREADS := 1" in r.stdout
