"""Dagster definitions of the learning domain: the learned-strategies and parameter-memory assets
with the sensors that keep them current. Its resources (the memory store among them) are bound in
``mem_pipelines.definitions``.

Two things the learning loop reads are not made by Dagster: the model ``mem serve`` answers with
(the registry's ``@champion``, set by ``champion_gate``) and the memory store the server writes
every decision and outcome to. They are external assets (``dg.AssetSpec``), so the lineage reads
champion_gate -> served_model -> memory_store -> learned_strategies, parameter_memory,
replay_report."""

from __future__ import annotations

import dagster as dg

from mem_pipelines.learning.assets import learned_strategies, parameter_memory
from mem_pipelines.learning.sensors import (
    learned_strategies_job,
    parameter_memory_job,
    pattern_discovery_sensor,
    performance_monitor_sensor,
)

SERVED_MODEL = dg.AssetSpec(
    "served_model",
    deps=["champion_gate"],
    group_name="learning",
    kinds={"grpc", "mlflow"},
    description=(
        "The model `mem serve` answers with: the registry's mem-reversal@champion, picked up without a restart "
        "when champion_gate moves the alias (not materialized by Dagster)."
    ),
)
MEMORY_STORE = dg.AssetSpec(
    "memory_store",
    deps=[SERVED_MODEL],
    group_name="learning",
    kinds={"sqlite"},
    description=(
        "The memory store (SQLite, WAL): every decision `mem serve` makes with the served model and every outcome "
        "the engine reports; written by the server, read by the sensors below (not materialized by Dagster)."
    ),
)
ASSETS = [
    SERVED_MODEL,
    MEMORY_STORE,
    learned_strategies,
    parameter_memory,
]
JOBS = [learned_strategies_job, parameter_memory_job]
SENSORS = [pattern_discovery_sensor, performance_monitor_sensor]


def learning_defs() -> dg.Definitions:
    return dg.Definitions(assets=ASSETS, jobs=JOBS, sensors=SENSORS)
