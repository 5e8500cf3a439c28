"""Quantified task misalignment and PEFT in CLIP: the library (data, world, models, methods,
training, metrics, evaluation, plots); ``lib.pipeline`` orchestrates the study.

Importing ``lib`` first pins the math libraries' CPU kernels to their AVX2 paths
(:mod:`lib.determinism`), so results are the same bytes on any x86-64 machine with AVX2. The pins
only take effect before torch is imported; the Makefile also exports them to every process.
``CLIPMIS_NO_ISA_PINS=1`` turns them off.
"""
import sys as _sys

from . import determinism as _determinism

if "torch" not in _sys.modules:
    _determinism.apply()
