"""Dagster definitions of the ingest domain: the ``candles`` asset, its quality checks, a job; the
landing folder's ``kline_files`` with its sensor and job; the per-symbol freshness checks with
their job and schedule."""
from __future__ import annotations

import os

import dagster as dg

from mem_pipelines.ingest.assets import build_candles_asset, candle_symbols, candles_partitions
from mem_pipelines.ingest.checks import build_candle_checks
from mem_pipelines.ingest.freshness import build_freshness_checks, build_freshness_job, build_freshness_schedule
from mem_pipelines.ingest.landing_assets import LandingResource, build_landing_asset
from mem_pipelines.ingest.quality import DEFAULT_MAX_GAP_RATIO
from mem_pipelines.ingest.sensors import build_landing_job, build_landing_sensor
from mem_pipelines.settings import FreshnessSettings, LandingSettings


def ingest_defs(env: dict[str, str] | None = None, resources: dict[str, object] | None = None) -> dg.Definitions:
    """``resources`` override or add to the ingest resources (tests pass a tmp landing folder)."""
    env = os.environ if env is None else env
    symbols = candle_symbols(env)
    partitions = candles_partitions(symbols)
    max_gap_ratio = float(env.get("MEM_MAX_GAP_RATIO", DEFAULT_MAX_GAP_RATIO))
    kline_files = build_landing_asset(partitions)
    candles = build_candles_asset(partitions, deps=[kline_files])
    freshness = build_freshness_checks(symbols, FreshnessSettings.from_env(env).max_lag_minutes)
    landing_job = build_landing_job(kline_files, candles, partitions)
    freshness_job = build_freshness_job(freshness)
    return dg.Definitions(
        assets=[kline_files, candles],
        asset_checks=[build_candle_checks(partitions, max_gap_ratio), freshness],
        sensors=[build_landing_sensor(landing_job, symbols)],
        schedules=[build_freshness_schedule(freshness_job)],
        resources={"landing": LandingResource.from_settings(LandingSettings.from_env(env)), **(resources or {})},
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
