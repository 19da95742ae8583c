"""Volatility-regime and time-of-day features of a candle: causal and scale-free (pure: no I/O).

The reversal label asks whether price moves ``0.75·σ·√10`` against the prior trend within 10
candles, with σ the 100-candle volatility of log returns. Whether that happens depends mostly on
whether volatility is about to rise relative to σ, so these features describe the volatility
regime (short against long realised volatility, bar ranges, volume) and the time of day (5-minute
volatility follows the trading sessions). Walk-forward evidence is in docs/ml.md.

``r`` is the 1-candle log return ``log(c_t / c_{t-1})``; ``sd(x, n)`` the sample standard
deviation (ddof 1) of the last ``n`` values ending at ``t``; ``σ = sd(r, 100)`` (the label's σ).

=================  ===================================================================  =======
feature            definition                                                           history
=================  ===================================================================  =======
``rv_ratio_12``    sd(r, 12) / σ                                                        101
``rv_ratio_288``   σ / sd(r, 288)  (the last 100 candles against the last day)          289
``hl_ratio_12``    mean(hl, 12) / mean(hl, 100), hl = (high - low) / close              100
``log_sigma``      log σ                                                                101
``z_ret20``        log(c_t / c_{t-20}) / (σ·√20): the prior trend in units of σ         101
``z_ret3``         log(c_t / c_{t-3}) / (σ·√3)                                          101
``er20``           |c_t - c_{t-20}| / Σ |c_i - c_{i-1}| over the last 20 moves           21
                   (efficiency ratio; 0 when price did not move)
``vlm_ratio_288``  log(mean(v, 12) / mean(v, 288)), each mean plus a tiny epsilon so a   288
                   stretch without volume gives 0
``tod_sin/cos``    sin / cos of 2π·m / 1440, m = UTC minute of day of the candle's open  1
=================  ===================================================================  =======

Every window is a plain rolling window (no exponential average), so the newest row from
``REGIME_HISTORY`` candles equals the full-history batch value up to float rounding.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numba import njit
from numpy.typing import ArrayLike

REGIME_NAMES: tuple[str, ...] = (
    "rv_ratio_12",
    "rv_ratio_288",
    "hl_ratio_12",
    "log_sigma",
    "z_ret20",
    "z_ret3",
    "er20",
    "vlm_ratio_288",
    "tod_sin",
    "tod_cos",
)

#: Candles needed for the newest row (288 returns need 289 closes).
REGIME_HISTORY: int = 289

_RADIANS_PER_MINUTE = 2.0 * math.pi / 1440.0


def _log_volume_ratio(short: np.ndarray | float, long: np.ndarray | float) -> np.ndarray | float:
    eps = 1e-12 * long + 1e-300
    return np.log((short + eps) / (long + eps))


def _minute_of_day(ts: pd.Series) -> np.ndarray:
    stamps = pd.to_datetime(ts, utc=True)
    return (stamps.dt.hour * 60 + stamps.dt.minute).to_numpy(dtype="float64")


def regime_features(candles: pd.DataFrame) -> pd.DataFrame:
    """``ts`` + :data:`REGIME_NAMES` for one symbol's candles (ascending ``ts``); the first
    ``REGIME_HISTORY - 1`` rows are NaN."""
    close = candles["close"].to_numpy(dtype="float64")
    high = candles["high"].to_numpy(dtype="float64")
    low = candles["low"].to_numpy(dtype="float64")
    volume = pd.Series(candles["volume"].to_numpy(dtype="float64"))
    n = len(close)
    log_close = np.log(close)
    r = pd.Series(np.diff(log_close, prepend=np.nan))
    sd12 = r.rolling(12, min_periods=12).std(ddof=1).to_numpy()
    sigma = r.rolling(100, min_periods=100).std(ddof=1).to_numpy()
    sd288 = r.rolling(288, min_periods=288).std(ddof=1).to_numpy()
    hl = pd.Series((high - low) / close)
    hl12 = hl.rolling(12, min_periods=12).mean().to_numpy()
    hl100 = hl.rolling(100, min_periods=100).mean().to_numpy()
    v12 = volume.rolling(12, min_periods=12).mean().to_numpy()
    v288 = volume.rolling(288, min_periods=288).mean().to_numpy()
    move20 = np.full(n, np.nan)
    move20[20:] = log_close[20:] - log_close[:-20]
    move3 = np.full(n, np.nan)
    move3[3:] = log_close[3:] - log_close[:-3]
    path20 = pd.Series(np.abs(np.diff(close, prepend=np.nan))).rolling(20, min_periods=20).sum().to_numpy()
    net20 = np.full(n, np.nan)
    net20[20:] = np.abs(close[20:] - close[:-20])
    minute = _minute_of_day(candles["ts"])
    with np.errstate(divide="ignore", invalid="ignore"):
        efficiency = np.where(path20 > 0, net20 / path20, 0.0)
        efficiency[np.isnan(path20)] = np.nan
        out = pd.DataFrame(
            {
                "ts": candles["ts"].to_numpy(),
                "rv_ratio_12": sd12 / sigma,
                "rv_ratio_288": sigma / sd288,
                "hl_ratio_12": hl12 / hl100,
                "log_sigma": np.log(sigma),
                "z_ret20": move20 / (sigma * math.sqrt(20.0)),
                "z_ret3": move3 / (sigma * math.sqrt(3.0)),
                "er20": efficiency,
                "vlm_ratio_288": _log_volume_ratio(v12, v288),
                "tod_sin": np.sin(_RADIANS_PER_MINUTE * minute),
                "tod_cos": np.cos(_RADIANS_PER_MINUTE * minute),
            }
        )
    out.iloc[: REGIME_HISTORY - 1, 1:] = np.nan
    return out


@njit(cache=True, error_model="numpy")
def _sd(x: np.ndarray, start: int, stop: int) -> float:
    """Sample standard deviation (ddof 1) of ``x[start:stop]``."""
    total = 0.0
    for i in range(start, stop):
        total += x[i]
    mean = total / (stop - start)
    ss = 0.0
    for i in range(start, stop):
        d = x[i] - mean
        ss += d * d
    return math.sqrt(ss / (stop - start - 1))


@njit(cache=True, error_model="numpy")
def _newest_kernel(x: np.ndarray, minute: int, out: np.ndarray) -> None:
    """:data:`REGIME_NAMES` of the newest row of ``x`` (the newest ``REGIME_HISTORY`` rows of
    open, high, low, close, volume) into ``out``; one compiled pass. Sums are plain (not numpy's
    pairwise), which moves only the last bits."""
    k = x.shape[0]
    lc = np.empty(k)
    for i in range(k):
        lc[i] = math.log(x[i, 3])
    r = np.empty(k - 1)
    for i in range(k - 1):
        r[i] = lc[i + 1] - lc[i]
    m = k - 1
    sigma = _sd(r, m - 100, m)
    hl12 = 0.0
    hl100 = 0.0
    for i in range(k - 100, k):
        hl = (x[i, 1] - x[i, 2]) / x[i, 3]
        hl100 += hl
        if i >= k - 12:
            hl12 += hl
    path20 = 0.0
    for i in range(k - 20, k):
        path20 += abs(x[i, 3] - x[i - 1, 3])
    v12 = 0.0
    v288 = 0.0
    for i in range(1, k):
        v288 += x[i, 4]
        if i >= k - 12:
            v12 += x[i, 4]
    v12 = v12 / 12.0
    v288 = v288 / 288.0
    eps = 1e-12 * v288 + 1e-300
    angle = _RADIANS_PER_MINUTE * minute
    out[0] = _sd(r, m - 12, m) / sigma
    out[1] = sigma / _sd(r, 0, m)
    out[2] = (hl12 / 12.0) / (hl100 / 100.0)
    out[3] = math.log(sigma) if sigma > 0 else -math.inf
    out[4] = (lc[k - 1] - lc[k - 21]) / (sigma * math.sqrt(20.0))
    out[5] = (lc[k - 1] - lc[k - 4]) / (sigma * math.sqrt(3.0))
    out[6] = abs(x[k - 1, 3] - x[k - 21, 3]) / path20 if path20 > 0 else 0.0
    out[7] = math.log((v12 + eps) / (v288 + eps))
    out[8] = math.sin(angle)
    out[9] = math.cos(angle)


def newest_row(ohlcv: np.ndarray, newest_open_ms: int) -> np.ndarray:
    """:data:`REGIME_NAMES` of the newest candle, in that order, from an ``(n, 5)`` float64 array
    of open, high, low, close, volume (at least ``REGIME_HISTORY`` rows; the newest are read) and
    the candle's open time in epoch milliseconds (UTC). Unchecked: values may be non-finite."""
    if ohlcv.shape[0] < REGIME_HISTORY:
        raise ValueError(f"need {REGIME_HISTORY} candles for the regime features, got {ohlcv.shape[0]}")
    x = np.ascontiguousarray(ohlcv[-REGIME_HISTORY:], dtype=np.float64)
    if not x.flags.writeable:  # one compiled version of the kernel: C-contiguous and writable
        x = x.copy()
    out = np.empty(len(REGIME_NAMES))
    _newest_kernel(x, (int(newest_open_ms) // 60_000) % 1440, out)
    return out


def latest_regime_features(
    high: ArrayLike, low: ArrayLike, close: ArrayLike, volume: ArrayLike, newest_open_ms: int
) -> dict[str, float]:
    """:data:`REGIME_NAMES` of the newest candle from 1-D columns (oldest first, at least
    ``REGIME_HISTORY`` values; only the newest ``REGIME_HISTORY`` are read) and the newest
    candle's open time in epoch milliseconds (UTC)."""
    k = REGIME_HISTORY
    cols = [np.asarray(c, dtype=np.float64)[-k:] for c in (close, high, low, close, volume)]
    if cols[0].shape[0] < k:
        raise ValueError(f"need {k} candles for the regime features, got {cols[0].shape[0]}")
    values = newest_row(np.column_stack(cols), newest_open_ms)  # the open column is not read
    return dict(zip(REGIME_NAMES, values.tolist(), strict=True))
