"""Features: definitions, warm-up, short input, no look-ahead (property), batch/live parity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mem_core import features as F
from mem_core.features import (
    FEATURE_NAMES,
    MIN_HISTORY,
    SERVING_HISTORY,
    InsufficientHistory,
    compute_features,
    latest_features,
    latest_features_arrays,
    latest_features_reference,
)

from .helpers import random_candles

OHLCV = ("open", "high", "low", "close", "volume")


def _arrays(candles: pd.DataFrame) -> list[np.ndarray]:
    return [candles[c].to_numpy(dtype="float64") for c in OHLCV]


def test_twelve_features_in_model_order() -> None:
    assert len(FEATURE_NAMES) == 12 and len(set(FEATURE_NAMES)) == 12
    assert FEATURE_NAMES[:3] == ("sma5", "sma20", "sma50")


def test_batch_drops_warmup_and_has_no_missing_values() -> None:
    candles = random_candles(SERVING_HISTORY + 300)
    feats = compute_features(candles)
    assert list(feats.columns) == ["ts", *FEATURE_NAMES]
    assert len(feats) == 301
    assert feats["ts"].iloc[0] == candles["ts"].iloc[SERVING_HISTORY - 1]
    assert np.isfinite(feats[list(FEATURE_NAMES)].to_numpy()).all()
    structural = compute_features(candles, warmup=0)
    assert structural["ts"].iloc[0] == candles["ts"].iloc[MIN_HISTORY - 1]


def test_definitions_are_scale_free_and_match_hand_computation() -> None:
    candles = random_candles(600, seed=3)
    scaled = candles.copy()
    for col in ("open", "high", "low", "close"):
        scaled[col] = candles[col] * 1000.0
    a, b = compute_features(candles), compute_features(scaled)
    np.testing.assert_allclose(a[list(FEATURE_NAMES)], b[list(FEATURE_NAMES)], rtol=1e-9, atol=1e-12)

    row = a.iloc[-1]
    c = candles["close"].to_numpy()
    last = candles.iloc[-1]
    assert row["sma20"] == pytest.approx(c[-1] / c[-20:].mean() - 1.0, rel=1e-9)
    mid, sd = c[-20:].mean(), c[-20:].std(ddof=1)
    assert row["bb_position"] == pytest.approx((c[-1] - (mid - 2 * sd)) / (4 * sd), rel=1e-9)  # 2σ, not 5σ
    assert row["volume_ratio"] == pytest.approx(last["volume"] / candles["volume"].iloc[-20:].mean(), rel=1e-9)
    assert row["hl_range"] == pytest.approx((last["high"] - last["low"]) / last["close"])
    assert row["close_position"] == pytest.approx((last["close"] - last["low"]) / (last["high"] - last["low"]))
    assert row["oc_range"] == pytest.approx((last["close"] - last["open"]) / last["open"])


def test_flat_market_has_defined_features() -> None:
    candles = random_candles(120)
    for col in ("open", "high", "low", "close"):
        candles[col] = 5.0
    candles["volume"] = 0.0
    values = latest_features(candles)
    assert values["close_position"] == 0.5 and values["bb_position"] == 0.5
    assert values["rsi14"] == 50.0 and values["volume_ratio"] == 1.0
    assert latest_features_arrays(*_arrays(candles)) == values


def test_short_history_raises_instead_of_returning_none() -> None:
    candles = random_candles(MIN_HISTORY - 1)
    with pytest.raises(InsufficientHistory):
        latest_features(candles)
    with pytest.raises(InsufficientHistory):
        compute_features(candles)
    assert issubclass(InsufficientHistory, ValueError)
    assert latest_features(random_candles(MIN_HISTORY)).keys() == set(FEATURE_NAMES)
    with pytest.raises(InsufficientHistory, match=f"at least {MIN_HISTORY}"):
        latest_features_arrays(*_arrays(candles))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(min_value=MIN_HISTORY + 5, max_value=260),
    cut=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(min_value=0, max_value=10_000),
    scale=st.floats(min_value=0.2, max_value=5.0),
)
def test_no_look_ahead(n: int, cut: float, seed: int, scale: float) -> None:
    """Changing every candle after t changes no feature at or before t."""
    candles = random_candles(n, seed=seed)
    t = MIN_HISTORY - 1 + int(cut * (n - MIN_HISTORY))
    changed = candles.copy()
    other = random_candles(n, seed=seed + 1)
    for col in ("open", "high", "low", "close", "volume"):
        changed.loc[t + 1 :, col] = other.loc[t + 1 :, col].to_numpy() * scale
    a = compute_features(candles, warmup=0)
    b = compute_features(changed, warmup=0)
    upto = a["ts"] <= candles["ts"].iloc[t]
    assert upto.sum() == t - MIN_HISTORY + 2
    pd.testing.assert_frame_equal(
        a[upto].reset_index(drop=True), b[b["ts"] <= candles["ts"].iloc[t]].reset_index(drop=True)
    )
    assert latest_features(candles.iloc[: t + 1]) == latest_features(changed.iloc[: t + 1])
    assert latest_features_arrays(*_arrays(candles.iloc[: t + 1])) == latest_features_arrays(
        *_arrays(changed.iloc[: t + 1])
    )


@pytest.mark.parametrize("which", ["btc", "eth"])
def test_live_features_from_serving_history_match_batch(which: str, request: pytest.FixtureRequest) -> None:
    """The newest row from SERVING_HISTORY candles equals the full-history batch to 1e-6 relative.

    An absolute floor of 1e-9 covers features crossing zero (close/SMA - 1, MACD histogram),
    where a relative error is meaningless; it is far below any feature's resolution.
    """
    candles: pd.DataFrame = request.getfixturevalue(which)
    batch = compute_features(candles).set_index("ts")
    rng = np.random.default_rng(7)
    ends = np.r_[rng.integers(SERVING_HISTORY * 3, len(candles), 60), len(candles) - 1]
    for end in ends:
        history = candles.iloc[end - SERVING_HISTORY + 1 : end + 1]
        live = latest_features(history)
        assert latest_features_arrays(*_arrays(history)) == live  # the public numpy path, bit for bit
        reference = latest_features_reference(history)
        expected = batch.loc[candles["ts"].iloc[end]]
        for name in FEATURE_NAMES:
            assert live[name] == pytest.approx(expected[name], rel=1e-6, abs=1e-9), (name, end)
            assert live[name] == pytest.approx(reference[name], rel=1e-6, abs=1e-9), (name, end)


def test_hundred_candles_are_not_enough_for_parity(btc: pd.DataFrame) -> None:
    """Why SERVING_HISTORY exists: with the seed's 100 candles RSI/MACD differ visibly."""
    batch = compute_features(btc).set_index("ts")
    end = len(btc) - 1
    live = latest_features(btc.iloc[end - 99 : end + 1])
    expected = batch.loc[btc["ts"].iloc[end]]
    worst = max(abs(live[k] - expected[k]) / max(abs(expected[k]), 1e-9) for k in ("rsi14", "macd", "macd_signal"))
    assert worst > 1e-4


