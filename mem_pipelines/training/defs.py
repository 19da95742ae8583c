"""Dagster definitions of the training domain (assets, checks, job, schedule, resources)."""
from __future__ import annotations

import os

import dagster as dg

from mem_pipelines.ingest.assets import candle_symbols, candles_partitions
from mem_pipelines.training.assets import (
    MlflowResource,
    TrainingFramesIOManager,
    build_symbol_assets,
    champion_gate,
    reversal_model,
    training_dataset,
)
from mem_pipelines.training.checks import CHECKS
from mem_pipelines.training.schedules import build_daily_schedule, build_train_and_gate_job


def training_resources() -> dict[str, object]:
    return {"mlflow": MlflowResource(), "training_frames": TrainingFramesIOManager()}


def training_defs(env: dict[str, str] | None = None, resources: dict[str, object] | None = None) -> dg.Definitions:
    """The training domain, partitioned by the same symbols as ``candles`` (MEM_SYMBOLS).

    ``resources`` override or add to the training resources (tests pass their own stores).
    """
    env = os.environ if env is None else env
    partitions = candles_partitions(candle_symbols(env))
    job = build_train_and_gate_job()
    return dg.Definitions(
        assets=[*build_symbol_assets(partitions), training_dataset, reversal_model, champion_gate],
        asset_checks=CHECKS,
        jobs=[job],
        schedules=[build_daily_schedule(job, partitions)],
        resources={**training_resources(), **(resources or {})},
    )
