"""The ``candles`` asset: one partition per symbol, the window a run asks for, read from QuestDB.

The body is thin: :func:`load_window` (plain Python, tested without Dagster) resolves the window
and reads it; the asset records rows, first/last time, gaps and a preview as metadata.
"""

from collections.abc import Sequence

import dagster as dg
import pandas as pd
from pydantic import Field

from mem_core.questdb.store import read_candles, read_latest
from mem_core.settings import QuestDBSettings
from mem_pipelines.ingest.quality import frame_markdown, gap_stats
from mem_pipelines.resources import QuestDBResource

INTERVAL_SECONDS = 300


def candles_partitions(symbols: Sequence[str]) -> dg.StaticPartitionsDefinition:
    """Partitions by symbol; other domains partitioned like ``candles`` should use this too."""
    return dg.StaticPartitionsDefinition(list(symbols))


class CandlesWindow(dg.Config):
    """Which candles a run reads. Default: everything stored for the symbol."""

    start: str | None = Field(default=None, description="Inclusive start (ISO 8601, UTC if no zone).")
    end: str | None = Field(default=None, description="Exclusive end (ISO 8601, UTC if no zone).")
    last_days: float | None = Field(
        default=None, description="Only the last N days before the newest stored candle (instead of start)."
    )


def load_window(
    settings: QuestDBSettings,
    symbol: str,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    last_days: float | None = None,
) -> pd.DataFrame:
    """Read ``[start, end)`` of ``symbol``; with ``last_days``, start is that long before the newest candle."""
    if last_days is not None:
        if start is not None:
            raise ValueError("give either start or last_days, not both")
        if last_days <= 0:
            raise ValueError(f"last_days must be positive, got {last_days}")
        newest = read_latest(settings, symbol, 1)
        if newest.empty:
            return newest
        start = newest["ts"].iloc[0] + pd.Timedelta(seconds=INTERVAL_SECONDS) - pd.Timedelta(days=last_days)
    return read_candles(settings, symbol, start=start, end=end)


def candle_metadata(frame: pd.DataFrame, preview_rows: int = 10) -> dict[str, dg.MetadataValue]:
    missing, ratio = gap_stats(frame["ts"], INTERVAL_SECONDS)
    meta: dict[str, dg.MetadataValue] = {
        "rows": dg.MetadataValue.int(len(frame)),
        "gap_count": dg.MetadataValue.int(missing),
        "gap_ratio": dg.MetadataValue.float(float(ratio)),
        "preview": dg.MetadataValue.md(frame_markdown(frame.tail(preview_rows))),
    }
    if len(frame):
        meta["first_ts"] = dg.MetadataValue.text(frame["ts"].iloc[0].isoformat())
        meta["last_ts"] = dg.MetadataValue.text(frame["ts"].iloc[-1].isoformat())
    return meta


def build_candles_asset(
    partitions_def: dg.PartitionsDefinition, deps: Sequence[dg.AssetsDefinition] = ()
) -> dg.AssetsDefinition:
    @dg.asset(
        name="candles",
        partitions_def=partitions_def,
        deps=list(deps),
        group_name="ingest",
        kinds={"questdb", "pandas"},
        description="5-minute OHLCV candles of one symbol read from QuestDB (ts UTC, ascending, unique).",
    )
    def candles(
        context: dg.AssetExecutionContext, config: CandlesWindow, questdb: QuestDBResource
    ) -> dg.Output[pd.DataFrame]:
        symbol = context.partition_key
        frame = load_window(questdb.settings(), symbol, config.start, config.end, config.last_days)
        if frame.empty:
            context.log.warning(f"no candles stored for {symbol} in the requested window; run `mem ingest` first")
        return dg.Output(frame, metadata=candle_metadata(frame))

    return candles
