"""Synthetic candles: a seeded regime-switching random walk with plausible OHLC and volume.

Pure: the same (symbols, days, seed, end, interval) always gives the same frame; no clock, no I/O.

Regimes follow a Markov chain over segments (each lasts a geometric number of candles, then the
next regime is drawn from the transition row):

==========  ==============================  ==========================
regime      log return per 5 minutes        mean length
==========  ==============================  ==========================
trend_up    drift +0.025 %, vol 0.12 %      8 h
trend_down  drift -0.025 %, vol 0.14 %      6 h
choppy      no drift, vol 0.08 %, MA(1)     10 h
            with theta -0.6 (mean-reverting)
volatile    no drift, vol 0.35 %, fat tails 2 h
==========  ==============================  ==========================

Volatility and volume follow an intraday (UTC) seasonality peaking around the US open
(14:00-16:00 UTC) and lowest around 03:00-06:00 UTC. Volume is lognormal around a symbol base,
scaled by that seasonality and rising with the candle's absolute return. Wicks extend beyond
open/close by half-normal amounts scaled to the candle's volatility, so OHLC is always consistent.
Other intervals scale drift and volatility by sqrt/linear time.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd

from mem_core.times import utc_timestamp
from mem_pipelines.ingest.validation import DEFAULT_INTERVAL, interval_seconds

REGIMES = ("trend_up", "trend_down", "choppy", "volatile")
# (drift, vol) per 5-minute candle, mean segment length in hours
_PARAMS = {
    "trend_up": (0.00025, 0.0012, 8.0),
    "trend_down": (-0.00025, 0.0014, 6.0),
    "choppy": (0.0, 0.0008, 10.0),
    "volatile": (0.0, 0.0035, 2.0),
}
# Row: from regime; columns: to regime (no self-transitions: a segment ends by switching).
_TRANSITIONS = np.array(
    [
        [0.0, 0.25, 0.55, 0.20],
        [0.30, 0.0, 0.45, 0.25],
        [0.40, 0.35, 0.0, 0.25],
        [0.30, 0.35, 0.35, 0.0],
    ]
)
_START_PRICE = {"BTCUSDT": 60_000.0, "ETHUSDT": 3_000.0, "BNBUSDT": 550.0, "XRPUSDT": 0.55, "SOLUSDT": 150.0}
_BASE_VOLUME = {"BTCUSDT": 80.0, "ETHUSDT": 900.0, "BNBUSDT": 1_500.0, "XRPUSDT": 900_000.0, "SOLUSDT": 6_000.0}


def _symbol_rng(seed: int, symbol: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(symbol.encode())])


def _regime_path(rng: np.random.Generator, n: int, step_s: int) -> np.ndarray:
    regimes = np.empty(n, dtype=np.int8)
    pos, state = 0, int(rng.integers(len(REGIMES)))
    while pos < n:
        mean_len = max(1.0, _PARAMS[REGIMES[state]][2] * 3600 / step_s)
        length = int(rng.geometric(1.0 / mean_len))
        regimes[pos : pos + length] = state
        pos += length
        state = int(rng.choice(len(REGIMES), p=_TRANSITIONS[state]))
    return regimes


def _seasonality(ts: pd.DatetimeIndex) -> np.ndarray:
    hour = ts.hour.to_numpy() + ts.minute.to_numpy() / 60.0
    us_open = np.exp(-0.5 * ((hour - 15.0) / 2.0) ** 2)  # peak around 15:00 UTC
    asia = 0.35 * np.exp(-0.5 * ((hour - 1.5) / 1.5) ** 2)  # a smaller one at the Asian open
    quiet = -0.25 * np.exp(-0.5 * ((hour - 4.5) / 1.5) ** 2)
    return 0.8 + 0.6 * us_open + asia + quiet


def synthetic_symbol(
    symbol: str, days: float, seed: int, end: datetime | pd.Timestamp | str, interval: str = DEFAULT_INTERVAL
) -> pd.DataFrame:
    """Candles of one symbol: ``days`` worth on the interval grid, the last one closing at or before ``end``."""
    step_s = interval_seconds(interval)
    n = int(round(days * 86_400 / step_s))
    if n <= 0:
        raise ValueError(f"days must give at least one candle, got {days}")
    end_ts = utc_timestamp(end)
    last_open = end_ts.floor(f"{step_s}s") - pd.Timedelta(seconds=step_s)
    ts = pd.date_range(end=last_open, periods=n, freq=f"{step_s}s").as_unit("us")

    rng = _symbol_rng(seed, symbol)
    scale = step_s / 300.0
    regimes = _regime_path(rng, n, step_s)
    drift = np.array([_PARAMS[r][0] for r in REGIMES])[regimes] * scale
    vol = np.array([_PARAMS[r][1] for r in REGIMES])[regimes] * np.sqrt(scale)
    season = _seasonality(ts)
    vol = vol * np.sqrt(season)

    shocks = rng.standard_normal(n)
    volatile = regimes == REGIMES.index("volatile")
    shocks[volatile] = rng.standard_t(4, size=int(volatile.sum())) / np.sqrt(2.0)  # unit variance, fat tails
    eps = shocks * vol
    choppy = regimes == REGIMES.index("choppy")
    prev = np.concatenate([[0.0], eps[:-1]])
    returns = drift + np.where(choppy, eps - 0.6 * prev, eps)

    start = _START_PRICE.get(symbol, 10.0 + (zlib.crc32(symbol.encode()) % 990))
    close = start * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[start], close[:-1]])
    wick = vol * 0.6
    high = np.maximum(open_, close) * np.exp(np.abs(rng.standard_normal(n)) * wick)
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.standard_normal(n)) * wick)

    base = _BASE_VOLUME.get(symbol, 1_000.0) * scale
    activity = 1.0 + 1.5 * np.abs(returns - drift) / np.maximum(vol, 1e-12)
    volume = base * season * activity * rng.lognormal(mean=-0.08, sigma=0.4, size=n)

    return pd.DataFrame(
        {
            "ts": pd.Series(ts).dt.tz_convert("UTC") if ts.tz is not None else pd.Series(ts).dt.tz_localize("UTC"),
            "symbol": symbol,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "regime": np.asarray(REGIMES, dtype=object)[regimes],
        }
    )


def synthetic_candles(
    symbols: Sequence[str],
    days: float,
    seed: int,
    end: datetime | pd.Timestamp | str,
    interval: str = DEFAULT_INTERVAL,
    with_regime: bool = False,
) -> pd.DataFrame:
    """Candles for several symbols (a ``symbol`` column), each series independent but seeded by (seed, symbol)."""
    if not symbols:
        raise ValueError("no symbols given")
    frames = [synthetic_symbol(s.upper(), days, seed, end, interval) for s in symbols]
    out = pd.concat(frames, ignore_index=True)
    return out if with_regime else out.drop(columns="regime")
