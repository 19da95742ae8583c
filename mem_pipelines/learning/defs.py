"""Dagster definitions of the learning domain: the memory store resource, the learned-strategies
and parameter-memory assets with the sensors that keep them current."""
from __future__ import annotations

import dagster as dg

from mem_pipelines.learning.assets import learned_strategies, parameter_memory
from mem_pipelines.learning.resources import MemoryStoreResource
from mem_pipelines.learning.sensors import (
    learned_strategies_job,
    parameter_memory_job,
    pattern_discovery_sensor,
    performance_monitor_sensor,
)

ASSETS = [learned_strategies, parameter_memory]
JOBS = [learned_strategies_job, parameter_memory_job]
SENSORS = [pattern_discovery_sensor, performance_monitor_sensor]


def learning_resources() -> dict[str, object]:
    return {"memory_store": MemoryStoreResource()}


def learning_defs(resources: dict[str, object] | None = None) -> dg.Definitions:
    """``resources`` override or add to the learning resources (tests pass a tmp memory store)."""
    return dg.Definitions(
        assets=ASSETS,
        jobs=JOBS,
        sensors=SENSORS,
        resources={**learning_resources(), **(resources or {})},
    )
