"""The symbol partitions and QuestDB access shared with the ingest domain.

Kept in one place so the training assets use exactly the ``candles`` asset's partitions.
"""
from __future__ import annotations

from typing import Any

import dagster as dg

from mem_pipelines.settings import QuestDBSettings

SYMBOL_PARTITIONS = dg.StaticPartitionsDefinition(
    ["ADAUSDT", "BCHUSDT", "BTCUSDT", "DOGEUSDT", "ETHUSDT", "LTCUSDT", "SOLUSDT"]
)


def questdb_settings(resource: Any) -> QuestDBSettings:
    if isinstance(resource, QuestDBSettings):
        return resource
    return resource.settings()
