"""The named feature sets as contracts: ``seed`` unchanged, ``regime_v1`` = seed + regime; each
set's training frame and its serving newest row agree on real candles, and neither looks ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mem_core import feature_sets
from mem_core.feature_sets import REGIME_V1, SEED
from mem_core.features import FEATURE_NAMES, MIN_HISTORY, SERVING_HISTORY, InsufficientHistory, compute_features
from mem_core.regime_features import REGIME_HISTORY, REGIME_NAMES, regime_features

from .helpers import random_candles

OHLCV = ["open", "high", "low", "close", "volume"]


def _newest(fs: feature_sets.FeatureSet, candles: pd.DataFrame) -> dict[str, float]:
    """The set's serving path on a candle frame (as serving calls it: numpy rows + open time)."""
    return fs.newest(
        candles[OHLCV].to_numpy(dtype="float64"), int(pd.Timestamp(candles["ts"].iloc[-1]).value // 1_000_000)
    )


def test_the_sets_are_named_versioned_contracts() -> None:
    assert feature_sets.get("seed") is SEED and feature_sets.get("regime_v1") is REGIME_V1
    assert sorted(feature_sets.FEATURE_SETS) == ["regime_v1", "seed"]
    assert (SEED.names, SEED.min_history, SEED.history) == (FEATURE_NAMES, MIN_HISTORY, SERVING_HISTORY)
    assert REGIME_V1.names == FEATURE_NAMES + REGIME_NAMES and len(REGIME_V1.names) == 22 == len(set(REGIME_V1.names))
    assert (REGIME_V1.min_history, REGIME_V1.history) == (REGIME_HISTORY, SERVING_HISTORY) == (289, 400)
    with pytest.raises(feature_sets.UnknownFeatureSet, match=r"this code computes \['regime_v1', 'seed'\]"):
        feature_sets.get("regime_v2")


def test_regime_v1_frame_is_the_seed_frame_joined_with_the_regime_features() -> None:
    candles = random_candles(SERVING_HISTORY + 200, seed=21, start="2025-03-01 22:10")
    frame = REGIME_V1.frame(candles)
    seed = compute_features(candles)
    assert list(frame.columns) == ["ts", *REGIME_V1.names]
    assert len(frame) == len(seed) == 201 and frame["ts"].iloc[0] == candles["ts"].iloc[SERVING_HISTORY - 1]
    pd.testing.assert_frame_equal(frame[["ts", *FEATURE_NAMES]], seed)
    regime = regime_features(candles).set_index("ts").loc[frame["ts"], list(REGIME_NAMES)].reset_index(drop=True)
    pd.testing.assert_frame_equal(frame[list(REGIME_NAMES)], regime)
    assert np.isfinite(REGIME_V1.matrix(frame)).all()


def test_regime_v1_drops_training_rows_with_undefined_regime_features() -> None:
    """100 unchanged closes make σ zero (log σ = -inf): those rows are not training rows, and
    serving refuses the same candle instead of feeding the model an infinity."""
    candles = random_candles(SERVING_HISTORY + 250, seed=5)
    flat = slice(SERVING_HISTORY + 20, SERVING_HISTORY + 160)
    for col in ("open", "high", "low", "close"):
        candles.loc[flat, col] = 100.0
    frame = REGIME_V1.frame(candles)
    assert len(frame) < len(compute_features(candles))
    assert np.isfinite(REGIME_V1.matrix(frame)).all()
    dropped = candles["ts"].iloc[SERVING_HISTORY + 120]  # the 100 returns before it are all 0
    assert dropped not in set(frame["ts"])
    with pytest.raises(InsufficientHistory, match="log_sigma"):
        _newest(REGIME_V1, candles.iloc[SERVING_HISTORY + 120 - 399 : SERVING_HISTORY + 121])


def test_regime_v1_newest_needs_its_history() -> None:
    candles = random_candles(SERVING_HISTORY, seed=8)
    with pytest.raises(InsufficientHistory, match="289"):
        _newest(REGIME_V1, candles.iloc[-(REGIME_HISTORY - 1) :])
    assert list(_newest(REGIME_V1, candles.iloc[-REGIME_HISTORY:])) == list(REGIME_V1.names)
    assert _newest(SEED, candles) == {k: v for k, v in _newest(REGIME_V1, candles).items() if k in FEATURE_NAMES}


@pytest.mark.parametrize("which", ["btc", "eth"])
def test_regime_v1_newest_matches_the_training_frame_on_real_candles(
    which: str, request: pytest.FixtureRequest
) -> None:
    """Serving's newest row from SERVING_HISTORY candles equals the training row (full history) to
    1e-6 relative, with a 1e-9 absolute floor for features crossing zero."""
    candles: pd.DataFrame = request.getfixturevalue(which)
    batch = REGIME_V1.frame(candles).set_index("ts")
    rng = np.random.default_rng(16)
    for end in np.r_[SERVING_HISTORY - 1, rng.integers(SERVING_HISTORY * 3, len(candles), 60), len(candles) - 1]:
        live = _newest(REGIME_V1, candles.iloc[end - SERVING_HISTORY + 1 : end + 1])
        expected = batch.loc[candles["ts"].iloc[end]]
        assert list(live) == list(REGIME_V1.names)
        for name in REGIME_V1.names:
            assert live[name] == pytest.approx(expected[name], rel=1e-6, abs=1e-9), (name, end)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cut=st.integers(min_value=SERVING_HISTORY - 1, max_value=SERVING_HISTORY + 40),
    seed=st.integers(min_value=0, max_value=10_000),
    scale=st.floats(min_value=0.2, max_value=5.0),
)
def test_regime_v1_has_no_look_ahead(cut: int, seed: int, scale: float) -> None:
    """Changing every candle after t changes no training row at or before t, nor the newest row at t."""
    n = SERVING_HISTORY + 50
    candles = random_candles(n, seed=seed)
    changed = candles.copy()
    other = random_candles(n, seed=seed + 1)
    for col in OHLCV:
        changed.loc[cut + 1 :, col] = other.loc[cut + 1 :, col].to_numpy() * scale
    t = candles["ts"].iloc[cut]
    a, b = REGIME_V1.frame(candles), REGIME_V1.frame(changed)
    assert (a["ts"] <= t).sum() == cut - SERVING_HISTORY + 2
    pd.testing.assert_frame_equal(a[a["ts"] <= t], b[b["ts"] <= t])
    assert _newest(REGIME_V1, candles.iloc[: cut + 1]) == _newest(REGIME_V1, changed.iloc[: cut + 1])


def test_warm_up_compiles_the_kernels_serving_calls() -> None:
    """After ``warm_up`` serving's newest rows (any layout of the candle rows) compile nothing more."""
    from mem_core import features, regime_features

    feature_sets.warm_up()
    kernels = (features._last_row_kernel, regime_features._newest_kernel)
    compiled = [list(k.signatures) for k in kernels]
    assert [len(c) for c in compiled] == [1, 1]
    candles = random_candles(SERVING_HISTORY + 10)
    rows = candles[OHLCV].to_numpy(dtype="float64")
    frozen = rows.copy()
    frozen.flags.writeable = False
    for block in (rows, frozen, np.asfortranarray(rows)):
        assert list(REGIME_V1.newest(block, 1_700_000_000_000)) == list(REGIME_V1.names)
    assert [list(k.signatures) for k in kernels] == compiled
