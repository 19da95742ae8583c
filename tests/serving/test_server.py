"""The real server on a free loopback port: full cycle, champion swap, statuses, health, auth."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pandas as pd
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mem_core.features import MIN_HISTORY, SERVING_HISTORY
from mem_serving import converters as conv
from mem_serving.api import pb
from mem_serving.errors import DeadlineExceeded
from mem_serving.handlers import Budget

from .helpers import candle_pb, candles_pb, now_pb, promote
from .stack import ModelStore, Stack, start_stack

SYMBOL = "BTCUSDT"


def _history(serve_candles: pd.DataFrame) -> pd.DataFrame:
    return serve_candles.iloc[:SERVING_HISTORY]


def _enhance(stack: Stack, candles: list, **over) -> pb.EnhancedSignal:
    fields = dict(
        symbol=SYMBOL,
        action=pb.ACTION_BUY,
        base_confidence=0.65,
        price=100.0,
        time=now_pb(),
        strategy="momentum",
        candles=candles,
    )
    return stack.stub.EnhanceSignal(pb.EnhanceSignalRequest(**(fields | over)), timeout=10)


def _code(call, *args, **kw) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call(*args, timeout=10, **kw)
    return err.value.code(), err.value.details()


def _health(channel: grpc.Channel, service: str = "") -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_predict_then_new_candles_use_the_servers_history(
    stack: Stack, model_store: ModelStore, serve_candles: pd.DataFrame
) -> None:
    history = _history(serve_candles)
    first = stack.stub.PredictReversal(
        pb.PredictReversalRequest(symbol=SYMBOL, candles=candles_pb(history)), timeout=10
    )
    assert first.model_version == model_store.v1 and 0.0 <= first.confidence <= 1.0
    assert first.direction in (pb.DIRECTION_BULLISH, pb.DIRECTION_BEARISH)
    assert first.is_reversal == (first.confidence >= 0.5)
    assert first.candle_ts.ToMilliseconds() == int(history.ts.iloc[-1].value // 1_000_000)
    # the next candle alone: the server appends it to the symbol's history
    nxt = serve_candles.iloc[SERVING_HISTORY]
    second = stack.stub.PredictReversal(
        pb.PredictReversalRequest(symbol=SYMBOL, candles=[candle_pb(tuple(nxt))]), timeout=10
    )
    assert second.candle_ts.ToMilliseconds() == int(nxt.ts.value // 1_000_000)
    # the same as sending the whole window
    full = serve_candles.iloc[1 : SERVING_HISTORY + 1]
    other = stack.stub.PredictReversal(pb.PredictReversalRequest(symbol="OTHER", candles=candles_pb(full)), timeout=10)
    assert other.confidence == pytest.approx(second.confidence, abs=1e-12)


def test_out_of_distribution_flags_features_outside_the_training_ranges(
    stack: Stack, serve_candles: pd.DataFrame
) -> None:
    history = _history(serve_candles).copy()
    spike = history.iloc[-1].copy()
    spike["volume"] *= 1000.0  # volume ratio far beyond anything seen in training
    history.iloc[-1] = spike
    reply = stack.stub.PredictReversal(
        pb.PredictReversalRequest(symbol="SPIKE", candles=candles_pb(history)), timeout=10
    )
    assert reply.out_of_distribution and "volume_ratio" in reply.out_of_range_features


def test_new_champion_is_used_without_restart_and_without_a_failed_call(
    stack: Stack, model_store: ModelStore, serve_candles: pd.DataFrame
) -> None:
    history = candles_pb(_history(serve_candles))
    stack.stub.PredictReversal(pb.PredictReversalRequest(symbol=SYMBOL, candles=history), timeout=10)
    seen: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def call_continuously() -> None:
        i = SERVING_HISTORY
        while not stop.is_set():
            row = tuple(serve_candles.iloc[i])
            i += 1
            try:
                seen.append(
                    stack.stub.PredictReversal(
                        pb.PredictReversalRequest(symbol=SYMBOL, candles=[candle_pb(row)]), timeout=5
                    ).model_version
                )
            except grpc.RpcError as exc:
                failures.append(exc)

    caller = threading.Thread(target=call_continuously)
    caller.start()
    try:
        while len(seen) < 5:
            time.sleep(0.01)
        promote(stack.uri, model_store.v2)
        deadline = time.monotonic() + 15
        while (not seen or seen[-1] != model_store.v2) and time.monotonic() < deadline:
            time.sleep(0.05)
        n = len(seen)
        while len(seen) < n + 5:
            time.sleep(0.01)
    finally:
        stop.set()
        caller.join(10)
    assert not failures
    assert seen[0] == model_store.v1 and seen[-1] == model_store.v2
    switch = seen.index(model_store.v2)
    assert set(seen[:switch]) == {model_store.v1} and set(seen[switch:]) == {model_store.v2}  # one clean swap


def test_invalid_inputs_get_invalid_argument_naming_the_field(stack: Stack, serve_candles: pd.DataFrame) -> None:
    history = candles_pb(_history(serve_candles))
    cases = {
        "symbol": dict(symbol=""),
        "price": dict(price=float("nan")),
        "action": dict(action=pb.ACTION_UNSPECIFIED),
        "base_confidence": dict(base_confidence=1.5),
        "ml_prediction.confidence": dict(
            ml_prediction=pb.MlPrediction(confidence=-0.1, direction=pb.DIRECTION_BULLISH)
        ),
        "ml_prediction.direction": dict(ml_prediction=pb.MlPrediction(confidence=0.5)),
    }
    for field, change in cases.items():
        code, details = _code(
            stack.stub.EnhanceSignal,
            pb.EnhanceSignalRequest(
                **(
                    dict(symbol=SYMBOL, action=pb.ACTION_BUY, base_confidence=0.6, price=100.0, candles=history)
                    | change
                )
            ),
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT, field
        assert details.startswith(field + ":"), details
    # an unknown enum number (a newer client) is refused like UNSPECIFIED
    raw = pb.EnhanceSignalRequest(symbol=SYMBOL, base_confidence=0.6, price=100.0).SerializeToString() + b"\x10\x07"
    code, details = _code(stack.channel.unary_unary("/mem.v1.MemService/EnhanceSignal"), raw)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("action:") and "7" in details

    bad = list(history)
    broken = pb.Candle()
    broken.CopyFrom(bad[10])
    broken.high = broken.low * 0.5
    bad[10] = broken
    code, details = _code(stack.stub.PredictReversal, pb.PredictReversalRequest(symbol=SYMBOL, candles=bad))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("candles[10].high:")

    code, details = _code(stack.stub.PredictReversal, pb.PredictReversalRequest(symbol="FEW", candles=history[:10]))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and details.startswith("candles:")  # well formed: too short
    assert f"10 of {MIN_HISTORY} contiguous candles of FEW" in details

    code, details = _code(stack.stub.LogOutcome, pb.LogOutcomeRequest(decision_id="", entry_price=1, exit_price=1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("decision_id:")
    for field, bad in (
        ("decision_id", {"decision_id": "d" * 65}),
        ("entry_price", {"entry_price": 0.0}),
        ("exit_price", {"exit_price": -1.0}),
        ("size", {"size": -1.0}),
        ("pnl", {"pnl": float("nan")}),
        ("pnl_pct", {"pnl_pct": float("inf")}),
        ("exit_reason", {"exit_reason": "r" * 257}),
    ):  # each field is checked once, by the Outcome record, and named
        fields = {"decision_id": "some-decision", "entry_price": 1.0, "exit_price": 1.0, "size": 1.0} | bad
        code, details = _code(stack.stub.LogOutcome, pb.LogOutcomeRequest(**fields))  # type: ignore[arg-type]
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(f"{field}:"), (field, details)


def test_unknown_decision_is_not_found(stack: Stack) -> None:
    code, details = _code(
        stack.stub.LogOutcome,
        pb.LogOutcomeRequest(
            decision_id="no-such-decision",
            entry_price=100,
            exit_price=101,
            size=1,
            pnl=1,
            pnl_pct=0.01,
            exit_reason="take_profit",
        ),
    )
    assert code == grpc.StatusCode.NOT_FOUND


def test_market_context_is_stored_with_the_decision(stack: Stack, serve_candles: pd.DataFrame) -> None:
    context = {"session": "london", "news": "CPI at 13:30", "funding": "0.01%"}
    signal = _enhance(stack, candles_pb(_history(serve_candles)), market_context=context)
    decision, _ = stack.engine.store.get_decision(signal.decision_id)
    assert dict(decision.market_context) == context
    without = _enhance(stack, [candle_pb(tuple(serve_candles.iloc[SERVING_HISTORY]))])
    assert dict(stack.engine.store.get_decision(without.decision_id)[0].market_context) == {}


async def _inline(fn: Any) -> Any:
    return fn()


def test_a_call_whose_deadline_passed_before_recording_records_nothing(
    stack: Stack, serve_candles: pd.DataFrame
) -> None:
    # (one that expires while its decision is being committed may be recorded: test_retries.py)
    decisions = stack.handlers.metrics.decisions
    before = sum(decisions.labels(a)._value.get() for a in ("BUY", "SELL", "HOLD"))
    request = pb.EnhanceSignalRequest(
        symbol=SYMBOL,
        action=pb.ACTION_BUY,
        base_confidence=0.6,
        price=100.0,
        candles=candles_pb(_history(serve_candles)),
    )
    with pytest.raises(grpc.RpcError) as err:
        stack.stub.EnhanceSignal(request, timeout=0.0001)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # the handler checks the remaining time before each expensive step and records nothing
    query = conv.enhance_query(request, 5000)

    async def expired() -> None:
        (answer,) = await stack.handlers.enhance([query], Budget(lambda: 0.0), _inline)
        raise answer  # type: ignore[misc]  # the item's error (a decision would fail the test)

    with pytest.raises(DeadlineExceeded):
        asyncio.run(expired())
    time.sleep(0.2)
    assert sum(decisions.labels(a)._value.get() for a in ("BUY", "SELL", "HOLD")) == before
    assert _health(stack.channel) == health_pb2.HealthCheckResponse.SERVING


def test_without_a_champion_the_ml_is_silent_and_predict_is_a_failed_precondition(
    empty_mlflow_uri: str, tmp_path: Path, warm_features: None, serve_candles: pd.DataFrame
) -> None:
    s = start_stack(empty_mlflow_uri, tmp_path / "memory.db")
    try:
        history = candles_pb(_history(serve_candles))
        code, details = _code(s.stub.PredictReversal, pb.PredictReversalRequest(symbol=SYMBOL, candles=history))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "no champion model" in details
        reply = _enhance(s, history, base_confidence=0.65)
        assert reply.ml_absent and "no champion model" in reply.ml_absent_reason
        assert not reply.HasField("ml_confidence") and not reply.model_version
        assert "no ML (no champion model" in reply.reasoning
        # memory silent too (an empty store): the final confidence is the base's alone, renormalised
        assert not reply.HasField("memory_confidence") and reply.confidence == pytest.approx(0.65)
        assert reply.action == pb.ACTION_BUY  # 0.65 >= the minimum 0.6: traded on base + memory
        weak = _enhance(s, [], base_confidence=0.5, time=now_pb())
        assert weak.ml_absent and weak.action == pb.ACTION_HOLD  # the HOLD rule still applies
        # a caller's own ML prediction is used as given: the ML is not absent
        given = _enhance(
            s,
            [],
            base_confidence=0.65,
            ml_prediction=pb.MlPrediction(confidence=0.9, direction=pb.DIRECTION_BULLISH, model_version="engine"),
        )
        assert not given.ml_absent and given.ml_confidence == pytest.approx(0.9)
        info = s.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
        assert not info.ml_usable and "no champion model" in info.reason
        assert s.store.counts()["decisions"] == 3  # every EnhanceSignal was recorded
        # the process and the service are both SERVING: the service answers without a model
        assert _health(s.channel) == health_pb2.HealthCheckResponse.SERVING
        assert _health(s.channel, "mem.v1.MemService") == health_pb2.HealthCheckResponse.SERVING
    finally:
        s.channel.close()
        s.running.stop(grace=1.0)


def test_bearer_token_is_required_when_configured(mlflow_uri: str, tmp_path: Path, warm_features: None) -> None:
    s = start_stack(mlflow_uri, tmp_path / "memory.db", token="s3cret-token")
    try:
        code, details = _code(s.stub.GetParameters, pb.GetParametersRequest())
        assert code == grpc.StatusCode.UNAUTHENTICATED and "s3cret" not in details
        code, _ = _code(s.stub.GetParameters, pb.GetParametersRequest(), metadata=(("authorization", "Bearer wrong"),))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        reply = s.stub.GetParameters(
            pb.GetParametersRequest(), timeout=10, metadata=(("authorization", "Bearer s3cret-token"),)
        )
        assert reply.version
        assert _health(s.channel) == health_pb2.HealthCheckResponse.SERVING  # probes need no token
    finally:
        s.channel.close()
        s.running.stop(grace=1.0)


def test_symbol_alone_reads_recent_candles_from_questdb(
    questdb, mlflow_uri: str, tmp_path: Path, warm_features: None, serve_candles: pd.DataFrame, stack: Stack
) -> None:
    from mem_core.questdb.local import free_port
    from mem_core.questdb.store import write_candles
    from mem_core.settings import QuestDBSettings
    from mem_serving.handlers import questdb_source

    history = _history(serve_candles)
    write_candles(questdb, history.assign(symbol="QDBSERVE"))
    s = start_stack(mlflow_uri, tmp_path / "memory-q.db", candle_source=questdb_source(questdb))
    down = start_stack(
        mlflow_uri, tmp_path / "memory-d.db", candle_source=questdb_source(QuestDBSettings(pg_port=free_port()))
    )
    try:
        reply = s.stub.PredictReversal(pb.PredictReversalRequest(symbol="QDBSERVE"), timeout=20)
        direct = stack.stub.PredictReversal(
            pb.PredictReversalRequest(symbol="DIRECT", candles=candles_pb(history)), timeout=10
        )
        assert reply.candle_ts == direct.candle_ts
        assert reply.confidence == pytest.approx(direct.confidence, abs=1e-12)
        code, details = _code(s.stub.PredictReversal, pb.PredictReversalRequest(symbol="NOSUCHSYMBOL"))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and f"0 of {MIN_HISTORY} contiguous candles" in details
        code, details = _code(down.stub.PredictReversal, pb.PredictReversalRequest(symbol="QDBSERVE"))
        assert code == grpc.StatusCode.UNAVAILABLE and "QuestDB" in details
        # candles given but too few, QuestDB down: the fill is skipped, the call is not failed
        few = candles_pb(history.iloc[-20:])
        code, details = _code(down.stub.PredictReversal, pb.PredictReversalRequest(symbol="FEWDOWN", candles=few))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and f"20 of {MIN_HISTORY} contiguous" in details
        signal = down.stub.EnhanceSignal(
            pb.EnhanceSignalRequest(
                symbol="FEWDOWN2", action=pb.ACTION_BUY, base_confidence=0.7, price=100.0, candles=few
            ),
            timeout=10,
        )
        assert signal.ml_absent and f"20 of {MIN_HISTORY} contiguous" in signal.ml_absent_reason and signal.decision_id
    finally:
        for x in (s, down):
            x.channel.close()
            x.running.stop(grace=1.0)


def test_unexpected_error_is_internal_with_a_generic_message(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise RuntimeError("secret detail from deep inside")

    monkeypatch.setattr(stack.handlers, "parameters", broken)
    code, details = _code(stack.stub.GetParameters, pb.GetParametersRequest())
    assert code == grpc.StatusCode.INTERNAL and "secret" not in details
    assert _health(stack.channel) == health_pb2.HealthCheckResponse.SERVING
    assert stack.stub.ListStrategies(pb.ListStrategiesRequest(), timeout=5) is not None  # still answering


def test_prediction_cache_is_keyed_by_the_newest_candle(stack: Stack, serve_candles: pd.DataFrame) -> None:
    cache = stack.handlers.metrics.prediction_cache
    hits, misses = cache.labels("hit"), cache.labels("miss")
    history = candles_pb(_history(serve_candles))
    request = pb.PredictReversalRequest(symbol="CACHED", candles=history)
    h0, m0 = hits._value.get(), misses._value.get()
    first = stack.stub.PredictReversal(request, timeout=10)
    again = stack.stub.PredictReversal(request, timeout=10)
    assert again == first and (hits._value.get(), misses._value.get()) == (h0 + 1, m0 + 1)
    revised = pb.Candle()
    revised.CopyFrom(history[-1])
    revised.volume += 1.0  # the newest candle revised: a new key
    stack.stub.PredictReversal(pb.PredictReversalRequest(symbol="CACHED", candles=[revised]), timeout=10)
    nxt = candle_pb(tuple(serve_candles.iloc[SERVING_HISTORY]))
    stack.stub.PredictReversal(pb.PredictReversalRequest(symbol="CACHED", candles=[nxt]), timeout=10)
    assert (hits._value.get(), misses._value.get()) == (h0 + 1, m0 + 3)


def test_the_last_protobuf_instant_lies_in_the_future_and_anything_later_is_out_of_range(stack: Stack) -> None:
    last = Timestamp(seconds=253402300799, nanos=999_999_999)  # 9999-12-31T23:59:59.999999999Z
    ml = pb.MlPrediction(confidence=0.8, direction=pb.DIRECTION_BULLISH, model_version="client")
    base = dict(symbol="LATE", action=pb.ACTION_BUY, base_confidence=0.9, price=100.0, ml_prediction=ml)
    signal = stack.stub.EnhanceSignal(pb.EnhanceSignalRequest(**base, time=now_pb()), timeout=10)
    outcome = dict(decision_id=signal.decision_id, entry_price=100, exit_price=101, size=0.01, exit_reason="tp")
    # read to the microsecond (integer arithmetic: a float sum would round into year 10000), then
    # refused as a time from the future (tests/serving/test_time_sanity.py)
    assert conv.timestamp(last, "time", has=True, default=None) == datetime(
        9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC
    )
    code, details = _code(stack.stub.EnhanceSignal, pb.EnhanceSignalRequest(**base, time=last))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("time: lies in the future"), details
    code, details = _code(stack.stub.LogOutcome, pb.LogOutcomeRequest(**outcome, time=last))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("time: lies in the future"), details
    for bad in (Timestamp(seconds=253402300800), Timestamp(seconds=5, nanos=1_000_000_000), Timestamp(seconds=-1)):
        code, details = _code(stack.stub.EnhanceSignal, pb.EnhanceSignalRequest(**base, time=bad))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("time: out of range"), details
        code, details = _code(stack.stub.LogOutcome, pb.LogOutcomeRequest(**outcome, time=bad))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("time: out of range"), details
        candle = pb.Candle(ts=bad, open=1, high=1, low=1, close=1, volume=1)
        code, details = _code(stack.stub.PredictReversal, pb.PredictReversalRequest(symbol="LATE", candles=[candle]))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("candles[0].ts: out of range"), details
    assert stack.store.counts()["outcomes"] == 0


def test_undecodable_requests_are_invalid_arguments_and_counted_so(stack: Stack) -> None:
    requests = stack.handlers.metrics.requests
    for method, name in (("EnhanceSignal", "EnhanceSignalRequest"), ("LogOutcome", "LogOutcomeRequest")):
        code, details = _code(stack.channel.unary_unary(f"/mem.v1.MemService/{method}"), b"\xff\xff\xff")
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
        assert details == f"request: the bytes do not decode as mem.v1.{name}"
        assert requests.labels(method, "INVALID_ARGUMENT")._value.get() == 1
        assert requests.labels(method, "INTERNAL")._value.get() == 0
