"""Times from the future are refused (issue 31, point 4): a candle (EnhanceSignal, PredictReversal,
PushCandles) or a decision time (EnhanceSignal.time, LogOutcome.time) more than one candle
interval plus the allowed clock skew ahead of the server's clock gets INVALID_ARGUMENT naming the
field; a refused call leaves nothing in QuestDB (the candle write-behind) or the memory; a replay
of history is unaffected; the candle-age metric never goes negative.

Real parts: the gRPC server with a real champion and memory store, the test QuestDB behind the
candle write-behind."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import generate_latest

from mem_core.features import SERVING_HISTORY
from mem_core.questdb.store import read_candles, write_candles
from mem_core.settings import QuestDBSettings
from mem_serving.api import pb
from mem_serving.candle_age import CandleAgeWatcher
from mem_serving.candle_sink import CandleSink, observing
from mem_serving.settings import ServingSettings
from mem_serving.time_sanity import CANDLE_INTERVAL_S, FutureLimit

from .helpers import candles_pb, now_pb
from .stack import Stack, start_stack

SKEW_S = 30.0
ML = pb.MlPrediction(confidence=0.7, direction=pb.DIRECTION_BULLISH, model_version="client")


def _at(seconds_from_now: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromMilliseconds(int((time.time() + seconds_from_now) * 1000))
    return stamp


def _candle_at(stamp: Timestamp, price: float = 100.0) -> pb.Candle:
    return pb.Candle(ts=stamp, open=price, high=price * 1.01, low=price * 0.99, close=price, volume=5.0)


def _refused(call, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call(request, timeout=10)
    return err.value.code(), err.value.details()


def _enhance(candles: list, **over: object) -> pb.EnhanceSignalRequest:
    fields = {
        "symbol": "BTCUSDT",
        "action": pb.ACTION_BUY,
        "base_confidence": 0.6,
        "price": 100.0,
        "time": now_pb(),
        "strategy": "momentum",
        "candles": candles,
    }
    return pb.EnhanceSignalRequest(**(fields | over))


def _age_metric(registry, symbol: str) -> float:
    text = generate_latest(registry).decode()
    start = f'mem_candles_newest_age_seconds{{symbol="{symbol}"}} '
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(start)]
    assert len(values) == 1, text
    return values[0]


@pytest.fixture
def sunk(mlflow_uri: str, tmp_path: Path, warm_features: None, fresh_questdb: QuestDBSettings):
    ages = CandleAgeWatcher(fresh_questdb)
    sink = CandleSink(fresh_questdb, flush_s=0.05, on_written=ages.observe)
    stack = start_stack(mlflow_uri, tmp_path / "memory" / "memory.db", candle_sink=sink, max_clock_skew_s=SKEW_S)
    sink.register(stack.handlers.metrics.registry)
    ages.register(stack.handlers.metrics.registry)
    yield stack, sink
    stack.channel.close()
    stack.running.stop(grace=1.0)
    sink.close()


def test_candles_and_times_from_the_future_are_refused_naming_the_field_and_write_nothing(
    sunk: tuple[Stack, CandleSink], fresh_questdb: QuestDBSettings, serve_candles: pd.DataFrame
) -> None:
    stack, sink = sunk
    history = serve_candles.iloc[:SERVING_HISTORY]
    # a replay of history (candles of 2024, decision times of then) is unaffected
    stack.stub.PredictReversal(pb.PredictReversalRequest(symbol="BTCUSDT", candles=candles_pb(history)), timeout=10)
    then = Timestamp()
    then.FromDatetime(history["ts"].iloc[-1].to_pydatetime())
    decision = stack.stub.EnhanceSignal(_enhance([], time=then, ml_prediction=ML), timeout=10)
    assert decision.time == then
    queued, counts = sink.stats().queued, stack.store.counts()
    assert queued == SERVING_HISTORY and counts["decisions"] == 1

    # the next three real candles, then two a little more than the allowance ahead
    beyond = CANDLE_INTERVAL_S + SKEW_S + 60
    window = [*candles_pb(serve_candles.iloc[SERVING_HISTORY : SERVING_HISTORY + 3])]
    window += [_candle_at(_at(beyond)), _candle_at(_at(beyond + CANDLE_INTERVAL_S))]
    for call, request in (
        (stack.stub.EnhanceSignal, _enhance(window)),
        (stack.stub.EnhanceSignal, _enhance(window, ml_prediction=ML)),
        (stack.stub.PredictReversal, pb.PredictReversalRequest(symbol="BTCUSDT", candles=window)),
        (stack.stub.PushCandles, pb.PushCandlesRequest(symbol="BTCUSDT", candles=window)),
        (stack.stub.PushCandles, pb.PushCandlesRequest(symbol="LATER", candles=[_candle_at(_at(beyond))])),
    ):
        code, details = _refused(call, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert details.startswith(("candles[3].ts: lies in the future", "candles[0].ts: lies in the future")), details
        assert "MEM_SERVING_MAX_CLOCK_SKEW_S" in details
    code, details = _refused(stack.stub.PredictReversal, pb.PredictReversalRequest(symbol="ONE", candles=window[3:4]))
    assert (code, details.split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT, "candles[0].ts")  # the one-candle path

    # decision times: EnhanceSignal.time and LogOutcome.time
    code, details = _refused(stack.stub.EnhanceSignal, _enhance([], time=_at(beyond), ml_prediction=ML))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("time: lies in the future"), details
    outcome = dict(decision_id=decision.decision_id, entry_price=100, exit_price=101, size=0.01, pnl=1, pnl_pct=0.01)
    code, details = _refused(stack.stub.LogOutcome, pb.LogOutcomeRequest(**outcome, time=_at(beyond)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("time: lies in the future"), details
    for far in (Timestamp(seconds=1_893_456_000), Timestamp(seconds=253402300799, nanos=999_999_999)):  # 2030, 9999
        code, details = _refused(stack.stub.EnhanceSignal, _enhance([], time=far, ml_prediction=ML))
        assert details.startswith("time: lies in the future"), details

    # nothing of the refused calls reached the write-behind, QuestDB, the history or the memory
    assert sink.stats().queued == queued
    assert stack.store.counts() == counts
    assert stack.handlers.history.held("BTCUSDT").newest_ts_ms == int(history["ts"].iloc[-1].timestamp() * 1000)
    assert sink.flush(30.0)
    stored = read_candles(fresh_questdb, "BTCUSDT")
    assert len(stored) == SERVING_HISTORY and stored["ts"].max() == history["ts"].iloc[-1]
    assert read_candles(fresh_questdb, "LATER").empty

    # within the allowance (a client clock a little ahead, the candle that opens next): accepted
    soon = _at(CANDLE_INTERVAL_S + SKEW_S - 20)
    stack.stub.EnhanceSignal(_enhance([_candle_at(soon)], time=_at(SKEW_S - 10), ml_prediction=ML), timeout=10)
    learned = stack.stub.LogOutcome(pb.LogOutcomeRequest(**outcome, time=_at(SKEW_S - 10)), timeout=10)
    assert learned.decision_id == decision.decision_id
    assert sink.flush(30.0) and sink.stats().queued == queued + 1
    # that candle opens after now: its age is 0, never negative (the freshness alert stays able to fire)
    assert _age_metric(stack.handlers.metrics.registry, "BTCUSDT") == 0.0


def test_a_call_refused_for_its_candles_prices_offers_nothing_to_questdb(
    sunk: tuple[Stack, CandleSink], fresh_questdb: QuestDBSettings, serve_candles: pd.DataFrame
) -> None:
    """Prices of 1e308 are finite, but no feature of them is: such a call was refused only after
    its candles had been queued for QuestDB and merged into the history."""
    stack, sink = sunk
    history = serve_candles.iloc[:SERVING_HISTORY].copy()
    huge = history.copy()
    huge.loc[huge.index[-3:], ["open", "high", "low", "close"]] = 1e308
    for call, request in (
        (stack.stub.PredictReversal, pb.PredictReversalRequest(symbol="HUGE", candles=candles_pb(huge))),
        (stack.stub.EnhanceSignal, _enhance(candles_pb(huge), symbol="HUGE")),
        (stack.stub.EnhanceSignal, _enhance(candles_pb(huge), symbol="HUGE", ml_prediction=ML)),
        (stack.stub.PushCandles, pb.PushCandlesRequest(symbol="HUGE", candles=candles_pb(huge))),
    ):
        code, details = _refused(call, request)
        assert sink.stats().queued == 0, details  # before: queued, then refused when the features failed
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(f"candles[{SERVING_HISTORY - 3}]."), (
            details
        )
    # the same with a tiny price (a ratio of prices overflows)
    tiny = history.copy()
    tiny.loc[tiny.index[-1], ["open", "high", "low", "close"]] = 5e-324
    code, details = _refused(
        stack.stub.PredictReversal, pb.PredictReversalRequest(symbol="HUGE", candles=candles_pb(tiny))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(f"candles[{SERVING_HISTORY - 1}]."), details
    assert sink.stats().queued == 0 and stack.handlers.history.held("HUGE") is None
    assert stack.store.counts()["decisions"] == 0
    assert sink.flush(30.0)
    assert read_candles(fresh_questdb, "HUGE").empty
    # the same candles with sane prices are served and written
    stack.stub.PredictReversal(pb.PredictReversalRequest(symbol="HUGE", candles=candles_pb(history)), timeout=10)
    assert sink.flush(30.0) and len(read_candles(fresh_questdb, "HUGE")) == SERVING_HISTORY


def test_the_candle_age_metric_never_goes_negative(fresh_questdb: QuestDBSettings, serve_candles: pd.DataFrame) -> None:
    """QuestDB may hold a candle from the future (written before this check, or by another writer):
    the age it reports is 0, not -2.5e11."""
    from prometheus_client import CollectorRegistry

    from mem_serving.handlers import questdb_source

    future = serve_candles.iloc[:60].copy()
    future.loc[future.index[-1], "ts"] = pd.Timestamp("2030-01-01", tz="UTC")
    write_candles(fresh_questdb, future.assign(symbol="FUTUREUSDT"))
    write_candles(fresh_questdb, serve_candles.iloc[:60].assign(symbol="PASTUSDT"))
    ages = CandleAgeWatcher(fresh_questdb)
    registry = CollectorRegistry()
    ages.register(registry)
    source = observing(questdb_source(fresh_questdb), ages.observe)
    try:
        assert len(source("FUTUREUSDT", 60)) == 60 and len(source("PASTUSDT", 60)) == 60
        assert _age_metric(registry, "FUTUREUSDT") == 0.0
        past = serve_candles["ts"].iloc[59].timestamp()
        assert _age_metric(registry, "PASTUSDT") == pytest.approx(time.time() - past, abs=60)
    finally:
        source.close()


def test_the_limit_is_one_candle_interval_plus_the_skew() -> None:
    now = 1_800_000_000.0
    limit = FutureLimit(max_clock_skew_s=60.0, clock=lambda: now)
    latest = int((now + CANDLE_INTERVAL_S + 60.0) * 1000)
    assert limit.latest_ms() == latest
    assert limit.first_ahead(np.array([latest - 300_000, latest], dtype=np.int64)) is None
    index, why = limit.first_ahead(np.array([1, latest - 1, latest + 1, latest + 300_000], dtype=np.int64))
    assert index == 2 and why.startswith("lies in the future: after 2027-01-15T08:")
    assert limit.first_ahead(np.array([], dtype=np.int64)) is None
    assert ServingSettings.from_env({}).max_clock_skew_s == 120.0
    assert ServingSettings.from_env({"MEM_SERVING_MAX_CLOCK_SKEW_S": "5"}).max_clock_skew_s == 5.0
    for bad in ("-1", "nan", "soon"):
        with pytest.raises(ValueError, match="MEM_SERVING_MAX_CLOCK_SKEW_S"):
            ServingSettings.from_env({"MEM_SERVING_MAX_CLOCK_SKEW_S": bad})