@pytest.mark.parametrize("rows", [MIN_HISTORY, 123, SERVING_HISTORY, SERVING_HISTORY + 250])
def test_arrays_path_equals_latest_features(rows: int) -> None:
    """``latest_features`` is ``latest_features_arrays`` of its columns: same values, bit for bit,
    plain floats in model order, newest SERVING_HISTORY candles only, any 1-D float array-like."""
    candles = random_candles(rows, seed=rows)
    expected = latest_features(candles)
    got = latest_features_arrays(*_arrays(candles))
    assert got == expected and list(got) == list(FEATURE_NAMES)
    assert all(type(v) is float for v in got.values())
    assert latest_features_arrays(*_arrays(candles.iloc[-SERVING_HISTORY:])) == got
    assert latest_features_arrays(*(a.tolist() for a in _arrays(candles))) == got
    block = candles[list(OHLCV)].to_numpy(dtype="float64")  # strided column views, as serving has
    assert latest_features_arrays(*block.T) == got
    assert latest_features_arrays(**{c: candles[c] for c in OHLCV}) == got  # keywords, pandas Series


def test_arrays_path_refuses_bad_columns() -> None:
    o, h, lo, c, v = _arrays(random_candles(120))
    with pytest.raises(ValueError, match="equal lengths") as info:
        latest_features_arrays(o, h, lo, c[:-1], v)
    assert not isinstance(info.value, InsufficientHistory)
    with pytest.raises(ValueError, match="1-D"):
        latest_features_arrays(o.reshape(-1, 1), h, lo, c, v)
    c = c.copy()
    c[-1] = np.nan
    with pytest.raises(InsufficientHistory, match="undefined"):
        latest_features_arrays(o, h, lo, c, v)


def test_warm_up_compiles_every_array_layout() -> None:
    """After ``warm_up`` no call of the serving path compiles (or loads) another kernel version:
    every layout (strided, read-only) reaches the kernel as one."""
    F.warm_up()
    compiled = list(F._last_row_kernel.signatures)
    assert len(compiled) == 1
    candles = random_candles(SERVING_HISTORY + 20)
    block = candles[list(OHLCV)].to_numpy(dtype="float64")
    frozen = block.copy()
    frozen.flags.writeable = False
    for cols in (block.T, frozen.T, _arrays(candles), [np.ascontiguousarray(c) for c in frozen.T]):
        latest_features_arrays(*cols)
    for rows in (block, frozen, block[::2], np.asfortranarray(block)):
        F.newest_row(rows)
    latest_features(candles)
    assert F._last_row_kernel.signatures == compiled


def test_out_of_range_names_features_outside_their_training_range() -> None:
    ranges = {"rsi14": (10.0, 90.0), "sma5": (-0.1, 0.1), "hl_range": (0.0, 0.05)}
    assert F.out_of_range({"rsi14": 50.0, "sma5": 0.1, "hl_range": 0.0}, ranges) == ()  # bounds are inside
    assert F.out_of_range({"rsi14": 95.0, "sma5": -0.2, "hl_range": 0.01}, ranges) == ("rsi14", "sma5")
    assert F.out_of_range({"hl_range": float("nan"), "volume_ratio": 1e9}, ranges) == (
        "hl_range",
    )  # unranged: not checked
