"""Dagster definitions of the replay domain: the replay report asset. Its resources (the memory
store, QuestDB, MLflow) are bound in ``mem_pipelines.definitions``."""

from __future__ import annotations

import dagster as dg

from mem_pipelines.replay.assets import replay_report

ASSETS = [replay_report]


def replay_defs() -> dg.Definitions:
    return dg.Definitions(assets=ASSETS)
