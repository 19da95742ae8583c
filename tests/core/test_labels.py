"""Reversal labels: definition on constructed paths, horizon, positive rate on real candles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mem_core.labels import (
    DEFAULT_K,
    HORIZON,
    TREND_LOOKBACK,
    VOL_WINDOW,
    newest_direction,
    prior_trend,
    reversal_direction,
    reversal_labels,
)

from .helpers import random_candles


def _path(closes: np.ndarray) -> pd.DataFrame:
    n = len(closes)
    return pd.DataFrame(
        {
            "ts": pd.date_range("2025-01-01", periods=n, freq="5min", tz="UTC"),
            "open": closes,
            "high": closes,
            "low": closes,
            "close": closes,
            "volume": np.ones(n),
        }
    )


def test_last_horizon_rows_and_volatility_warmup_are_dropped() -> None:
    candles = random_candles(500)
    labels = reversal_labels(candles)
    assert list(labels.columns) == ["ts", "label", "direction"]
    assert labels["ts"].iloc[0] == candles["ts"].iloc[VOL_WINDOW]
    assert labels["ts"].iloc[-1] == candles["ts"].iloc[-1 - HORIZON]
    assert set(labels["label"].unique()) <= {0, 1}
    assert set(labels["direction"].unique()) <= {"bullish", "bearish"}


def test_sharp_drop_after_uptrend_is_a_bearish_reversal() -> None:
    rng = np.random.default_rng(1)
    steps = rng.normal(0.0005, 0.001, 300)  # an up-drifting market
    steps[251:255] = -0.01  # then a drop far beyond k·σ·√H
    candles = _path(100.0 * np.exp(np.cumsum(steps)))
    labels = reversal_labels(candles).set_index("ts")
    t = candles["ts"].iloc[248]  # an up trend, the drop is 3..6 candles ahead
    assert labels.loc[t, "direction"] == "bearish"
    assert labels.loc[t, "label"] == 1
    quiet = candles["ts"].iloc[150]
    assert labels.loc[quiet, "label"] == 0


def test_label_uses_no_candle_beyond_the_horizon() -> None:
    candles = random_candles(400, seed=5)
    t = 250
    changed = candles.copy()
    changed.loc[t + HORIZON + 1 :, "close"] *= 3.0
    a = reversal_labels(candles).set_index("ts")
    b = reversal_labels(changed).set_index("ts")
    stamp = candles["ts"].iloc[t]
    assert a.loc[:stamp].equals(b.loc[:stamp])


def test_prior_trend_matches_label_direction() -> None:
    """The newest-row rule (serving's direction) is the labels' rule, row by row."""
    candles = random_candles(300, seed=9)
    close = candles["close"].to_numpy()
    labels = reversal_labels(candles)
    t = len(candles) - 1 - HORIZON
    assert labels["direction"].iloc[-1] == reversal_direction(prior_trend(close[: t + 1]))
    rows = candles.index[candles["ts"].isin(labels["ts"])]
    assert len(rows) == len(labels) > 100
    newest = [newest_direction(close[: i + 1]) for i in rows]
    assert newest == labels["direction"].tolist()
    assert set(newest) == {"bullish", "bearish"}
    flat = np.full(TREND_LOOKBACK + 1, 5.0)
    assert prior_trend(flat) == "up" and newest_direction(flat) == "bearish"  # ties count as up
    with pytest.raises(ValueError):
        prior_trend(close[:TREND_LOOKBACK])


def test_positive_rate_on_shared_candles(btc: pd.DataFrame, eth: pd.DataFrame) -> None:
    """k = DEFAULT_K gives a reasonable share of reversals (documented in docs/ml.md: ~30%)."""
    assert DEFAULT_K == 0.75
    for candles in (btc, eth):
        rate = reversal_labels(candles)["label"].mean()
        assert 0.25 <= rate <= 0.35, rate
