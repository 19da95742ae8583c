"""Idempotent retries and deadlines, end to end: a call retried with the same request id gets the
first answer and records nothing new (also across a restart of the server, and when the first
attempt expired while it was being recorded); a cancelled or expired call never loses the candle
history it brought."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest

from mem_core.features import MIN_HISTORY, SERVING_HISTORY
from mem_serving.api import pb
from mem_serving.client import MemClient, MemClientError
from mem_serving.types import CandleBlock

from .helpers import candle_pb, candles_pb, now_pb
from .stack import start_stack


def _stop(s) -> None:
    s.channel.close()
    s.running.stop(grace=1.0)


def test_a_retry_with_the_same_id_gets_the_first_answer_even_after_a_restart(
    mlflow_uri: str, tmp_path: Path, warm_features: None, serve_candles: pd.DataFrame
) -> None:
    db = tmp_path / "memory.db"
    history, nxt = serve_candles.iloc[:SERVING_HISTORY], serve_candles.iloc[SERVING_HISTORY : SERVING_HISTORY + 1]
    price, ts = float(nxt["close"].iloc[0]), nxt["ts"].iloc[0]
    s = start_stack(mlflow_uri, db)
    try:
        with MemClient(s.address, timeout_s=10) as client:
            client.predict_reversal("BTCUSDT", history)
            first = client.enhance_signal("BTCUSDT", "BUY", 0.9, price, ts, candles=nxt, request_id="eng-7:order-1")
            # the same request again: the first answer, flagged (a changed one: test_idempotency.py)
            again = client.enhance_signal("BTCUSDT", "BUY", 0.9, price, ts, candles=nxt, request_id="eng-7:order-1")
            assert again == replace(first, replayed=True)
            learned = client.log_outcome(
                first.decision_id, price, price * 1.01, 0.01, 5.0, 0.01, "tp", ts, request_id="eng-7:close-1"
            )
            assert client.log_outcome(
                first.decision_id, price, price * 1.01, 0.01, 5.0, 0.01, "tp", ts, request_id="eng-7:close-1"
            ) == replace(learned, replayed=True)
            without_id = client.enhance_signal("BTCUSDT", "BUY", 0.9, price, ts, candles=nxt)
            assert without_id.decision_id != first.decision_id  # no id: a new decision, as before
        replays = s.handlers.metrics.replays
        assert replays.labels("EnhanceSignal")._value.get() == 1 and replays.labels("LogOutcome")._value.get() == 1
        assert s.handlers.metrics.outcomes.labels("win")._value.get() == 1
        assert s.store.counts() == {"decisions": 2, "outcomes": 1, "shadow_outcomes": 0}
    finally:
        _stop(s)

    s = start_stack(mlflow_uri, db)  # a restart: the ids are in the memory store
    try:
        with MemClient(s.address, timeout_s=10) as client:
            client.predict_reversal("BTCUSDT", history)  # the new server's history (the retry is unchanged)
            assert client.enhance_signal(
                "BTCUSDT", "BUY", 0.9, price, ts, candles=nxt, request_id="eng-7:order-1"
            ) == replace(first, replayed=True)
            assert client.log_outcome(
                first.decision_id, price, price * 1.01, 0.01, 5.0, 0.01, "tp", ts, request_id="eng-7:close-1"
            ) == replace(learned, replayed=True)
            with pytest.raises(MemClientError) as err:
                client.enhance_signal("BTCUSDT", "BUY", 0.9, price, ts, candles=nxt, request_id="has space")
            assert (
                err.value.code == grpc.StatusCode.INVALID_ARGUMENT
                and "request_id: must be printable, without spaces" in str(err.value)
            )
        assert s.store.counts() == {"decisions": 2, "outcomes": 1, "shadow_outcomes": 0}
    finally:
        _stop(s)


#: The deadlines of the expiring calls, in turn (seconds).
DEADLINES = (0.002, 0.001, 0.0005, 0.00025)


def test_calls_that_expire_are_recorded_at_most_once_when_retried_with_their_id(
    mlflow_uri: str, tmp_path: Path, warm_features: None, serve_candles: pd.DataFrame
) -> None:
    """The operator's experiment: deadlines of 2 ms and less, one new candle per call. Some expired calls were
    recorded anyway (that is what DEADLINE_EXCEEDED can mean); retried with their id, every call
    ends with exactly one decision, and the symbol's history is never lost."""
    s = start_stack(mlflow_uri, tmp_path / "memory.db")
    try:
        s.stub.PredictReversal(
            pb.PredictReversalRequest(symbol="FAST", candles=candles_pb(serve_candles.iloc[:SERVING_HISTORY])),
            timeout=10,
        )
        n, expired, answers = 150, 0, {}
        for i in range(n):
            row = serve_candles.iloc[SERVING_HISTORY + i]
            request = pb.EnhanceSignalRequest(
                symbol="FAST",
                action=pb.ACTION_BUY,
                base_confidence=0.9,
                price=float(row.close),
                time=now_pb(),
                candles=[candle_pb(tuple(row))],
                request_id=f"fast-{i}",
            )
            try:
                # deadlines from 2 ms down to a quarter of a millisecond: some expire on a quiet
                # machine too (a call answers in well under 2 ms there), in flight or on the server
                answers[i] = s.stub.EnhanceSignal(request, timeout=DEADLINES[i % len(DEADLINES)]).decision_id
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED, exc
                expired += 1
                answers[i] = s.stub.EnhanceSignal(request, timeout=10).decision_id  # the retry, same id
                assert s.stub.EnhanceSignal(request, timeout=10).decision_id == answers[i]
        assert expired > 0, "no call expired: the deadline is too generous for this machine"
        time.sleep(0.5)  # calls still finishing on the server after their client gave up
        assert s.store.counts()["decisions"] == len(set(answers.values())) == n
        block = s.handlers.history.run("FAST")  # the newest contiguous run: nothing lost
        assert len(block) == SERVING_HISTORY and block.newest_ts_ms == int(
            serve_candles.ts.iloc[SERVING_HISTORY + n - 1].value // 1_000_000
        )
    finally:
        _stop(s)


