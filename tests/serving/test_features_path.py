"""Serving's feature path (a feature set's ``newest`` on a candle block, and ``newest_ring`` on
the server's candle history, the same kernels on the same rows) equals the pipeline's
latest_features; for ``regime_v1`` it equals the training frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mem_core.feature_sets import REGIME_V1, SEED, FeatureSet
from mem_core.features import (
    FEATURE_NAMES,
    MIN_HISTORY,
    SERVING_HISTORY,
    InsufficientHistory,
    latest_features,
    latest_features_arrays,
)
from mem_serving import handlers
from mem_serving.candles import CAPACITY
from mem_serving.handlers import UNLIMITED, Handlers
from mem_serving.model_provider import ModelProvider
from mem_serving.settings import ServingSettings
from mem_serving.types import OHLCV, CandleBlock


def newest_features(block: CandleBlock, feature_set: FeatureSet = SEED) -> dict[str, float]:
    return feature_set.newest(block.ohlcv, block.newest_ts_ms)


def _block(frame: pd.DataFrame) -> CandleBlock:
    ts = frame["ts"].dt.as_unit("ms").astype("int64").to_numpy()
    return CandleBlock(ts.astype(np.int64), frame[list(OHLCV)].to_numpy(dtype=np.float64))


@pytest.mark.parametrize("rows", [MIN_HISTORY, 120, SERVING_HISTORY, SERVING_HISTORY + 37])
def test_block_features_equal_latest_features(serve_candles: pd.DataFrame, rows: int) -> None:
    for end in (rows, rows + 100, len(serve_candles)):
        frame = serve_candles.iloc[end - rows : end].reset_index(drop=True)
        expected = latest_features(frame)
        got = newest_features(_block(frame))
        assert list(got) == list(FEATURE_NAMES)
        assert got == expected  # bit for bit
        assert latest_features_arrays(*(frame[c].to_numpy() for c in OHLCV)) == expected


def test_too_short_history_raises_like_latest_features(serve_candles: pd.DataFrame) -> None:
    with pytest.raises(InsufficientHistory):
        newest_features(_block(serve_candles.iloc[: MIN_HISTORY - 1]))


def test_serving_reads_the_features_from_its_candle_history(serve_candles: pd.DataFrame) -> None:
    """The features serving computes from its history (the ring, through ``newest_ring``) equal
    latest_features, before and after the ring wrapped; no private feature internals in serving."""
    h = Handlers(ServingSettings(), models=ModelProvider(None, poll_s=0), engine=None)  # type: ignore[arg-type]
    frame = serve_candles.iloc[: CAPACITY + 150].reset_index(drop=True)
    h.history.merge("X", _block(frame.iloc[:SERVING_HISTORY]))
    for end in range(SERVING_HISTORY + 1, len(frame) + 1):
        (got,) = h._snapshots([("X", _block(frame.iloc[end - 1 : end]))], UNLIMITED)
        if end % 37 == 0 or end == len(frame):
            assert got == latest_features(frame.iloc[end - SERVING_HISTORY : end].reset_index(drop=True)), end
    assert "_kernel" not in open(handlers.__file__, encoding="utf-8").read()


def test_regime_v1_block_features_equal_the_training_frame(btc: pd.DataFrame) -> None:
    """The whole regime_v1 set through serving's path (the candle block and its open times) on
    real candles equals the training rows computed over the full history, to 1e-6 relative."""
    batch = REGIME_V1.frame(btc).set_index("ts")
    for end in range(SERVING_HISTORY, len(btc) + 1, 97):
        window = btc.iloc[max(0, end - SERVING_HISTORY - 60) : end].reset_index(drop=True)
        got = newest_features(_block(window), REGIME_V1)
        expected = batch.loc[window["ts"].iloc[-1]]
        assert list(got) == list(REGIME_V1.names)
        for name in REGIME_V1.names:
            assert got[name] == pytest.approx(expected[name], rel=1e-6, abs=1e-9), (name, end)
    with pytest.raises(InsufficientHistory, match="289"):
        newest_features(_block(btc.iloc[:288]), REGIME_V1)
