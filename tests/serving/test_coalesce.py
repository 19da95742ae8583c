"""Concurrent single calls through one batch call (``mem_serving.coalesce``): the unit with a
recording batch function, then EnhanceSignal over a real server."""

from __future__ import annotations

import asyncio
import time

import grpc
import pandas as pd
import pytest

from mem_core.features import SERVING_HISTORY
from mem_serving.api import pb
from mem_serving.coalesce import Coalescer, Deadlines

from .helpers import candle_pb, candles_pb, now_pb
from .stack import Stack


class Recorder:
    """The batch call: answers ``query * 10`` (an error for a negative query), after ``delay``;
    records every batch it was given and the deadline it got."""

    def __init__(self, delay: float = 0.0, fail: BaseException | None = None) -> None:
        self.batches: list[list[int]] = []
        self.deadlines: list[float | None] = []
        self.delay = delay
        self.fail = fail

    async def __call__(self, queries: list[int], remaining) -> list[int | Exception]:
        self.batches.append(list(queries))
        self.deadlines.append(remaining() if remaining is not None else None)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return [ValueError(f"item {q}") if q < 0 else q * 10 for q in queries]


def _run(coro):
    return asyncio.run(coro)


def test_calls_ready_together_go_in_one_batch_each_with_its_own_answer() -> None:
    async def go():
        record = Recorder()
        c: Coalescer[int, int] = Coalescer(record)
        answers = await asyncio.gather(*(c.one(q, None) for q in (1, 2, -3, 4)))
        return record, c, answers

    record, c, answers = _run(go())
    assert record.batches == [[1, 2, -3, 4]]
    assert answers[:2] == [10, 20] and answers[3] == 40
    assert isinstance(answers[2], ValueError) and str(answers[2]) == "item -3"  # its own error, the others answered
    assert (c.batches, c.calls) == (1, 4)


def test_a_call_alone_is_a_batch_of_one_and_later_calls_form_new_batches() -> None:
    async def go():
        record = Recorder()
        c: Coalescer[int, int] = Coalescer(record)
        first = await c.one(1, None)
        second = await asyncio.gather(c.one(2, None), c.one(3, None))
        third = await c.one(4, None)
        return record, [first, second, third]

    record, answers = _run(go())
    assert record.batches == [[1], [2, 3], [4]]
    assert answers == [10, [20, 30], 40]


def test_batches_hold_at_most_max_batch_calls() -> None:
    async def go():
        record = Recorder()
        c: Coalescer[int, int] = Coalescer(record, max_batch=3)
        return record, await asyncio.gather(*(c.one(q, None) for q in range(8)))

    record, answers = _run(go())
    assert answers == [q * 10 for q in range(8)]
    assert sorted(len(b) for b in record.batches) == [2, 3, 3]
    assert sorted(q for b in record.batches for q in b) == list(range(8))


def test_a_cancelled_caller_neither_cancels_the_others_nor_joins_late() -> None:
    async def go():
        record = Recorder(delay=0.05)
        c: Coalescer[int, int] = Coalescer(record)
        leader = asyncio.ensure_future(c.one(1, None))
        others = [asyncio.ensure_future(c.one(q, None)) for q in (2, 3)]
        await asyncio.sleep(0.01)  # the batch is running
        leader.cancel()  # the leader's client went away
        answers = await asyncio.gather(*others)
        # cancelled before its batch started: left out of it
        late = asyncio.ensure_future(c.one(5, None))
        gone = asyncio.ensure_future(c.one(6, None))
        await asyncio.sleep(0)
        gone.cancel()
        return record, leader, answers, await late

    record, leader, answers, late = _run(go())
    assert leader.cancelled()
    assert answers == [20, 30]  # the others were answered all the same
    assert record.batches == [[1, 2, 3], [5]]
    assert late == 50


def test_a_leader_cancelled_before_its_batch_passes_the_lead_on() -> None:
    async def go():
        record = Recorder()
        c: Coalescer[int, int] = Coalescer(record)
        leader = asyncio.ensure_future(c.one(1, None))
        follower = asyncio.ensure_future(c.one(2, None))
        await asyncio.sleep(0)  # both queued, the leader waiting for the loop turn to end
        leader.cancel()
        return record, await follower, leader

    record, answer, leader = _run(go())
    assert leader.cancelled() and answer == 20
    assert record.batches == [[2]]


