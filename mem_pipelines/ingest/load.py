"""Ingest entry points used by the CLI, the main job and tests: parse + validate everything, then write.

Every file of a call is parsed and validated before the first row is written, so a bad file
refuses the whole call and leaves the table as it was. Writes are idempotent (DEDUP UPSERT
KEYS(ts, symbol)): ingesting the same candles again changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from mem_core.questdb.store import write_candles
from mem_core.settings import QuestDBSettings
from mem_pipelines.ingest.csv_source import read_kline_csv
from mem_pipelines.ingest.synthetic import synthetic_candles
from mem_pipelines.ingest.validation import (
    DEFAULT_INTERVAL,
    IngestError,
    checked_days,
    checked_symbol,
    validate_candles,
)


@dataclass(frozen=True)
class IngestResult:
    """What one source contributed."""

    source: str
    symbol: str
    rows: int
    first: pd.Timestamp
    last: pd.Timestamp


def ingest_csv_files(
    settings: QuestDBSettings,
    paths: Iterable[str | Path],
    interval: str = DEFAULT_INTERVAL,
    symbol: str | None = None,
) -> list[IngestResult]:
    """Parse and validate every file, then write them; raise IngestError (nothing written) on bad input.

    ``symbol`` (for every file) or else each file's Binance-style name gives the symbol; either
    must meet the symbol rule (``validation.checked_symbol``)."""
    paths = [Path(p) for p in paths]
    if symbol is not None:
        symbol = checked_symbol(symbol)
    if not paths:
        raise IngestError("no files given")
    files = [read_kline_csv(p, interval=interval, symbol=symbol) for p in paths]
    results = []
    for f in files:
        write_candles(settings, f.frame)
        results.append(IngestResult(str(f.path), f.symbol, f.rows, f.frame["ts"].iloc[0], f.frame["ts"].iloc[-1]))
    return results


def ingest_synthetic(
    settings: QuestDBSettings,
    symbols: Sequence[str],
    days: float,
    seed: int,
    end: datetime | pd.Timestamp | str,
    interval: str = DEFAULT_INTERVAL,
) -> list[IngestResult]:
    """Generate seeded synthetic candles for ``symbols`` and write them (validated like a file);
    ``IngestError`` for a bad symbol or ``days`` (``validation.checked_days``)."""
    symbols = [checked_symbol(s) for s in symbols]
    frame = synthetic_candles(symbols, checked_days(days), seed, end, interval)
    groups = [(sym, g.reset_index(drop=True)) for sym, g in frame.groupby("symbol", sort=False)]
    for sym, g in groups:
        validate_candles(g, f"synthetic:{sym}", interval=interval)
    write_candles(settings, frame)
    return [IngestResult(f"synthetic:{sym}", sym, len(g), g["ts"].iloc[0], g["ts"].iloc[-1]) for sym, g in groups]
