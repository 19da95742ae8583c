"""Reversal labels (pure: no I/O).

Definition, for the candle at time ``t`` (one symbol, 5-minute candles):

* **prior trend**: ``up`` when ``close[t] >= close[t - TREND_LOOKBACK]``, else ``down``
  (the sign of the move over the last ``TREND_LOOKBACK`` = 20 candles, i.e. 100 minutes).
* **volatility** ``σ[t]``: standard deviation of the 1-candle log returns over the last
  ``VOL_WINDOW`` = 100 candles ending at ``t`` (past data only).
* **threshold**: ``k · σ[t] · √H`` in log-price, with H = 10 candles and ``k`` = ``DEFAULT_K``.
* **label** = 1 when, within the next H candles, some close moves against the prior trend by at
  least the threshold: after an up trend ``min(close[t+1..t+H]) <= close[t]·exp(-threshold)``
  (a *bearish* reversal), after a down trend ``max(close[t+1..t+H]) >= close[t]·exp(threshold)``
  (a *bullish* reversal); else 0.
* ``direction`` is the reversal being tested: ``bearish`` after an up trend, ``bullish`` after a
  down trend — what serving reports alongside the probability (``newest_direction``: the same
  rule for the newest row).

The last H rows (no complete future) and the first ``VOL_WINDOW`` rows (no σ) have no label and
are dropped. With k = 0.75 the positive rate on the shared candles (7 symbols, ~14 months of
5-minute candles) is 30.5% (29-32% per symbol; k = 1.0 gives 20%, 1.5 gives 8.5%; docs/ml.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike

HORIZON: int = 10
TREND_LOOKBACK: int = 20
VOL_WINDOW: int = 100
DEFAULT_K: float = 0.75

#: The reversal a prior trend can have.
_REVERSAL = {"up": "bearish", "down": "bullish"}


def _is_up(close: Any, close_lookback_ago: Any) -> Any:
    """The prior-trend rule, for scalars or arrays alike: up when the close is at or above the
    close ``TREND_LOOKBACK`` candles earlier."""
    return close >= close_lookback_ago


def _trend_up(close: np.ndarray) -> np.ndarray:
    """Boolean per row (False where undefined is irrelevant: those rows are dropped)."""
    up = np.zeros(len(close), dtype=bool)
    up[TREND_LOOKBACK:] = _is_up(close[TREND_LOOKBACK:], close[:-TREND_LOOKBACK])
    return up


def reversal_labels(candles: pd.DataFrame, horizon: int = HORIZON, k: float = DEFAULT_K) -> pd.DataFrame:
    """``DataFrame(ts, label, direction)`` for one symbol's candles (see the module docstring)."""
    if "symbol" in candles.columns and candles["symbol"].nunique() > 1:
        raise ValueError("compute labels one symbol at a time")
    if horizon < 1:
        raise ValueError("horizon must be >= 1")
    close = candles["close"].to_numpy(dtype="float64")
    n = len(close)
    first = max(VOL_WINDOW, TREND_LOOKBACK)
    if n <= first + horizon:
        return pd.DataFrame(
            {"ts": candles["ts"].iloc[:0], "label": np.array([], dtype="int64"), "direction": []}
        ).reset_index(drop=True)

    log_close = np.log(close)
    returns = np.diff(log_close, prepend=np.nan)
    sigma = pd.Series(returns).rolling(VOL_WINDOW, min_periods=VOL_WINDOW).std(ddof=1).to_numpy()
    threshold = k * sigma * np.sqrt(horizon)

    future = sliding_window_view(log_close[1:], horizon)  # row t -> log closes t+1..t+H
    rows = np.arange(first, n - horizon)
    fut = future[rows]
    down_move = log_close[rows] - fut.min(axis=1)
    up_move = fut.max(axis=1) - log_close[rows]
    trend_up = _trend_up(close)[rows]
    moved_against = np.where(trend_up, down_move, up_move)
    label = (moved_against >= threshold[rows]).astype("int64")
    direction = np.where(trend_up, _REVERSAL["up"], _REVERSAL["down"])
    return pd.DataFrame({"ts": candles["ts"].to_numpy()[rows], "label": label, "direction": direction})


def prior_trend(close: ArrayLike) -> str:
    """``"up"`` or ``"down"`` for the newest of these closes (oldest first; same rule as the
    labels). Raises ``ValueError`` with ``TREND_LOOKBACK`` closes or fewer."""
    close = np.asarray(close, dtype="float64")
    if len(close) <= TREND_LOOKBACK:
        raise ValueError(f"need more than {TREND_LOOKBACK} candles for the prior trend")
    return "up" if _is_up(close[-1], close[-1 - TREND_LOOKBACK]) else "down"


def reversal_direction(trend: str) -> str:
    """The reversal a trend can have: up -> ``bearish``, down -> ``bullish``."""
    return _REVERSAL[trend]


def newest_direction(close: ArrayLike) -> str:
    """The reversal the labels test for the newest of these closes: what serving reports."""
    return _REVERSAL[prior_trend(close)]
