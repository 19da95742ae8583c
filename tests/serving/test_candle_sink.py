"""The candle write-behind: what the engine sends reaches QuestDB off the hot path, once per new or
revised candle, through a QuestDB outage (nothing queued is lost, drops are counted) and on shutdown.

Real parts throughout: the test QuestDB (and one of its own that is stopped and restarted), the
gRPC server of ``mem_serving.server`` with a real champion and memory store."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
from prometheus_client import generate_latest

from mem_core.features import SERVING_HISTORY
from mem_core.questdb.local import LocalQuestDB, default_jar, free_port
from mem_core.questdb.store import read_candles, wait_for_wal
from mem_core.settings import QuestDBSettings
from mem_serving.api import pb
from mem_serving.candle_age import CandleAgeWatcher
from mem_serving.candle_sink import CandleSink, observing
from mem_serving.settings import ServingSettings
from mem_serving.types import CandleBlock

from .helpers import candle_pb, candles_pb, now_pb
from .stack import Stack, start_stack

SYMBOL = "BTCUSDT"
PRICES = ["open", "high", "low", "close", "volume"]


def _block(frame: pd.DataFrame) -> CandleBlock:
    ts = pd.to_datetime(frame["ts"], utc=True).dt.as_unit("ms").astype("int64").to_numpy()
    return CandleBlock(ts, frame[PRICES].to_numpy(dtype=np.float64))


def _enhance(stack: Stack, candles: list, symbol: str = SYMBOL, **over: object) -> pb.EnhancedSignal:
    fields = {
        "symbol": symbol,
        "action": pb.ACTION_BUY,
        "base_confidence": 0.65,
        "price": 100.0,
        "time": now_pb(),
        "strategy": "momentum",
        "candles": candles,
    }
    return stack.stub.EnhanceSignal(pb.EnhanceSignalRequest(**(fields | over)), timeout=10)


def _refused(call, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call(request, timeout=10)
    return err.value.code(), err.value.details()


def _revised(row: pd.Series) -> pd.Series:
    out = row.copy()
    out["close"] = (row["low"] + row["high"]) / 2.0
    assert out["close"] != row["close"]
    return out


def _metric(stack: Stack, line_start: str) -> float:
    text = generate_latest(stack.handlers.metrics.registry).decode()
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start)]
    assert len(values) == 1, (line_start, text)
    return values[0]


def _stored(settings: QuestDBSettings, symbol: str) -> pd.DataFrame:
    return read_candles(settings, symbol)[["ts", *PRICES]]


def _as_stored(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[["ts", *PRICES]].reset_index(drop=True).copy()
    out["ts"] = pd.to_datetime(out["ts"], utc=True).astype("datetime64[us, UTC]")
    return out.astype({c: "float64" for c in PRICES})


# ---- through the server -----------------------------------------------------------------------


def test_the_engines_candles_reach_questdb_once_and_a_revision_wins(
    mlflow_uri: str, tmp_path: Path, warm_features: None, fresh_questdb: QuestDBSettings, serve_candles: pd.DataFrame
) -> None:
    ages = CandleAgeWatcher(fresh_questdb)
    sink = CandleSink(fresh_questdb, flush_s=0.05, on_written=ages.observe)
    stack = start_stack(mlflow_uri, tmp_path / "memory" / "memory.db", candle_sink=sink)
    sink.register(stack.handlers.metrics.registry)
    ages.register(stack.handlers.metrics.registry)
    try:
        history = serve_candles.iloc[:SERVING_HISTORY]
        stack.stub.PredictReversal(pb.PredictReversalRequest(symbol=SYMBOL, candles=candles_pb(history)), timeout=10)
        assert sink.stats().queued == SERVING_HISTORY
        stack.stub.PredictReversal(pb.PredictReversalRequest(symbol=SYMBOL, candles=candles_pb(history)), timeout=10)
        assert sink.stats().queued == SERVING_HISTORY  # the same candles again: nothing new to write

        nxt = serve_candles.iloc[SERVING_HISTORY]
        _enhance(stack, [candle_pb(tuple(nxt))])
        revised = _revised(nxt)
        _enhance(stack, [candle_pb(tuple(revised))])  # the engine's bar closed with another close
        _enhance(stack, [candle_pb(tuple(revised))])
        assert sink.stats().queued == SERVING_HISTORY + 2
        # with the engine's own ML prediction the candles are accepted as well
        after = serve_candles.iloc[SERVING_HISTORY + 1]
        ml = pb.MlPrediction(confidence=0.7, direction=pb.DIRECTION_BULLISH, model_version="x")
        _enhance(stack, [candle_pb(tuple(after))], ml_prediction=ml)
        assert sink.stats().queued == SERVING_HISTORY + 3

        # refused by validation: never queued
        bad = after.copy()
        bad["ts"] = after["ts"] + pd.Timedelta(minutes=5)
        bad["high"] = bad["low"] * 0.5
        code, detail = _refused(
            stack.stub.EnhanceSignal,
            pb.EnhanceSignalRequest(
                symbol=SYMBOL,
                action=pb.ACTION_BUY,
                base_confidence=0.65,
                price=100.0,
                strategy="m",
                candles=[candle_pb(tuple(bad))],
            ),
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and detail.startswith("candles[0].high")
        assert sink.stats().queued == SERVING_HISTORY + 3

        assert sink.flush(30.0)
        expected = pd.concat([history, pd.DataFrame([revised, after])])
        pd.testing.assert_frame_equal(_stored(fresh_questdb, SYMBOL), _as_stored(expected))
        stats = sink.stats()
        assert (stats.written, stats.pending, stats.failures) == (SERVING_HISTORY + 3, 0, 0)
        assert stats.dropped == {"queue_full": 0, "shutdown": 0, "error": 0}
        assert _metric(stack, "mem_candles_written_total ") == SERVING_HISTORY + 3
        assert _metric(stack, "mem_candles_pending ") == 0
        assert time.time() - _metric(stack, "mem_candles_last_write_timestamp_seconds ") < 60
        age = _metric(stack, f'mem_candles_newest_age_seconds{{symbol="{SYMBOL}"}} ')
        assert age == pytest.approx(time.time() - after["ts"].timestamp(), abs=60)
    finally:
        stack.channel.close()
        stack.running.stop(grace=1.0)
        sink.close()


def test_push_candles_queues_bulk_history_without_touching_the_servers_history(
    mlflow_uri: str, tmp_path: Path, warm_features: None, fresh_questdb: QuestDBSettings, serve_candles: pd.DataFrame
) -> None:
    sink = CandleSink(fresh_questdb, flush_s=0.05)
    stack = start_stack(mlflow_uri, tmp_path / "memory" / "memory.db", candle_sink=sink, max_candles=1000)
    try:
        bulk = serve_candles.iloc[:1000]
        reply = stack.stub.PushCandles(pb.PushCandlesRequest(symbol="PUSHUSDT", candles=candles_pb(bulk)), timeout=10)
        assert (reply.queued, reply.dropped) == (1000, 0) and reply.pending <= 1000
        assert stack.handlers.history.held("PUSHUSDT") is None

        for request, field in (
            (pb.PushCandlesRequest(symbol="PUSHUSDT"), "candles: must not be empty"),
            (
                pb.PushCandlesRequest(symbol="PUSHUSDT", candles=candles_pb(serve_candles.iloc[:1001])),
                "candles: at most 1000",
            ),
            (pb.PushCandlesRequest(symbol="PUSHUSDT", candles=candles_pb(bulk.iloc[[1, 0]])), "candles[1].ts"),
            (pb.PushCandlesRequest(symbol=" ", candles=candles_pb(bulk.iloc[:1])), "symbol"),
        ):
            code, detail = _refused(stack.stub.PushCandles, request)
            assert code == grpc.StatusCode.INVALID_ARGUMENT and detail.startswith(field), detail
        assert sink.stats().queued == 1000

        assert sink.flush(30.0)
        pd.testing.assert_frame_equal(_stored(fresh_questdb, "PUSHUSDT"), _as_stored(bulk))
        again = stack.stub.PushCandles(pb.PushCandlesRequest(symbol="PUSHUSDT", candles=candles_pb(bulk)), timeout=10)
        assert again.queued == 1000 and sink.flush(30.0)
        assert len(_stored(fresh_questdb, "PUSHUSDT")) == 1000  # DEDUP UPSERT: written twice, stored once
    finally:
        stack.channel.close()
        stack.running.stop(grace=1.0)
        sink.close()


def test_push_candles_on_a_server_that_writes_none(stack: Stack, serve_candles: pd.DataFrame) -> None:
    code, detail = _refused(
        stack.stub.PushCandles, pb.PushCandlesRequest(symbol="X", candles=candles_pb(serve_candles.iloc[:3]))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "MEM_SERVING_CANDLE_SINK=off" in detail


def test_a_questdb_outage_fails_no_call_loses_nothing_queued_and_counts_drops(
    mlflow_uri: str, tmp_path: Path, warm_features: None, serve_candles: pd.DataFrame
) -> None:
    server = LocalQuestDB(root=tmp_path / "questdb", http_port=free_port(), pg_port=free_port(), jar=default_jar())
    settings = server.start()
    sink = CandleSink(settings, max_rows=500, flush_s=0.05, retry_max_s=0.5)
    stack = start_stack(mlflow_uri, tmp_path / "memory" / "memory.db", candle_sink=sink)
    sink.register(stack.handlers.metrics.registry)
    try:
        history = serve_candles.iloc[:SERVING_HISTORY]
        stack.stub.PredictReversal(pb.PredictReversalRequest(symbol=SYMBOL, candles=candles_pb(history)), timeout=10)
        assert sink.flush(30.0) and len(_stored(settings, SYMBOL)) == SERVING_HISTORY

        server.stop()
        live = serve_candles.iloc[SERVING_HISTORY : SERVING_HISTORY + 21]
        for i in range(20):  # QuestDB is down: every call still answers
            assert _enhance(stack, [candle_pb(tuple(live.iloc[i]))]).decision_id
        assert not sink.flush(1.0)  # cannot be written now
        stats = sink.stats()
        assert stats.pending == 20 and stats.failures >= 1 and stats.last_error
        backfill = serve_candles.iloc[SERVING_HISTORY + 100 : SERVING_HISTORY + 580]
        reply = stack.stub.PushCandles(
            pb.PushCandlesRequest(symbol="PUSHUSDT", candles=candles_pb(backfill)), timeout=10
        )
        assert (reply.queued, reply.dropped, reply.pending) == (480, 0, 500)  # the queue is now full
        assert _enhance(stack, [candle_pb(tuple(live.iloc[20]))]).decision_id  # dropped, but the call succeeds
        more = stack.stub.PushCandles(
            pb.PushCandlesRequest(symbol="PUSHUSDT", candles=candles_pb(serve_candles.iloc[:10])), timeout=10
        )
        assert (more.queued, more.dropped) == (0, 10)
        assert sink.stats().dropped["queue_full"] == 11
        assert _metric(stack, 'mem_candles_dropped_total{reason="queue_full"} ') == 11
        assert _metric(stack, "mem_candles_pending ") == 500

        server.start()  # QuestDB is back: the backlog is written, in order
        assert sink.flush(60.0)
        pd.testing.assert_frame_equal(_stored(settings, SYMBOL), _as_stored(pd.concat([history, live.iloc[:20]])))
        pd.testing.assert_frame_equal(_stored(settings, "PUSHUSDT"), _as_stored(backfill))
        stats = sink.stats()
        assert (stats.queued, stats.written, stats.pending) == (SERVING_HISTORY + 500, SERVING_HISTORY + 500, 0)
        assert stats.last_error is None
    finally:
        stack.channel.close()
        stack.running.stop(grace=1.0)
        sink.close()
        server.stop()


def test_during_an_outage_a_full_batch_does_not_defeat_the_backoff(serve_candles: pd.DataFrame) -> None:
    """QuestDB down with a full batch queued: every call's candle used to wake the writer, which
    retried at once (a retry storm holding the GIL: calls took seconds at 500/s). It must keep
    its backoff: a handful of attempts, not one per call."""
    down = QuestDBSettings(host="127.0.0.1", http_port=free_port(), pg_port=free_port())  # nothing listens
    sink = CandleSink(down, batch_rows=50, flush_s=0.05, retry_max_s=5.0)
    try:
        rows = serve_candles.iloc[:400]
        block = CandleBlock(
            rows["ts"].astype("int64").to_numpy() // 1_000_000,
            rows[["open", "high", "low", "close", "volume"]].to_numpy(dtype="float64"),
        )
        started = time.monotonic()
        for i in range(len(block)):  # ~270 calls/s, each bringing one candle, for 1.5 s
            sink.offer("BTCUSDT", CandleBlock(block.ts_ms[i : i + 1], block.ohlcv[i : i + 1]))
            time.sleep(max(0.0, started + (i + 1) / 270.0 - time.monotonic()))
        stats = sink.stats()
        assert stats.pending == len(block) and stats.last_error  # kept, not written
        # first write after flush_s, then backoff 0.5 s, 1 s, ...: at most a few attempts in 1.5 s
        assert 1 <= stats.failures <= 4, stats.failures
    finally:
        sink.close()


def test_within_one_batch_the_last_revision_of_a_candle_wins(
    fresh_questdb: QuestDBSettings, serve_candles: pd.DataFrame
) -> None:
    sink = CandleSink(fresh_questdb, flush_s=60.0)  # everything below goes out in one batch
    try:
        window = serve_candles.iloc[:5]
        revised = window.copy()
        revised.iloc[4] = _revised(window.iloc[4])
        for block in (window, revised.iloc[4:], window.iloc[4:]):  # original, revision, original again
            sink.offer("REVUSDT", _block(block))
        sink.offer("OTHERUSDT", _block(revised.iloc[4:]))
        assert sink.flush(30.0) and sink.stats().written == 8
        pd.testing.assert_frame_equal(_stored(fresh_questdb, "REVUSDT"), _as_stored(window))  # the last one sent
        sink.offer("REVUSDT", _block(revised.iloc[4:]))
        assert sink.flush(30.0)
        pd.testing.assert_frame_equal(_stored(fresh_questdb, "REVUSDT"), _as_stored(revised))
        pd.testing.assert_frame_equal(_stored(fresh_questdb, "OTHERUSDT"), _as_stored(revised.iloc[4:]))
    finally:
        sink.close()


def test_close_drains_the_queue_and_counts_what_it_could_not_write(
    fresh_questdb: QuestDBSettings, serve_candles: pd.DataFrame
) -> None:
    sink = CandleSink(fresh_questdb, flush_s=60.0)  # nothing is written before close
    sink.offer("DRAINUSDT", _block(serve_candles.iloc[:50]))
    assert sink.stats().pending == 50
    sink.close()
    wait_for_wal(fresh_questdb)  # close returns once QuestDB committed the rows; applied is QuestDB's pace
    assert len(_stored(fresh_questdb, "DRAINUSDT")) == 50
    assert (sink.stats().written, sink.stats().pending) == (50, 0)

    nowhere = QuestDBSettings(host="127.0.0.1", http_port=free_port(), pg_port=free_port())
    lost = CandleSink(nowhere, flush_s=60.0, drain_s=0.3)
    assert lost.offer("LOSTUSDT", _block(serve_candles.iloc[:10])).queued == 10
    started = time.monotonic()
    lost.close()
    assert time.monotonic() - started < 5.0
    stats = lost.stats()
    assert stats.dropped["shutdown"] == 10 and stats.pending == 0 and stats.failures >= 1 and stats.written == 0
    after = lost.offer("LOSTUSDT", _block(serve_candles.iloc[10:12]))
    assert (after.queued, after.dropped) == (0, 2) and lost.stats().dropped["shutdown"] == 12
    assert lost.flush(0.1)  # nothing left to wait for


def test_reads_from_questdb_tell_the_freshness_of_symbols_the_server_never_wrote(
    fresh_questdb: QuestDBSettings, serve_candles: pd.DataFrame
) -> None:
    from mem_core.questdb.store import write_candles
    from mem_serving.handlers import questdb_source

    write_candles(fresh_questdb, serve_candles.iloc[:60].assign(symbol="READUSDT"))
    ages = CandleAgeWatcher(fresh_questdb)
    source = observing(questdb_source(fresh_questdb), ages.observe)
    try:
        assert ages.newest == {}
        block = source("READUSDT", 50)
        assert len(block) == 50 and source("NONEUSDT", 50).ts_ms.size == 0
        assert (
            ages.newest
            == {"READUSDT": block.newest_ts_ms}
            == {"READUSDT": _block(serve_candles.iloc[59:60]).newest_ts_ms}
        )
        assert source.reader is not None
    finally:
        source.close()
    assert source.reader.closed


def test_settings_switch_the_write_behind_and_size_its_queue() -> None:
    s = ServingSettings.from_env({})
    assert (s.candle_sink, s.candle_queue_rows, s.candle_flush_s) == (True, 100_000, 1.0)
    s = ServingSettings.from_env(
        {"MEM_SERVING_CANDLE_SINK": "off", "MEM_SERVING_CANDLE_QUEUE": "5000", "MEM_SERVING_CANDLE_FLUSH_S": "0.5"}
    )
    assert (s.candle_sink, s.candle_queue_rows, s.candle_flush_s) == (False, 5000, 0.5)
    with pytest.raises(ValueError, match="MEM_SERVING_CANDLE_SINK must be 'on' or 'off'"):
        ServingSettings.from_env({"MEM_SERVING_CANDLE_SINK": "yes"})
