"""Regime and time-of-day features: definitions, no look-ahead, scale-free, batch/live parity."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mem_core.regime_features import REGIME_HISTORY, REGIME_NAMES, latest_regime_features, regime_features

from .helpers import random_candles


def _latest(candles: pd.DataFrame) -> dict[str, float]:
    cols = [candles[c].to_numpy(dtype="float64") for c in ("high", "low", "close", "volume")]
    newest_ms = int(pd.Timestamp(candles["ts"].iloc[-1]).value // 1_000_000)
    return latest_regime_features(*cols, newest_ms)


def test_hand_computed_values_of_the_newest_row() -> None:
    candles = random_candles(400, seed=3, start="2025-01-01 13:30")
    row = regime_features(candles).iloc[-1]
    close = candles["close"].to_numpy()
    r = np.diff(np.log(close))
    sigma = np.std(r[-100:], ddof=1)
    assert row["rv_ratio_12"] == pytest.approx(np.std(r[-12:], ddof=1) / sigma, rel=1e-9)
    assert row["rv_ratio_288"] == pytest.approx(sigma / np.std(r[-288:], ddof=1), rel=1e-9)
    assert row["log_sigma"] == pytest.approx(math.log(sigma), rel=1e-9)
    assert row["z_ret20"] == pytest.approx(math.log(close[-1] / close[-21]) / (sigma * math.sqrt(20)), rel=1e-9)
    assert row["er20"] == pytest.approx(abs(close[-1] - close[-21]) / np.abs(np.diff(close[-21:])).sum(), rel=1e-9)
    minute = (13 * 60 + 30 + 399 * 5) % 1440
    assert row["tod_sin"] == pytest.approx(math.sin(2 * math.pi * minute / 1440), abs=1e-12)
    assert regime_features(candles).iloc[: REGIME_HISTORY - 1, 1:].isna().all().all()
    assert regime_features(candles).iloc[REGIME_HISTORY - 1 :, 1:].notna().all().all()


def test_scale_free_in_price_and_volume() -> None:
    candles = random_candles(350, seed=4)
    scaled = candles.copy()
    for col in ("open", "high", "low", "close"):
        scaled[col] *= 37_000.0
    scaled["volume"] *= 0.001
    a = regime_features(candles).iloc[-50:, 1:].to_numpy()
    b = regime_features(scaled).iloc[-50:, 1:].to_numpy()
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cut=st.integers(min_value=REGIME_HISTORY - 1, max_value=420),
    seed=st.integers(min_value=0, max_value=10_000),
    scale=st.floats(min_value=0.2, max_value=5.0),
)
def test_no_look_ahead(cut: int, seed: int, scale: float) -> None:
    """Changing every candle after t changes no feature at or before t."""
    candles = random_candles(440, seed=seed)
    changed = candles.copy()
    other = random_candles(440, seed=seed + 1)
    for col in ("open", "high", "low", "close", "volume"):
        changed.loc[cut + 1 :, col] = other.loc[cut + 1 :, col].to_numpy() * scale
    a = regime_features(candles).iloc[: cut + 1]
    b = regime_features(changed).iloc[: cut + 1]
    pd.testing.assert_frame_equal(a, b)
    assert _latest(candles.iloc[: cut + 1]) == _latest(changed.iloc[: cut + 1])


@pytest.mark.parametrize("which", ["btc", "eth"])
def test_newest_row_from_its_history_matches_the_batch(which: str, request: pytest.FixtureRequest) -> None:
    """REGIME_HISTORY candles (and more) give the full-history batch value to 1e-6 relative."""
    candles: pd.DataFrame = request.getfixturevalue(which)
    batch = regime_features(candles)[list(REGIME_NAMES)].to_numpy()
    rng = np.random.default_rng(11)
    for end in np.r_[REGIME_HISTORY - 1, rng.integers(1000, len(candles), 80), len(candles) - 1]:
        for history in (REGIME_HISTORY, 400, 1000):
            start = max(0, end + 1 - history)
            if end + 1 - start < REGIME_HISTORY:
                continue
            live = _latest(candles.iloc[start : end + 1])
            for i, name in enumerate(REGIME_NAMES):
                assert live[name] == pytest.approx(batch[end, i], rel=1e-6, abs=1e-9), (name, end, history)


def test_short_history_is_refused_and_a_flat_market_is_not_finite() -> None:
    candles = random_candles(REGIME_HISTORY - 1)
    with pytest.raises(ValueError, match="289"):
        _latest(candles)
    flat = random_candles(REGIME_HISTORY)
    for col in ("open", "high", "low", "close"):
        flat[col] = 100.0
    values = _latest(flat)
    assert not math.isfinite(values["log_sigma"])
    assert values["er20"] == 0.0
