"""Stage 01: zero-shot difficulty of every task and domain (``notebooks/01_zero_shot.ipynb``)."""
from __future__ import annotations

import pandas as pd

from .. import config, paths, provenance
from ..data import source_for
from ..evaluate import zero_shot_table
from ..io import write_csv
from .common import base_model

STAGE = "01_zero_shot"


def zero_shot_stage(cfg: dict, progress: bool = True) -> pd.DataFrame:
    """Write ``results/zero_shot.csv``: accuracy, ACS, ss, class ss and modality gap per (task, domain)."""
    p = config.stage_params(STAGE, cfg["name"])
    batch_size = config.check_type("batch_size", p["batch_size"], int, positive=True)
    num_workers = config.check_type("num_workers", p["num_workers"], int, nonneg=True)
    source = source_for(cfg)
    source.check()
    bundle = base_model(cfg)
    df = zero_shot_table(bundle, source, cfg["name"], batch_size, num_workers, progress)
    prov = provenance.collect(cfg, model_state=df.attrs.get("model_state"), model=cfg["model"], stage=STAGE)
    write_csv(df, paths.product(cfg["name"], paths.ZERO_SHOT_CSV), prov)
    return df
