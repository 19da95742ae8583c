"""Dagster definitions of the training domain (assets, checks, jobs, schedules, resources)."""
from __future__ import annotations

import dagster as dg

from mem_pipelines.training.assets import (
    MlflowResource,
    TrainingFramesIOManager,
    champion_gate,
    features,
    labels,
    reversal_model,
    training_dataset,
)
from mem_pipelines.training.checks import CHECKS
from mem_pipelines.training.schedules import daily_retrain, train_and_gate_job

ASSETS = [features, labels, training_dataset, reversal_model, champion_gate]


def training_resources() -> dict[str, object]:
    return {"mlflow": MlflowResource(), "training_frames": TrainingFramesIOManager()}


def training_defs(resources: dict[str, object] | None = None) -> dg.Definitions:
    """``resources`` override or add to the training resources (tests pass their own stores)."""
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        jobs=[train_and_gate_job],
        schedules=[daily_retrain],
        resources={**training_resources(), **(resources or {})},
    )
