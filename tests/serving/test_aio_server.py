"""The grpc.aio server: where each call runs (the event loop; only QuestDB reads in the thread
pool), cancellation, and a clean stop (no loop thread left)."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest

from mem_core import estimators, registry
from mem_core.feature_sets import REGIME_V1, FeatureSet
from mem_core.features import SERVING_HISTORY
from mem_serving.api import pb
from mem_serving.candles import ShortHistory
from mem_serving.handlers import UNLIMITED, Handlers
from mem_serving.model_provider import ModelProvider
from mem_serving.server import LOOP_THREAD_NAME, WORKER_THREAD_PREFIX, YOUNG_GC_THRESHOLD, settle_heap
from mem_serving.settings import ServingSettings
from mem_serving.types import CandleBlock, EnhanceQuery, MLInput, PredictQuery

from .helpers import candle_pb, candles_pb, now_pb
from .stack import Stack, start_stack

STEP = 300_000
SYMBOL = "BTCUSDT"


def _block(start: int, n: int) -> CandleBlock:
    ts = 1_700_000_000_000 + np.arange(start, start + n, dtype=np.int64) * STEP
    return CandleBlock(ts, np.tile([100.0, 101.0, 99.0, 100.5, 3.0], (n, 1)))


def _query(symbol: str, candles: CandleBlock | None, ml: MLInput | None = None) -> EnhanceQuery:
    return EnhanceQuery(symbol, "BUY", 0.6, 100.0, dt.datetime.now(dt.UTC), "momentum", ml, candles, {}, "")


def _handlers(source, models: ModelProvider | None = None) -> Handlers:
    # the predicate needs the champion's feature set (none loaded: the seed's), not the memory engine
    return Handlers(
        ServingSettings(), models=models or ModelProvider(None, poll_s=0), engine=None, candle_source=source
    )  # type: ignore[arg-type]


async def _inline(fn):
    return fn()


def _champion(feature_set: FeatureSet = REGIME_V1) -> ModelProvider:
    """A provider holding a (tiny, real) champion over ``feature_set``, loaded without a registry."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, len(feature_set.names)))
    model = estimators.create("random_forest", {"n_estimators": 2, "random_state": 0}, feature_set).fit(X, X[:, 0] > 0)
    loaded = registry.LoadedModel("1", model, registry.feature_ranges(X, feature_set.names))
    provider = ModelProvider(None, poll_s=0, version_fn=lambda uri: "1", load_fn=lambda version, uri: loaded)
    assert provider.refresh() and provider.model is not None and provider.model.feature_set is feature_set
    return provider


def _enhance_pb(candles: list, symbol: str = SYMBOL) -> pb.EnhanceSignalRequest:
    return pb.EnhanceSignalRequest(
        symbol=symbol,
        action=pb.ACTION_BUY,
        base_confidence=0.65,
        price=100.0,
        time=now_pb(),
        strategy="momentum",
        candles=candles,
    )


def test_a_champion_gets_its_history(serve_candles: pd.DataFrame) -> None:
    """Fewer candles than regime_v1 needs: filled from the candle source (the candles before the
    newest held) when there is one, else FAILED_PRECONDITION naming the counts (never a model fed
    undefined features)."""
    ts = serve_candles["ts"].dt.as_unit("ms").astype("int64").to_numpy()
    ohlcv = serve_candles[["open", "high", "low", "close", "volume"]].to_numpy(dtype=np.float64)
    stored = CandleBlock(ts[:SERVING_HISTORY], ohlcv[:SERVING_HISTORY])
    given = CandleBlock(
        ts[SERVING_HISTORY - 100 : SERVING_HISTORY + 1], ohlcv[SERVING_HISTORY - 100 : SERVING_HISTORY + 1]
    )
    reads: list[int] = []

    def source(symbol: str, n: int, until_ms: int | None = None) -> CandleBlock:
        reads.append(n)
        keep = stored.ts_ms <= (until_ms if until_ms is not None else stored.newest_ts_ms)
        return CandleBlock(stored.ts_ms[keep], stored.ohlcv[keep]).tail(n)

    h = _handlers(source, _champion())
    prediction = asyncio.run(h.predict(PredictQuery("A", given), UNLIMITED, _inline))
    assert (
        reads
        and prediction.candle_ts_ms == int(ts[SERVING_HISTORY])
        and list(prediction.features) == list(REGIME_V1.names)
    )
    merged = CandleBlock(ts[: SERVING_HISTORY + 1], ohlcv[: SERVING_HISTORY + 1]).tail(SERVING_HISTORY)
    assert prediction.features == REGIME_V1.newest(merged.ohlcv, merged.newest_ts_ms)
    with pytest.raises(ShortHistory, match="101 of 289 contiguous candles of A"):
        asyncio.run(_handlers(None, _champion()).predict(PredictQuery("A", given), UNLIMITED, _inline))


