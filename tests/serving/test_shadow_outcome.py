"""LogOutcome with shadow=True over the real server: a held signal's paper result is learned from
(stored as a shadow outcome) without moving any parameter; on a decision that was traded it is
INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import grpc
import pandas as pd
import pytest

from mem_core.features import SERVING_HISTORY
from mem_serving.client import MemClient, MemClientError, ReversalPrediction

from .stack import Stack


def test_a_shadow_outcome_is_learned_without_moving_parameters(stack: Stack, serve_candles: pd.DataFrame) -> None:
    history = serve_candles.iloc[:SERVING_HISTORY]
    ts, price = history["ts"].iloc[-1], float(history["close"].iloc[-1])
    weak = ReversalPrediction(True, 0.05, "bullish", "1")  # a BUY the ML does not support at all
    strong = ReversalPrediction(True, 0.95, "bullish", "1")
    with MemClient(stack.address, timeout_s=10) as client:
        before = client.get_parameters()
        held = client.enhance_signal("BTCUSDT", "BUY", 0.2, price, ts, candles=history, ml=weak)
        assert held.action == "HOLD"
        learned = client.log_outcome(
            held.decision_id, price, price * 1.01, 0.02, 2.0, 0.01, "time", ts + pd.Timedelta(hours=2), shadow=True
        )
        assert learned.shadow and learned.adjustments == () and "shadow outcome of a held BUY signal" in learned.summary
        assert client.get_parameters().version == before.version
        traded = client.enhance_signal("BTCUSDT", "BUY", 0.9, price, ts, ml=strong)
        assert traded.action == "BUY"
        with pytest.raises(MemClientError) as refused:
            client.log_outcome(traded.decision_id, price, price, traded.size, 0.0, 0.0, "time", ts, shadow=True)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT and "shadow" in str(refused.value)
    counts = stack.store.counts()
    assert counts["shadow_outcomes"] == 1 and counts["outcomes"] == 0