def test_in_a_burst_the_leader_waits_for_the_calls_accepted_behind_it() -> None:
    """A call that arrives within ``linger_s`` of the one before, while that one is in flight,
    waits ``linger_s`` for those behind it; a call after a wider gap, or a sequential caller's,
    does not wait."""

    async def burst():
        record = Recorder(delay=0.3)
        c: Coalescer[int, int] = Coalescer(record, linger_s=0.1)
        a = asyncio.ensure_future(c.one(1, None))
        await asyncio.sleep(0.15)  # 1's batch is running
        b = asyncio.ensure_future(c.one(2, None))  # 0.15 s after 1: alone at once
        await asyncio.sleep(0.01)
        d = asyncio.ensure_future(c.one(3, None))  # 0.01 s after 2, which is in flight: waits
        await asyncio.sleep(0.02)
        e = asyncio.ensure_future(c.one(4, None))  # accepted while 3 waits: joins it
        return record, await asyncio.gather(a, b, d, e)

    record, answers = _run(burst())
    assert answers == [10, 20, 30, 40]
    assert record.batches == [[1], [2], [3, 4]]

    async def sequential():
        c: Coalescer[int, int] = Coalescer(Recorder(), linger_s=1.0)
        started = time.perf_counter()
        answers = [await c.one(q, None) for q in range(5)]  # each right after the one before
        return answers, time.perf_counter() - started

    answers, took = _run(sequential())
    assert answers == [0, 10, 20, 30, 40] and took < 1.0  # nobody waited the 1 s


def test_a_failed_batch_fails_each_of_its_callers() -> None:
    async def go():
        record = Recorder(fail=RuntimeError("the memory is down"))
        c: Coalescer[int, int] = Coalescer(record)
        together = await asyncio.gather(c.one(1, None), c.one(2, None))
        with pytest.raises(RuntimeError, match="the memory is down"):
            await c.one(3, None)  # alone: raised on its own task
        return together

    together = _run(go())
    assert [str(a) for a in together] == ["the memory is down"] * 2


def test_the_batch_gets_the_most_lenient_deadline() -> None:
    assert Deadlines([lambda: 0.5, lambda: 2.0, lambda: 1.0])() == 2.0
    assert Deadlines([lambda: 0.5, None])() is None  # one caller without a deadline
    assert Deadlines([lambda: 0.5, lambda: None])() is None

    async def go():
        record = Recorder()
        c: Coalescer[int, int] = Coalescer(record)
        await asyncio.gather(c.one(1, lambda: 0.25), c.one(2, lambda: 3.0))
        return record

    assert _run(go()).deadlines == [3.0]


def test_concurrent_enhance_signal_calls_share_a_batch_over_grpc(
    stack: Stack, serve_candles: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent single calls on a real server: each answered with its own symbol's decision,
    stored before the answer, a bad one (a request id reused for another call) failing alone;
    fewer batches than calls reach the handlers."""
    n = 24
    symbols = [f"C{i:02d}USDT" for i in range(n)]
    windows = [serve_candles.iloc[5 * i : 5 * i + SERVING_HISTORY + 1] for i in range(n)]

    def request(i: int, candles: list, **over: object) -> pb.EnhanceSignalRequest:
        fields = {"symbol": symbols[i], "action": pb.ACTION_BUY, "base_confidence": 0.7, "price": 100.0}
        return pb.EnhanceSignalRequest(
            **(fields | {"time": now_pb(), "strategy": "momentum", "candles": candles} | over)
        )

    seeded = stack.stub.EnhanceSignals(
        pb.EnhanceSignalsRequest(requests=[request(i, candles_pb(w.iloc[:-1])) for i, w in enumerate(windows)]),
        timeout=30,
    )
    assert [r.code for r in seeded.results] == [0] * n
    first = stack.stub.EnhanceSignal(request(0, [], request_id="reused-id"), timeout=10)

    sizes: list[int] = []
    enhance = stack.handlers.enhance

    async def spy(queries, budget, blocking, encode=None):
        sizes.append(len(queries))
        return await enhance(queries, budget, blocking, encode)

    monkeypatch.setattr(stack.handlers, "enhance", spy)
    calls = [request(i, [candle_pb(tuple(w.iloc[-1]))]) for i, w in enumerate(windows)]
    calls[7] = request(7, [candle_pb(tuple(windows[7].iloc[-1]))], request_id="reused-id")  # another call's id

    async def burst() -> list:
        async with grpc.aio.insecure_channel(stack.address) as channel:
            call = channel.unary_unary(
                "/mem.v1.MemService/EnhanceSignal",
                request_serializer=pb.EnhanceSignalRequest.SerializeToString,
                response_deserializer=pb.EnhancedSignal.FromString,
            )
            return await asyncio.gather(*(call(r, timeout=30) for r in calls), return_exceptions=True)

    answers = asyncio.run(burst())
    bad = answers[7]
    assert isinstance(bad, grpc.aio.AioRpcError) and bad.code() == grpc.StatusCode.ALREADY_EXISTS, bad
    good = [a for i, a in enumerate(answers) if i != 7]
    assert [a.symbol for a in good] == [s for i, s in enumerate(symbols) if i != 7]
    assert all(a.HasField("ml_confidence") and a.decision_id != first.decision_id for a in good)
    assert len(stack.store.decision_event_ids([a.decision_id for a in good])) == n - 1  # stored when answered
    assert sum(sizes) == n and len(sizes) < n, sizes  # calls went through the handlers together
