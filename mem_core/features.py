"""The 12 model features of a candle, computed with pandas-ta, scale-free (pure: no I/O).

Every feature of the row at time ``t`` uses only candles at or before ``t`` (no look-ahead; a
property test proves it). Price-level indicators are divided by the close, so one model serves
symbols that trade at 0.1 and at 100,000.

=================  ==========================================================================
feature            definition (pandas-ta where an indicator exists)
=================  ==========================================================================
``sma5``           close / SMA(close, 5) - 1
``sma20``          close / SMA(close, 20) - 1
``sma50``          close / SMA(close, 50) - 1
``rsi14``          RSI(close, 14), Wilder smoothing (RMA), 0..100
``macd``           MACD line EMA12 - EMA26, divided by close
``macd_signal``    EMA9 of the MACD line, divided by close
``macd_hist``      MACD line - signal, divided by close
``bb_position``    %B of Bollinger(20, 2σ): (close - lower) / (upper - lower)
``volume_ratio``   volume / mean(volume over the last 20 bars, this bar included); 1.0 when that
                   mean is 0
``hl_range``       (high - low) / close
``close_position`` (close - low) / (high - low); 0.5 when high == low
``oc_range``       (close - open) / open
=================  ==========================================================================

History. RSI and MACD are exponential averages seeded at the start of whatever history they are
given, so their value at a row depends (ever less) on how far back the history reaches. With
``SERVING_HISTORY`` candles the newest row agrees with a full-history computation to better than
1e-6 relative on the shared data (measured by ``bench``-style scan in ``docs/ml.md``; asserted by
tests/core/test_features.py). ``compute_features`` therefore drops the first
``SERVING_HISTORY - 1`` rows by default, so every training row is what serving would compute.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from numba import njit
from numpy.typing import ArrayLike

FEATURE_NAMES: tuple[str, ...] = (
    "sma5",
    "sma20",
    "sma50",
    "rsi14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_position",
    "volume_ratio",
    "hl_range",
    "close_position",
    "oc_range",
)

#: Fewest candles for which every feature is defined (SMA50 needs 50; MACD signal needs 34).
MIN_HISTORY: int = 50

#: Candles the real-time path should pass to ``latest_features`` so that the newest row equals
#: the full-history batch value to 1e-6 relative (RSI's RMA has alpha 1/14, MACD's slow EMA
#: alpha 2/27; their seed's influence decays like (13/14)^n). Measured on the shared candles:
#: see docs/ml.md ("SERVING_HISTORY").
SERVING_HISTORY: int = 400

_PRICE_COLUMNS = ("open", "high", "low", "close", "volume")


class InsufficientHistory(ValueError):
    """Too few candles to compute a feature; the caller must pass more history (serving answers
    INVALID_ARGUMENT / FAILED_PRECONDITION, the pipeline fails the partition)."""


def _validate(candles: pd.DataFrame) -> None:
    missing = [c for c in ("ts", *_PRICE_COLUMNS) if c not in candles.columns]
    if missing:
        raise ValueError(f"candles lack columns {missing}")
    if "symbol" in candles.columns and candles["symbol"].nunique() > 1:
        raise ValueError("compute features one symbol at a time")
    if not candles["ts"].is_monotonic_increasing or candles["ts"].duplicated().any():
        raise ValueError("candles must be sorted ascending by ts with unique timestamps")


def _feature_frame(candles: pd.DataFrame) -> pd.DataFrame:
    """All 12 features for every row (NaN during the structural warm-up)."""
    import pandas_ta as ta  # here, not at import: serving never needs it (its import costs ~0.2 s)

    if len(candles) < MIN_HISTORY:
        raise InsufficientHistory(f"need at least {MIN_HISTORY} candles, got {len(candles)}")
    close = candles["close"].astype("float64").reset_index(drop=True)
    open_ = candles["open"].astype("float64").reset_index(drop=True)
    high = candles["high"].astype("float64").reset_index(drop=True)
    low = candles["low"].astype("float64").reset_index(drop=True)
    volume = candles["volume"].astype("float64").reset_index(drop=True)

    sma5 = ta.sma(close, length=5)
    sma20 = ta.sma(close, length=20)
    sma50 = ta.sma(close, length=50)
    rsi = ta.rsi(close, length=14)
    macd = ta.macd(close, fast=12, slow=26, signal=9)
    # Bollinger: lower_std/upper_std (a ``std=`` argument is silently ignored by pandas-ta 0.4).
    bb = ta.bbands(close, length=20, lower_std=2.0, upper_std=2.0)
    for name, value in (("sma", sma50), ("rsi", rsi), ("macd", macd), ("bbands", bb)):
        if value is None:  # pandas-ta returns None instead of raising on short input
            raise InsufficientHistory(f"pandas-ta {name} returned nothing for {len(close)} candles")

    macd_line = macd["MACD_12_26_9"]
    macd_signal = macd["MACDs_12_26_9"]
    lower = bb[[c for c in bb.columns if c.startswith("BBL_")][0]]
    upper = bb[[c for c in bb.columns if c.startswith("BBU_")][0]]
    width = upper - lower
    # %B computed here rather than pandas-ta's BBP, which adds an epsilon to the whole series as
    # soon as one width is zero (a history-dependent quirk); a flat window sits mid-band (0.5).
    bbp = ((close - lower) / width.where(width > 0)).where(~(width <= 0), 0.5)
    # RSI is 0/0 after a long run of unchanged closes: neutral 50.
    rsi = rsi.where(rsi.notna() | (rsi.index < 14), 50.0)

    vol_mean = volume.rolling(20, min_periods=20).mean()
    volume_ratio = (volume / vol_mean.where(vol_mean > 0)).where(~(vol_mean == 0), 1.0)
    bar = high - low
    close_position = ((close - low) / bar.where(bar > 0)).where(bar > 0, 0.5)

    out = pd.DataFrame(
        {
            "ts": candles["ts"].to_numpy(),
            "sma5": close / sma5 - 1.0,
            "sma20": close / sma20 - 1.0,
            "sma50": close / sma50 - 1.0,
            "rsi14": rsi,
            "macd": macd_line / close,
            "macd_signal": macd_signal / close,
            "macd_hist": (macd_line - macd_signal) / close,
            "bb_position": bbp,
            "volume_ratio": volume_ratio,
            "hl_range": bar / close,
            "close_position": close_position,
            "oc_range": (close - open_) / open_,
        }
    )
    return out


def compute_features(candles: pd.DataFrame, warmup: int | None = None) -> pd.DataFrame:
    """``ts`` + FEATURE_NAMES for one symbol's candles, warm-up rows dropped.

    ``warmup`` rows are dropped from the start (default ``SERVING_HISTORY - 1``: every row kept
    has as much history as the serving path uses, so training and serving agree). Any row with a
    missing feature is dropped as well. Raises ``InsufficientHistory`` below ``MIN_HISTORY`` rows.
    """
    _validate(candles)
    warmup = SERVING_HISTORY - 1 if warmup is None else max(int(warmup), MIN_HISTORY - 1)
    frame = _feature_frame(candles).iloc[warmup:]
    frame = frame.dropna(subset=list(FEATURE_NAMES))
    return frame.reset_index(drop=True)


def latest_features(candles: pd.DataFrame) -> dict[str, float]:
    """Features of the newest candle from recent history (pass ``SERVING_HISTORY`` candles).

    The serving path: the same definitions as ``compute_features`` (the same pandas-ta
    recursions, seeded the same way) evaluated for the newest row only, in numpy, far cheaper than
    a pandas-ta pass over the whole history. tests/core/test_features.py proves it equals
    ``compute_features`` on real candles. Only the newest ``SERVING_HISTORY`` rows are used when
    more are given. Raises ``InsufficientHistory`` below ``MIN_HISTORY`` rows.

    A thin wrapper: the columns go to :func:`latest_features_arrays` (call that directly when the
    candles are already numpy columns; it skips the pandas indexing).
    """
    if len(candles) < MIN_HISTORY:
        raise InsufficientHistory(f"need at least {MIN_HISTORY} candles, got {len(candles)}")
    recent = candles.iloc[-SERVING_HISTORY:]
    return latest_features_arrays(*(recent[c].to_numpy(dtype="float64") for c in _PRICE_COLUMNS))


def latest_features_arrays(
    open: ArrayLike,  # noqa: A002 - named like the candle column
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
    volume: ArrayLike,
) -> dict[str, float]:
    """Features of the newest candle from one symbol's OHLCV columns, oldest first (no DataFrame).

    ``latest_features`` without pandas, for callers that hold candles as numpy columns (serving's
    candle block). The five columns
    are 1-D, of equal length, ascending in time, newest last; any array-like of floats works
    (strided views are not copied). Only the newest ``SERVING_HISTORY`` values are used, as in
    ``latest_features``, whose result this is bit for bit.

    Returns ``{name: float}`` in ``FEATURE_NAMES`` order. Raises ``InsufficientHistory`` (a
    ``ValueError``) below ``MIN_HISTORY`` candles or when a feature of the newest candle is not
    finite (NaN/inf input), and ``ValueError`` for columns of different lengths or not 1-D.
    """
    cols = [np.asarray(x, dtype=np.float64) for x in (open, high, low, close, volume)]
    if any(c.ndim != 1 for c in cols):
        raise ValueError(f"OHLCV columns must be 1-D, got shapes {[c.shape for c in cols]}")
    n = cols[0].shape[0]
    if any(c.shape[0] != n for c in cols):
        raise ValueError(f"OHLCV columns must have equal lengths, got {[c.shape[0] for c in cols]}")
    if n < MIN_HISTORY:
        raise InsufficientHistory(f"need at least {MIN_HISTORY} candles, got {n}")
    if n > SERVING_HISTORY:
        cols = [c[-SERVING_HISTORY:] for c in cols]
    return finite_values(FEATURE_NAMES, newest_row(np.column_stack(cols)))


def finite_values(names: tuple[str, ...], values: np.ndarray) -> dict[str, float]:
    """``{name: value}`` of the newest row; ``InsufficientHistory`` naming the features that are
    not finite (NaN/inf input, a zero price)."""
    floats = values.tolist()
    if not all(map(math.isfinite, floats)):
        bad = [k for k, v in zip(names, floats, strict=True) if not math.isfinite(v)]
        raise InsufficientHistory(f"features {bad} are undefined for the newest candle")
    return dict(zip(names, floats, strict=True))


def latest_features_reference(candles: pd.DataFrame) -> dict[str, float]:
    """The newest row through the pandas-ta batch code (slow; for parity checks)."""
    recent = candles.iloc[-SERVING_HISTORY:]
    _validate(recent)
    row = _feature_frame(recent).iloc[-1]
    return {name: float(row[name]) for name in FEATURE_NAMES}


@njit(cache=True, error_model="numpy")
def _last_row_kernel(x: np.ndarray, out: np.ndarray) -> None:
    """The 12 features of the newest row of ``x`` (rows of open, high, low, close, volume; at
    least ``MIN_HISTORY``) into ``out``, in ``FEATURE_NAMES`` order: one compiled pass instead of
    ~40 small numpy calls.

    The exponential averages are pandas' ``ewm(alpha, adjust=False).mean()`` as pandas-ta seeds
    them, each step in the order of ``scipy.signal.lfilter`` (direct form II transposed). Window
    means are plain sums, not numpy's pairwise ones: the last bits may differ from a numpy
    version, far inside the 1e-6 parity with the batch frame that the tests check."""
    n = x.shape[0]
    last = x[n - 1, 3]
    # RSI: Wilder's RMA (alpha 1/14) of gains and losses, seeded with the first move
    alpha = 1.0 / 14
    a1 = alpha - 1.0
    d = x[1, 3] - x[0, 3]
    pos = max(d, 0.0)
    neg = min(d, 0.0)
    s_pos = (1.0 - alpha) * pos
    s_neg = (1.0 - alpha) * neg
    for i in range(2, n):
        d = x[i, 3] - x[i - 1, 3]
        g = max(d, 0.0)
        loss = min(d, 0.0)
        pos = s_pos + alpha * g
        s_pos = g * 0.0 - pos * a1
        neg = s_neg + alpha * loss
        s_neg = loss * 0.0 - neg * a1
    rsi = 100.0 * pos / (pos + abs(neg)) if (pos + abs(neg)) > 0 else 50.0
    # MACD: EMA12 - EMA26 (each seeded with the SMA of its first values), signal = EMA9 of it
    e12 = _window_mean(x, 3, 0, 12)
    e26 = _window_mean(x, 3, 0, 26)
    a12 = 2.0 / 13
    a26 = 2.0 / 27
    s12 = (1.0 - a12) * e12
    s26 = (1.0 - a26) * e26
    macd_line = np.empty(n - 25)
    for i in range(12, n):
        xi = x[i, 3]
        e12 = s12 + a12 * xi
        s12 = xi * 0.0 - e12 * (a12 - 1.0)
        if i >= 26:
            e26 = s26 + a26 * xi
            s26 = xi * 0.0 - e26 * (a26 - 1.0)
        if i >= 25:
            macd_line[i - 25] = e12 - e26
    macd = macd_line[n - 26]
    signal = 0.0
    for i in range(9):
        signal += macd_line[i]
    signal = signal / 9
    a9 = 2.0 / 10
    s9 = (1.0 - a9) * signal
    for i in range(9, n - 25):
        mi = macd_line[i]
        signal = s9 + a9 * mi
        s9 = mi * 0.0 - signal * (a9 - 1.0)
    # Bollinger(20, 2 sigma), volume and the bar
    mid = _window_mean(x, 3, n - 20, n)
    ss = 0.0
    for i in range(n - 20, n):
        dev = x[i, 3] - mid
        ss += dev * dev
    std = math.sqrt(ss / 19)
    width = 4.0 * std
    vmean = _window_mean(x, 4, n - 20, n)
    high, low, opened, volume = x[n - 1, 1], x[n - 1, 2], x[n - 1, 0], x[n - 1, 4]
    bar = high - low
    out[0] = last / _window_mean(x, 3, n - 5, n) - 1.0
    out[1] = last / mid - 1.0
    out[2] = last / _window_mean(x, 3, n - 50, n) - 1.0
    out[3] = rsi
    out[4] = macd / last
    out[5] = signal / last
    out[6] = (macd - signal) / last
    out[7] = (last - (mid - 2.0 * std)) / width if width > 0 else 0.5
    out[8] = volume / vmean if vmean > 0 else 1.0
    out[9] = bar / last
    out[10] = (last - low) / bar if bar > 0 else 0.5
    out[11] = (last - opened) / opened


@njit(cache=True, error_model="numpy")
def _window_mean(x: np.ndarray, column: int, start: int, stop: int) -> float:
    """Mean of ``x[start:stop, column]`` (a plain sum, then one division)."""
    total = 0.0
    for i in range(start, stop):
        total += x[i, column]
    return total / (stop - start)


def newest_row(ohlcv: np.ndarray) -> np.ndarray:
    """The 12 features of the newest row, in ``FEATURE_NAMES`` order, from an ``(n, 5)`` float64
    array of open, high, low, close, volume (``MIN_HISTORY <= n``; serving passes its newest
    ``SERVING_HISTORY``). Unchecked: the values may be non-finite (the callers check)."""
    x = np.ascontiguousarray(ohlcv, dtype=np.float64)
    if not x.flags.writeable:  # one compiled version of the kernel: C-contiguous and writable
        x = x.copy()
    out = np.empty(len(FEATURE_NAMES))
    _last_row_kernel(x, out)
    return out


def out_of_range(values: Mapping[str, float], ranges: Mapping[str, tuple[float, float]]) -> tuple[str, ...]:
    """Names of the features whose value lies outside its training ``(min, max)`` (NaN included),
    in ``ranges`` order; a feature missing from ``values`` is not checked. The model's
    out-of-distribution flag in serving and in the registry."""
    return tuple(name for name, (lo, hi) in ranges.items() if name in values and not lo <= values[name] <= hi)


def feature_matrix(features: pd.DataFrame) -> np.ndarray:
    """The model's input matrix (columns in FEATURE_NAMES order)."""
    return features.loc[:, list(FEATURE_NAMES)].to_numpy(dtype="float64")


def warm_up() -> None:
    """Run the feature code once so the numba kernels (pandas-ta's and ``_last_row_kernel``) are
    compiled or loaded from cache before the first request."""
    n = MIN_HISTORY * 2
    rng = np.random.default_rng(0)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n)))
    frame = pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=n, freq="5min", tz="UTC"),
            "open": close,
            "high": close * 1.001,
            "low": close * 0.999,
            "close": close,
            "volume": np.full(n, 10.0),
        }
    )
    _feature_frame(frame)
    latest_features(frame)
