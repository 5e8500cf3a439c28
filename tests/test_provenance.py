"""lib.provenance records the processor (vendor, model, ISA level, kernel pins) and never fails; the
README block names the published run's processor when its provenance has one."""
import builtins
import json

import pandas as pd

from lib import determinism
from lib import provenance as P
from lib.analysis import report

INTEL = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R)   Platinum 8480+
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8

processor\t: 1
vendor_id\t: SomethingElse
model name\t: not the first processor
flags\t\t: fpu
"""
AMD = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7763 64-Core Processor
flags\t\t: fpu sse4_2 avx avx2 fma
"""
ARM = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes
CPU implementer\t: 0x41
"""


def test_parse_cpuinfo_and_isa_level():
    i = P.parse_cpuinfo(INTEL)
    assert i["vendor"] == "GenuineIntel" and i["model"].startswith("Intel(R) Xeon(R)")
    assert "amx_tile" in i["flags"] and "fpu" in i["flags"]
    assert P.isa_level(i["flags"]) == "amx"
    a = P.parse_cpuinfo(AMD)
    assert (a["vendor"], a["model"], P.isa_level(a["flags"])) == ("AuthenticAMD", "AMD EPYC 7763 64-Core Processor", "avx2")
    assert P.isa_level({"avx512f", "avx2"}) == "avx512"
    assert P.isa_level({"avx512f", "avx512_bf16"}) == "avx512_bf16"
    arm = P.parse_cpuinfo(ARM)
    assert arm["vendor"] == "0x41" and P.isa_level(arm["flags"], "aarch64") == "aarch64"
    assert P.isa_level(set(), None) is None and P.parse_cpuinfo("")["flags"] == set()


def test_processor_of_this_machine_is_recorded():
    p = P.processor()
    assert set(p) >= {"vendor", "model", "isa", "flags", "machine", "cores", "pins"}
    json.dumps(p)                                            # goes into JSON provenance as it is
    assert P.collect()["processor"]["isa"] == p["isa"]
    if determinism.pinned_env():                             # the pins in force are part of it
        assert p["pins"]["ATEN_CPU_CAPABILITY"] == determinism.PINS["ATEN_CPU_CAPABILITY"]
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return
    want = P.parse_cpuinfo(text)
    assert p["vendor"] == want["vendor"] and p["isa"] == P.isa_level(want["flags"], p["machine"])


def test_processor_never_fails(monkeypatch):
    real_open = builtins.open

    def broken(path, *a, **k):
        if str(path) == "/proc/cpuinfo":
            raise PermissionError("no")
        return real_open(path, *a, **k)
    monkeypatch.setattr(builtins, "open", broken)
    monkeypatch.setattr(P.platform, "processor", lambda: "")
    monkeypatch.setattr(determinism, "status", lambda: 1 / 0)
    P._cpu.cache_clear()
    try:
        p = P.processor()
    finally:
        P._cpu.cache_clear()
    assert p["vendor"] is None and p["model"] is None and p["pins"] is None
    assert p["isa"] == (P.platform.machine() or None)
    assert P.processor_line(p) is None


PROV = {"git": {"commit": "0" * 40, "dirty": False}, "device": "cpu (x86_64, 2 threads)",
        "processor": {"vendor": "AuthenticAMD", "model": "AMD EPYC 7763 64-Core Processor", "isa": "avx2",
                      "flags": ["avx", "avx2", "fma"], "machine": "x86_64", "cores": 2,
                      "pins": {"ATEN_CPU_CAPABILITY": "avx2", "torch_threads": 2}}}


def test_published_processor_line():
    assert report.published_processor(PROV) == \
        "published run: AuthenticAMD AMD EPYC 7763 64-Core Processor (avx2), 2 threads"
    no_threads = {**PROV, "device": "cpu", "processor": {**PROV["processor"], "pins": {}}}
    assert report.published_processor(no_threads) == "published run: AuthenticAMD AMD EPYC 7763 64-Core Processor (avx2)"
    from_device = {**PROV, "device": "cpu (x86_64, 4 threads)", "processor": {**PROV["processor"], "pins": None}}
    assert report.published_processor(from_device).endswith("(avx2), 4 threads")
    old = {k: v for k, v in PROV.items() if k != "processor"}   # published before the processor was recorded
    assert report.published_processor(old) is None and report.published_processor({"processor": "x"}) is None


def test_readme_block_names_the_processor(tmp_path, monkeypatch):
    head = pd.DataFrame({"method": ["full"], **{f"{q}{s}": [1.0] for q in ("id_gain", "dg_gain", "cf_drop", "balance")
                                                 for s in ("", "_lo", "_hi")},
                         "no_val_gain_runs": [0], "diverged_runs": [0], "runs": [3], "n_tasks": [1], "n_seeds": [3]})
    claims = pd.DataFrame({"id": [], "claim": [], "verdict": []})
    block = report.readme_block(head, claims, "unit", "fig.png", provenance=PROV)
    assert "Published run: AuthenticAMD AMD EPYC 7763 64-Core Processor (avx2), 2 threads" in block
    assert "Published run" not in report.readme_block(head, claims, "unit", "fig.png",
                                                     provenance={k: v for k, v in PROV.items() if k != "processor"})
    # default: the published folder's MANIFEST.json
    monkeypatch.setattr(report.paths, "PAPER_FIGURES", tmp_path)
    assert "Published run" not in report.readme_block(head, claims, "unit", "fig.png")     # no manifest: no line
    (tmp_path / "MANIFEST.json").write_text(json.dumps({"manifest_version": 1, "produced_by": PROV, "files": []}))
    assert "(avx2), 2 threads" in report.readme_block(head, claims, "unit", "fig.png")