class _SlowSource:
    """A candle source whose reads of ``slow`` block until released (it holds the only worker)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self, symbol: str, n: int, until_ms: int | None = None) -> CandleBlock:
        if symbol == "SLOW":
            self.release.wait(30)
        return CandleBlock.empty()


def test_a_call_that_expires_before_it_runs_keeps_the_candles_it_brought(
    mlflow_uri: str, tmp_path: Path, warm_features: None, serve_candles: pd.DataFrame
) -> None:
    source = _SlowSource()
    s = start_stack(mlflow_uri, tmp_path / "memory.db", candle_source=source, max_workers=1)
    first, second = serve_candles.iloc[:30], serve_candles.iloc[30:60]  # 30 + 30 >= MIN_HISTORY > 30
    assert len(first) < MIN_HISTORY <= len(first) + len(second)
    try:
        blocked = s.stub.PredictReversal.future(
            pb.PredictReversalRequest(symbol="SLOW"), timeout=30
        )  # takes the worker
        time.sleep(0.3)
        request = pb.EnhanceSignalRequest(
            symbol="NEW",
            action=pb.ACTION_BUY,
            base_confidence=0.9,
            price=100.0,
            time=now_pb(),
            candles=candles_pb(first),
        )
        with pytest.raises(grpc.RpcError) as err:  # too short to seed from QuestDB: queued for the pool, expires there
            s.stub.EnhanceSignal(request, timeout=0.3)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        held = s.handlers.history.held("NEW")
        assert held is not None and len(held) == len(first)  # kept although the call never ran
        source.release.set()
        blocked.exception()
        reply = s.stub.EnhanceSignal(
            pb.EnhanceSignalRequest(
                symbol="NEW",
                action=pb.ACTION_BUY,
                base_confidence=0.9,
                price=100.0,
                time=now_pb(),
                candles=candles_pb(second),
            ),
            timeout=10,
        )
        assert reply.decision_id  # the 30 candles it brought plus the 30 kept
        assert np.array_equal(s.handlers.history.held("NEW").ts_ms[:30], held.ts_ms)
    finally:
        source.release.set()
        _stop(s)
