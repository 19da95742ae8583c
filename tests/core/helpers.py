"""Candle frames for the ML tests: the shared real candles, or a seeded random walk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def load_shared(folder: Path, symbol: str, rows: int | None = None) -> pd.DataFrame:
    """A candle frame (CONTRACTS) from ../shared/data/candles/SYMBOL-5m.csv.gz."""
    raw = pd.read_csv(folder / f"{symbol}-5m.csv.gz")
    if rows is not None:
        raw = raw.iloc[:rows]
    frame = pd.DataFrame({"ts": pd.to_datetime(raw["open_time"], unit="ms", utc=True)})
    for col in ("open", "high", "low", "close", "volume"):
        frame[col] = raw[col].astype("float64")
    return frame.sort_values("ts").drop_duplicates("ts").reset_index(drop=True)


def random_candles(n: int, seed: int = 0, start: str = "2025-01-01") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, n)))
    open_ = np.r_[close[0], close[:-1]]
    spread = np.abs(rng.normal(0.0, 0.001, n)) * close
    return pd.DataFrame(
        {
            "ts": pd.date_range(start, periods=n, freq="5min", tz="UTC"),
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.gamma(2.0, 50.0, n),
        }
    )
