"""The environment files agree: one lock with platform markers, the top-level list, conda, Binder."""
import os
import re
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
LINUX = {"platform_system": "Linux", "sys_platform": "linux", "platform_machine": "x86_64"}
MACOS = {"platform_system": "Darwin", "sys_platform": "darwin", "platform_machine": "arm64"}
WINDOWS = {"platform_system": "Windows", "sys_platform": "win32", "platform_machine": "AMD64"}


def reqs(name):
    out = []
    for line in (ROOT / name).read_text().splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith(("#", "-")):
            out.append(Requirement(line))
    return out


def lock_for(env):
    return {r.name.lower().replace("_", "-"): str(r.specifier)
            for r in reqs("requirements-lock.txt") if r.marker is None or r.marker.evaluate(env)}


def test_lock_pins_everything_exactly_once():
    rs = reqs("requirements-lock.txt")
    names = [r.name.lower().replace("_", "-") for r in rs]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"==[\w.]+", str(r.specifier)) for r in rs)


def test_cuda_wheels_only_on_linux_and_torch_everywhere():
    gpu = re.compile(r"^(nvidia-|cuda-|triton$)")
    linux, mac, win = lock_for(LINUX), lock_for(MACOS), lock_for(WINDOWS)
    assert sum(bool(gpu.match(n)) for n in linux) >= 15
    assert not any(gpu.match(n) for n in mac) and not any(gpu.match(n) for n in win)
    for env in (linux, mac, win):
        assert env["torch"] == "==2.14.1" and env["torchvision"] == "==0.29.1"
    assert "appnope" in mac and "appnope" not in linux
    assert "pywinpty" in win and "pywinpty" not in mac


def test_top_level_requirements_are_in_the_lock():
    lock = lock_for(LINUX)
    for r in reqs("requirements.txt"):
        name = r.name.lower().replace("_", "-")
        assert name in lock, f"{name} is not pinned in requirements-lock.txt"
        assert r.specifier.contains(lock[name][2:]), f"{name}: {r.specifier} vs lock {lock[name]}"


def test_conda_uses_the_lock_and_binder_drops_only_the_cuda_lines():
    env = (ROOT / "environment.yml").read_text()
    assert "-r requirements-lock.txt" in env and "python>=3.11.5" in env
    post = ROOT / "binder" / "postBuild"
    assert os.access(post, os.X_OK)
    text = post.read_text()
    lock = lock_for(LINUX)
    assert f"torch{lock['torch']} torchvision{lock['torchvision']}" in text
    assert "download.pytorch.org/whl/cpu" in text and "make smoke PY=python" in text
    marker = re.search(r"grep -v '([^']+)' requirements-lock.txt", text).group(1)
    dropped = [l for l in (ROOT / "requirements-lock.txt").read_text().splitlines()
               if marker in l and not l.startswith("#")]
    kept = [l for l in (ROOT / "requirements-lock.txt").read_text().splitlines()
            if marker not in l and l and not l.startswith("#")]
    assert all(re.match(r"(nvidia-|cuda-|triton)", l) for l in dropped) and len(dropped) >= 15
    assert not any(re.match(r"(nvidia-|cuda-|triton)", l) for l in kept)
    assert Marker(marker.strip()).evaluate(LINUX) and not Marker(marker.strip()).evaluate(MACOS)