def test_hot_path_runs_on_the_event_loop_without_the_thread_pool(
    stack: Stack, serve_candles: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    submitted: list[str] = []
    ran_on: list[str] = []
    executor = stack.running.executor
    submit = executor.submit
    monkeypatch.setattr(
        executor,
        "submit",
        lambda fn, *a, **kw: (submitted.append(getattr(fn, "__name__", "?")), submit(fn, *a, **kw))[1],
    )
    enhance_many = stack.engine.enhance_many

    async def spy(requests, fingerprints=None, meanwhile=None):
        ran_on.append(threading.current_thread().name)
        return await enhance_many(requests, fingerprints, meanwhile)

    def no_sync(request):
        raise AssertionError("the synchronous enhance ran")

    monkeypatch.setattr(stack.engine, "enhance_many", spy)
    monkeypatch.setattr(stack.engine, "enhance", no_sync)
    first = stack.stub.EnhanceSignal(_enhance_pb(candles_pb(serve_candles.iloc[:SERVING_HISTORY])), timeout=10)
    second = stack.stub.EnhanceSignal(_enhance_pb([candle_pb(tuple(serve_candles.iloc[SERVING_HISTORY]))]), timeout=10)
    assert first.decision_id and second.decision_id
    assert ran_on == [LOOP_THREAD_NAME, LOOP_THREAD_NAME] and submitted == []
    assert stack.engine.store.get_decision(second.decision_id)[0] is not None  # durable when answered
    stack.stub.GetParameters(pb.GetParametersRequest(), timeout=10)  # blocking calls do use the pool
    assert submitted == ["parameters"]


def _recording_source(serve_candles: pd.DataFrame) -> tuple:
    """A candle source holding the first SERVING_HISTORY serve candles, and the list of the
    threads it was called on."""
    history = serve_candles.iloc[:SERVING_HISTORY]
    ts_ms = np.array(
        [pd.Timestamp(t).value // 1_000_000 for t in history.ts], dtype=np.int64
    )  # whatever the resolution
    block = CandleBlock(ts_ms, history[["open", "high", "low", "close", "volume"]].to_numpy(np.float64))
    read_on: list[str] = []

    def source(symbol: str, n: int, until_ms: int | None = None) -> CandleBlock:
        read_on.append(threading.current_thread().name)
        keep = block.ts_ms <= (until_ms if until_ms is not None else block.newest_ts_ms)
        return CandleBlock(block.ts_ms[keep], block.ohlcv[keep]).tail(n)

    return source, read_on


def test_calls_that_read_questdb_run_in_the_thread_pool(
    mlflow_uri: str, tmp_path: Path, warm_features: None, serve_candles: pd.DataFrame
) -> None:
    source, read_on = _recording_source(serve_candles)
    s = start_stack(mlflow_uri, tmp_path / "memory.db", candle_source=source)
    try:
        decided_on: list[str] = []
        enhance_many = s.engine.enhance_many

        async def spy(requests, fingerprints=None, meanwhile=None):
            decided_on.append(threading.current_thread().name)
            return await enhance_many(requests, fingerprints, meanwhile)

        s.engine.enhance_many = spy
        assert s.stub.EnhanceSignal(_enhance_pb([], symbol="SEEDED"), timeout=10).decision_id  # symbol alone
        assert s.stub.PredictReversal(pb.PredictReversalRequest(symbol="SEEDED2"), timeout=10).model_version
        one = [candle_pb(tuple(serve_candles.iloc[SERVING_HISTORY]))]  # one candle, nothing held: seeded
        assert s.stub.EnhanceSignal(_enhance_pb(one, symbol="SHORT"), timeout=10).decision_id
        assert len(read_on) == 3 and all(name.startswith(WORKER_THREAD_PREFIX) for name in read_on), read_on
        assert decided_on == [LOOP_THREAD_NAME] * 2  # only the reads leave the loop
    finally:
        s.channel.close()
        s.running.stop(grace=1.0)


def test_a_call_cancelled_by_its_deadline_is_not_internal(
    stack: Stack, serve_candles: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    cancelled = threading.Event()
    enhance_many = stack.engine.enhance_many

    async def slow(requests, fingerprints=None, meanwhile=None):
        try:
            await asyncio.sleep(2.0)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return await enhance_many(requests, fingerprints, meanwhile)

    monkeypatch.setattr(stack.engine, "enhance_many", slow)
    requests = stack.handlers.metrics.requests
    with pytest.raises(grpc.RpcError) as err:
        stack.stub.EnhanceSignal(_enhance_pb(candles_pb(serve_candles.iloc[:SERVING_HISTORY])), timeout=0.3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert cancelled.wait(5)
    time.sleep(0.1)
    assert requests.labels("EnhanceSignal", "INTERNAL")._value.get() == 0
    assert stack.stub.GetParameters(pb.GetParametersRequest(), timeout=5).version  # still serving


def test_stop_ends_the_loop_thread_and_the_pool(mlflow_uri: str, tmp_path: Path, warm_features: None) -> None:
    s = start_stack(mlflow_uri, tmp_path / "memory.db")
    assert s.running.thread.is_alive() and s.running.thread.name == LOOP_THREAD_NAME
    assert s.stub.GetParameters(pb.GetParametersRequest(), timeout=10).version
    s.channel.close()
    s.running.stop(grace=1.0)
    assert not s.running.thread.is_alive() and s.running.loop.is_closed()
    names = [t.name for t in threading.enumerate()]
    assert LOOP_THREAD_NAME not in names and not any(n.startswith(WORKER_THREAD_PREFIX) for n in names), names
    s.running.stop(grace=1.0)  # idempotent
    s.running.set_memory_health(True)  # e.g. a late write-health callback: ignored


def test_a_killed_memory_writer_is_replaced_without_a_failed_call(stack: Stack, serve_candles: pd.DataFrame) -> None:
    import os
    import signal

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    writer = stack.engine._async.writer  # type: ignore[attr-defined]
    first_pid = writer.pid
    stack.stub.EnhanceSignal(_enhance_pb(candles_pb(serve_candles.iloc[:SERVING_HISTORY])), timeout=10)
    os.kill(first_pid, signal.SIGKILL)
    ids = []
    for i in range(20):  # the first of these finds the writer dead: its decision goes to a new one
        row = tuple(serve_candles.iloc[SERVING_HISTORY + i])
        ids.append(stack.stub.EnhanceSignal(_enhance_pb([candle_pb(row)]), timeout=10).decision_id)
    assert writer.pid != first_pid and writer.starts == 2
    assert len(stack.engine.store.decision_event_ids(ids)) == 20  # every answered decision is stored
    health = health_pb2_grpc.HealthStub(stack.channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_settle_heap_freezes_start_up_and_collects_young_objects_less_often() -> None:
    before = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNG_GC_THRESHOLD, *before[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
