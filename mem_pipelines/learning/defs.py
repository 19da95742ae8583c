"""Dagster definitions of the learning domain: the learned-strategies and parameter-memory assets
with the sensors that keep them current. Its resources (the memory store among them) are bound in
``mem_pipelines.definitions``."""

from __future__ import annotations

import dagster as dg

from mem_pipelines.learning.assets import learned_strategies, parameter_memory
from mem_pipelines.learning.sensors import (
    learned_strategies_job,
    parameter_memory_job,
    pattern_discovery_sensor,
    performance_monitor_sensor,
)

ASSETS = [learned_strategies, parameter_memory]
JOBS = [learned_strategies_job, parameter_memory_job]
SENSORS = [pattern_discovery_sensor, performance_monitor_sensor]


def learning_defs() -> dg.Definitions:
    return dg.Definitions(assets=ASSETS, jobs=JOBS, sensors=SENSORS)
