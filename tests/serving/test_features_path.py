"""Serving's feature path (numpy on the candle block) equals the pipeline's latest_features."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mem_pipelines.lib.features import FEATURE_NAMES, MIN_HISTORY, SERVING_HISTORY, InsufficientHistory, latest_features
from mem_serving.handlers import newest_features
from mem_serving.types import OHLCV, CandleBlock


def _block(frame: pd.DataFrame) -> CandleBlock:
    ts = frame["ts"].astype("int64").to_numpy() // 1_000_000
    return CandleBlock(ts.astype(np.int64), frame[list(OHLCV)].to_numpy(dtype=np.float64))


@pytest.mark.parametrize("rows", [MIN_HISTORY, 120, SERVING_HISTORY, SERVING_HISTORY + 37])
def test_block_features_equal_latest_features(serve_candles: pd.DataFrame, rows: int) -> None:
    for end in (rows, rows + 100, len(serve_candles)):
        frame = serve_candles.iloc[end - rows : end].reset_index(drop=True)
        expected = latest_features(frame)
        got = newest_features(_block(frame))
        assert list(got) == list(FEATURE_NAMES)
        assert got == expected  # bit for bit


def test_too_short_history_raises_like_latest_features(serve_candles: pd.DataFrame) -> None:
    with pytest.raises(InsufficientHistory):
        newest_features(_block(serve_candles.iloc[: MIN_HISTORY - 1]))
