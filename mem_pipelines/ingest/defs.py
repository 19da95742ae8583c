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
from mem_pipelines.settings import DEFAULT_MAX_GAP_RATIO, DEFAULT_MAX_LAG_MINUTES, FreshnessSettings


def ingest_defs(
    symbols: Sequence[str],
    max_gap_ratio: float = DEFAULT_MAX_GAP_RATIO,
    max_lag_minutes: float = DEFAULT_MAX_LAG_MINUTES,
    *,
    freshness: FreshnessSettings | None = None,
) -> dg.Definitions:
    """``candles`` partitioned by ``symbols`` (fed by the landing folder); its gap check fails at
    ``max_gap_ratio``; its freshness checks (``freshness``, default: ``max_lag_minutes`` and no live
    feed) fail when the newest candle is older than the lag and a live feed is configured, and
    only warn with the candle's age on historical data."""
    fresh = freshness or FreshnessSettings(max_lag_minutes=max_lag_minutes)
    partitions = candles_partitions(symbols)
    kline_files = build_landing_asset(partitions)
    candles = build_candles_asset(partitions, deps=[kline_files])
    checks = build_freshness_checks(symbols, fresh.max_lag_minutes, live=fresh.live)
    landing_job = build_landing_job(kline_files, candles, partitions)
    freshness_job = build_freshness_job(checks)
    return dg.Definitions(
        assets=[kline_files, candles],
        asset_checks=[build_candle_checks(partitions, max_gap_ratio), checks],
        sensors=[build_landing_sensor(landing_job, symbols)],
        schedules=[build_freshness_schedule(freshness_job, live=fresh.live)],
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
