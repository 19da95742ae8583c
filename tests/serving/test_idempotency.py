"""Idempotency keys with a request fingerprint, end to end over gRPC: the same request_id with the
same request gets the stored answer, flagged ``replayed``; the same id with a different request
(another price, confidence, strategy or time; a losing outcome under the id of a recorded win;
other candles) is refused with ALREADY_EXISTS naming the id, and records nothing. For
EnhanceSignal, LogOutcome, EnhanceSignals (per item) and PushCandles."""

from __future__ import annotations

from pathlib import Path

import grpc
import pandas as pd
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from mem_core.features import SERVING_HISTORY
from mem_core.questdb.local import free_port
from mem_core.settings import QuestDBSettings
from mem_serving.api import pb
from mem_serving.candle_sink import CandleSink

from .helpers import candle_pb, candles_pb
from .stack import Stack, start_stack

SYMBOL = "BTCUSDT"
ML = pb.MlPrediction(confidence=0.8, direction=pb.DIRECTION_BULLISH, model_version="caller")


def _refused(call, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call(request, timeout=10)
    return err.value.code(), err.value.details()


def _request(serve_candles: pd.DataFrame, **over: object) -> pb.EnhanceSignalRequest:
    row = serve_candles.iloc[SERVING_HISTORY]
    fields = {
        "symbol": SYMBOL,
        "action": pb.ACTION_BUY,
        "base_confidence": 0.9,
        "price": 100.0,
        "time": Timestamp(seconds=int(row.ts.timestamp())),
        "strategy": "momentum",
        "candles": [candle_pb(tuple(row))],
        "request_id": "engine-1:order-1",
    }
    return pb.EnhanceSignalRequest(**(fields | over))


def _seed(stack: Stack, serve_candles: pd.DataFrame) -> None:
    history = candles_pb(serve_candles.iloc[:SERVING_HISTORY])
    stack.stub.PredictReversal(pb.PredictReversalRequest(symbol=SYMBOL, candles=history), timeout=10)


def test_a_reused_id_with_another_signal_is_refused_and_a_retry_is_replayed(
    stack: Stack, serve_candles: pd.DataFrame
) -> None:
    _seed(stack, serve_candles)
    request = _request(serve_candles)
    first = stack.stub.EnhanceSignal(request, timeout=10)
    assert first.decision_id and not first.replayed
    again = stack.stub.EnhanceSignal(request, timeout=10)
    assert again.replayed
    again.replayed = False
    assert again == first  # the stored answer, field for field
    counts = stack.store.counts()
    later = Timestamp(seconds=request.time.seconds + 3 * 24 * 3600)
    for change in ({"price": 55.0}, {"base_confidence": 0.1}, {"strategy": "mean_reversion"}, {"time": later}):
        code, detail = _refused(stack.stub.EnhanceSignal, _request(serve_candles, **change))
        assert code == grpc.StatusCode.ALREADY_EXISTS, (change, code, detail)
        assert detail.startswith("request_id: 'engine-1:order-1' was already used for a different request"), detail
    assert stack.store.counts() == counts  # nothing recorded
    assert stack.handlers.metrics.replays.labels("EnhanceSignal")._value.get() == 1


def test_a_losing_outcome_under_the_id_of_a_recorded_win_is_refused(stack: Stack, serve_candles: pd.DataFrame) -> None:
    _seed(stack, serve_candles)
    decision = stack.stub.EnhanceSignal(_request(serve_candles, request_id=""), timeout=10)
    when = Timestamp(seconds=1_800_000_000)
    win = pb.LogOutcomeRequest(
        decision_id=decision.decision_id,
        entry_price=100.0,
        exit_price=101.0,
        size=0.01,
        pnl=1.0,
        pnl_pct=0.01,
        exit_reason="tp",
        time=when,
        request_id="engine-1:close-1",
    )
    learned = stack.stub.LogOutcome(win, timeout=10)
    assert learned.win and not learned.replayed
    again = stack.stub.LogOutcome(win, timeout=10)
    assert again.replayed and again.win and again.summary == learned.summary
    counts = stack.store.counts()
    loss = pb.LogOutcomeRequest()
    loss.CopyFrom(win)
    loss.exit_price, loss.pnl, loss.pnl_pct, loss.exit_reason = 99.0, -1.0, -0.01, "sl"
    code, detail = _refused(stack.stub.LogOutcome, loss)
    assert code == grpc.StatusCode.ALREADY_EXISTS and "request_id: 'engine-1:close-1'" in detail, detail
    assert stack.store.counts() == counts
    assert stack.handlers.metrics.outcomes.labels("win")._value.get() == 1
    assert stack.handlers.metrics.outcomes.labels("loss")._value.get() == 0


def test_the_batch_checks_each_items_id(stack: Stack, serve_candles: pd.DataFrame) -> None:
    """Per item: a retried item is replayed, a changed one refused, the others decided; an id used
    twice in one batch with the same request is one decision."""
    _seed(stack, serve_candles)
    single = stack.stub.EnhanceSignal(_request(serve_candles), timeout=10)
    items = [
        _request(serve_candles),  # a retry of the single call, now inside a batch
        _request(serve_candles, price=55.0),  # the same id, another price
        _request(serve_candles, symbol="ETHUSDT", candles=[], ml_prediction=ML, request_id="engine-1:order-2"),
        _request(serve_candles, symbol="ETHUSDT", candles=[], ml_prediction=ML, request_id="engine-1:order-2"),
    ]
    before = stack.store.counts()["decisions"]
    results = stack.stub.EnhanceSignals(pb.EnhanceSignalsRequest(requests=items), timeout=10).results
    assert [r.code for r in results] == [0, grpc.StatusCode.ALREADY_EXISTS.value[0], 0, 0]
    assert results[0].signal.replayed and results[0].signal.decision_id == single.decision_id
    assert "engine-1:order-1" in results[1].message
    assert not results[2].signal.replayed and results[3].signal.replayed
    assert results[3].signal.decision_id == results[2].signal.decision_id
    assert stack.store.counts()["decisions"] == before + 1


def test_push_candles_with_an_id_queues_once(
    mlflow_uri: str, tmp_path: Path, warm_features: None, serve_candles: pd.DataFrame
) -> None:
    down = QuestDBSettings(host="127.0.0.1", http_port=free_port(), pg_port=free_port())  # nothing is written
    sink = CandleSink(down, flush_s=60.0, drain_s=0.3)
    stack = start_stack(mlflow_uri, tmp_path / "memory.db", candle_sink=sink)
    try:
        bulk = candles_pb(serve_candles.iloc[:100])
        push = pb.PushCandlesRequest(symbol="PUSHUSDT", candles=bulk, request_id="backfill-1")
        first = stack.stub.PushCandles(push, timeout=10)
        assert (first.queued, first.replayed) == (100, False)
        again = stack.stub.PushCandles(push, timeout=10)
        assert again.replayed and (again.queued, again.dropped, again.pending) == (
            first.queued,
            first.dropped,
            first.pending,
        )
        other = pb.PushCandlesRequest(symbol="PUSHUSDT", candles=bulk[:50], request_id="backfill-1")
        code, detail = _refused(stack.stub.PushCandles, other)
        assert code == grpc.StatusCode.ALREADY_EXISTS and "backfill-1" in detail, detail
        assert sink.stats().queued == 100  # queued once
    finally:
        stack.channel.close()
        stack.running.stop(grace=1.0)
        sink.close()
