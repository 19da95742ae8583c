"""Dagster definitions of the ingest domain: the ``candles`` asset, its quality checks, a job."""
from __future__ import annotations

import os

import dagster as dg

from mem_pipelines.ingest.assets import build_candles_asset, candle_symbols, candles_partitions
from mem_pipelines.ingest.checks import build_candle_checks
from mem_pipelines.ingest.quality import DEFAULT_MAX_GAP_RATIO


def ingest_defs(env: dict[str, str] | None = None) -> dg.Definitions:
    env = os.environ if env is None else env
    partitions = candles_partitions(candle_symbols(env))
    max_gap_ratio = float(env.get("MEM_MAX_GAP_RATIO", DEFAULT_MAX_GAP_RATIO))
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
