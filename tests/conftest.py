import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


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
