"""Dagster definitions of the training domain (assets, checks, job, schedule); its resources are
bound in ``mem_pipelines.definitions``."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from mem_pipelines.training.assets import build_symbol_assets, champion_gate, reversal_model, training_dataset
from mem_pipelines.training.checks import CHECKS
from mem_pipelines.training.schedules import build_daily_schedule, build_train_and_gate_job


def training_defs(symbols: Sequence[str]) -> dg.Definitions:
    """The training domain over every one of ``symbols`` (the partitions of ``candles``)."""
    job = build_train_and_gate_job()
    return dg.Definitions(
        assets=[*build_symbol_assets(symbols), training_dataset, reversal_model, champion_gate],
        asset_checks=CHECKS,
        jobs=[job],
        schedules=[build_daily_schedule(job)],
    )
