"""Dagster definitions of the ingest domain: the ``candles`` asset, its quality checks, a job."""
from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from mem_pipelines.ingest.assets import build_candles_asset, candles_partitions
from mem_pipelines.ingest.checks import build_candle_checks
from mem_pipelines.ingest.quality import DEFAULT_MAX_GAP_RATIO


def ingest_defs(symbols: Sequence[str], max_gap_ratio: float = DEFAULT_MAX_GAP_RATIO) -> dg.Definitions:
    """``candles`` partitioned by ``symbols``; its gap check fails at ``max_gap_ratio``."""
    partitions = candles_partitions(symbols)
    candles = build_candles_asset(partitions)
    return dg.Definitions(
        assets=[candles],
        asset_checks=[build_candle_checks(partitions, max_gap_ratio)],
        jobs=[
            dg.define_asset_job(
                "candles_job",
                selection=dg.AssetSelection.assets(candles),
                partitions_def=partitions,
                description="Read one symbol's candles from QuestDB and run their quality checks.",
            )
        ],
    )
