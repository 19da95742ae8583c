"""The base strategy: the seed's momentum + RSI rule, causal, with confidence from strength."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mem_pipelines.replay.base_strategy import BaseStrategyConfig, base_signals, rsi


def _frame(closes: list[float]) -> pd.DataFrame:
    close = np.asarray(closes, dtype="float64")
    return pd.DataFrame(
        {
            "ts": pd.date_range("2025-01-01", periods=len(close), freq="5min", tz="UTC"),
            "open": close,
            "high": close * 1.001,
            "low": close * 0.999,
            "close": close,
            "volume": np.ones(len(close)),
        }
    )


def test_rules_match_the_seed_resolver(btc_week: pd.DataFrame) -> None:
    cfg = BaseStrategyConfig()
    sig = base_signals(btc_week, cfg)
    buy, sell = sig["action"] == "BUY", sig["action"] == "SELL"
    assert buy.sum() > 10 and sell.sum() > 10
    assert (sig.loc[buy, "momentum"] > cfg.momentum_threshold).all()
    assert (sig.loc[buy, "rsi"] < 70).all()
    assert (sig.loc[sell, "momentum"] < -cfg.momentum_threshold).all()
    assert (sig.loc[sell, "rsi"] > 30).all()
    none = sig["action"] == ""
    assert sig.loc[none, "confidence"].isna().all()
    conf = sig.loc[~none, "confidence"]
    assert conf.between(0.5, 0.95).all()
    # Stronger momentum, higher confidence.
    strong = sig.loc[buy].sort_values("momentum")
    assert strong["confidence"].is_monotonic_increasing
    assert (sig["action"].iloc[: cfg.warmup] == "").all()


def test_rsi_extremes() -> None:
    up = _frame(list(np.linspace(100, 200, 60)))
    down = _frame(list(np.linspace(200, 100, 60)))
    flat = _frame([100.0] * 60)
    assert rsi(up["close"]).iloc[-1] == pytest.approx(100.0)
    assert rsi(down["close"]).iloc[-1] == pytest.approx(0.0)
    assert rsi(flat["close"]).iloc[-1] == 50.0


def test_a_steady_rally_is_overbought_not_a_buy() -> None:
    # Momentum is above threshold all along but RSI is 100: the RSI guard keeps it out.
    sig = base_signals(_frame(list(np.linspace(100, 130, 300))))
    assert (sig["action"] == "").all()


@settings(max_examples=25, deadline=None)
@given(cut=st.integers(min_value=150, max_value=1900), noise=st.integers(min_value=0, max_value=2**31 - 1))
def test_no_look_ahead(btc_week: pd.DataFrame, cut: int, noise: int) -> None:
    """Changing every candle after ``cut`` changes no signal at or before ``cut``."""
    frame = btc_week.iloc[:2000].reset_index(drop=True)
    rng = np.random.default_rng(noise)
    other = frame.copy()
    scale = rng.uniform(0.5, 1.5, size=len(frame) - cut - 1)
    for c in ("open", "high", "low", "close"):
        other.loc[cut + 1 :, c] = other.loc[cut + 1 :, c].to_numpy() * scale
    a = base_signals(frame).iloc[: cut + 1]
    b = base_signals(other).iloc[: cut + 1]
    pd.testing.assert_frame_equal(a, b)
    truncated = base_signals(frame.iloc[: cut + 1])
    pd.testing.assert_frame_equal(a, truncated)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        BaseStrategyConfig(momentum_threshold=0)
    with pytest.raises(ValueError):
        BaseStrategyConfig(rsi_oversold=80, rsi_overbought=70)
