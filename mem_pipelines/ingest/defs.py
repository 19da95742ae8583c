"""Dagster definitions of the ingest domain: the ``candles`` asset, its quality checks, a job; the
landing folder's ``kline_files`` with its sensor and job; the per-symbol freshness checks with
their job and schedule."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from mem_pipelines.ingest.assets import build_candles_asset, candles_partitions
from mem_pipelines.ingest.checks import build_candle_checks
from mem_pipelines.ingest.freshness import build_freshness_checks, build_freshness_job, build_freshness_schedule
from mem_pipelines.ingest.landing_assets import build_landing_asset
from mem_pipelines.ingest.sensors import build_landing_job, build_landing_sensor
from mem_pipelines.settings import DEFAULT_MAX_GAP_RATIO, DEFAULT_MAX_LAG_MINUTES


def ingest_defs(
    symbols: Sequence[str],
    max_gap_ratio: float = DEFAULT_MAX_GAP_RATIO,
    max_lag_minutes: float = DEFAULT_MAX_LAG_MINUTES,
) -> dg.Definitions:
    """``candles`` partitioned by ``symbols`` (fed by the landing folder); its gap check fails at
    ``max_gap_ratio``, its freshness check when the newest candle is older than ``max_lag_minutes``."""
    partitions = candles_partitions(symbols)
    kline_files = build_landing_asset(partitions)
    candles = build_candles_asset(partitions, deps=[kline_files])
    freshness = build_freshness_checks(symbols, max_lag_minutes)
    landing_job = build_landing_job(kline_files, candles, partitions)
    freshness_job = build_freshness_job(freshness)
    return dg.Definitions(
        assets=[kline_files, candles],
        asset_checks=[build_candle_checks(partitions, max_gap_ratio), freshness],
        sensors=[build_landing_sensor(landing_job, symbols)],
        schedules=[build_freshness_schedule(freshness_job)],
        jobs=[
            dg.define_asset_job(
                "candles_job",
                selection=dg.AssetSelection.assets(candles),
                partitions_def=partitions,
                description="Read one symbol's candles from QuestDB and run their quality checks.",
            ),
            landing_job,
            freshness_job,
        ],
    )
