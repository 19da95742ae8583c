"""Helpers for the replay tests: slices of the shared real candles read straight from the CSVs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest


def read_shared_csv(folder: Path, symbol: str, start: str | None = None, end: str | None = None) -> pd.DataFrame:
    """A candle frame (docs/CONTRACTS.md) of one shared Binance kline CSV, half-open [start, end)."""
    raw = pd.read_csv(folder / f"{symbol}-5m.csv.gz")
    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime(raw["open_time"], unit="ms", utc=True),
            **{c: raw[c].astype("float64") for c in ("open", "high", "low", "close", "volume")},
        }
    )
    if start is not None:
        frame = frame[frame["ts"] >= pd.Timestamp(start, tz="UTC")]
    if end is not None:
        frame = frame[frame["ts"] < pd.Timestamp(end, tz="UTC")]
    return frame.reset_index(drop=True)


@pytest.fixture(scope="session")
def read_csv():
    """``read_csv(folder, symbol, start, end)`` -> candle frame of any folder of kline CSVs."""
    return read_shared_csv


@pytest.fixture(scope="session")
def shared_csv(shared_candles: Path):
    """``shared_csv(symbol, start, end)`` -> candle frame from the shared CSVs."""
    return lambda symbol, start=None, end=None: read_shared_csv(shared_candles, symbol, start, end)


@pytest.fixture(scope="session")
def btc_week(shared_candles: Path) -> pd.DataFrame:
    return read_shared_csv(shared_candles, "BTCUSDT", "2025-06-01", "2025-06-08")


@pytest.fixture(scope="session")
def eth_week(shared_candles: Path) -> pd.DataFrame:
    return read_shared_csv(shared_candles, "ETHUSDT", "2025-06-01", "2025-06-08")
