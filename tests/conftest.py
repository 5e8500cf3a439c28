"""Settings every test shares (one place): offline hub, headless plotting, one BLAS/OpenMP thread
for the tiny test models, and the shared tiny-model fixtures. ``lib`` is imported as the installed
package (``pip install -e .``, done by ``make setup``)."""
import gc
import importlib.util
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")       # never reach a model hub
os.environ.setdefault("MPLBACKEND", "Agg")         # no display
os.environ.setdefault("CLIPMIS_PROGRESS", "text")  # plain progress lines in test logs
# the colab profile's class names and prompts come from clip-benchmark's package data, which the lock does
# not carry: without the package, the tests read a copy of the entries they need (lib/real_data/clip_benchmark.py)
if importlib.util.find_spec("clip_benchmark") is None:
    os.environ.setdefault("CLIPMIS_CLIP_BENCHMARK_DIR",
                          os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "clip_benchmark"))


@pytest.fixture(scope="module", autouse=True)
def _gc_frozen():
    """Before each test module: collect, then freeze every object still alive (torch, pandas, the
    modules, what earlier modules cached), so the cyclic garbage collector skips them from then on.
    The automatic full collections otherwise walk every one of those objects (hundreds of thousands
    once torch, pandas and the test modules are loaded), again and again as tests allocate: the fast
    tier took 70 s without this fixture and 52 s with it (2 cores, measured 2026-12-05). Garbage is
    collected before each freeze, so nothing dead is kept."""
    gc.collect()
    gc.freeze()
    yield


@pytest.fixture(scope="module")
def one_thread():
    """The tiny model's ops are too small for intra-op threads; on a shared 2-core machine two
    OpenMP threads made the method/training tests ~10x slower."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def bundle(one_thread):
    """The small test CLIP (ClipMis-Tiny, random weights, seed 0)."""
    from lib import models
    return models.create("ClipMis-Tiny", device="cpu", seed=0)
