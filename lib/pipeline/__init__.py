"""Orchestration: stages, grid, aggregation, publishing."""
