"""Concurrent single calls answered through one batch call (EnhanceSignal through the path of
EnhanceSignals).

A call hands ``Coalescer.one`` its request and deadline. The first call to find nothing pending
leads: it lets the event loop run once (``sleep(0)``), so the calls that are ready in the same
loop iteration join it, then takes them all. In a burst (a candle close: hundreds of calls at
once) grpc.aio accepts one call per loop turn, so when the call before arrived less than
``linger_s`` (1 ms) ago and is still in flight, the leader waits ``linger_s`` instead, while
the next calls are accepted and join (bench_burst.py, 1,000 concurrent calls: 1.03 calls per batch with
``sleep(0)`` alone, about 3 with the wait, and the server's CPU per burst 790 -> 640 ms). Calls
spaced wider than that (a paced stream) and a sequential client's never wait. Alone, a leader runs
the batch of one itself; with others, the batch runs in a task of its own, so no caller's
cancellation (deadline, client gone) cancels the others' work, and each caller gets
its own answer or error. A call cancelled before its batch starts is left out of it; once the
batch has started its decision is recorded all the same (as a call cancelled during its commit).

The batch gets the most lenient deadline of its callers (no deadline if one has none): a
caller whose own deadline passes is cancelled by gRPC, not by the others' work.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar

#: How long the leader of a burst waits for the calls accepted behind it.
LINGER_S = 0.001

Q = TypeVar("Q")
R = TypeVar("R")


#: A caller's ``time_remaining`` (seconds left; None: no deadline), or None for no deadline.
Remaining = Callable[[], float | None] | None


class Deadlines:
    """The most lenient of several callers' deadlines, as a ``time_remaining`` callable."""

    __slots__ = ("_remaining",)

    def __init__(self, remaining: Sequence[Remaining]) -> None:
        self._remaining = remaining

    def __call__(self) -> float | None:
        best: float | None = None
        for r in self._remaining:
            left = r() if r is not None else None
            if left is None:
                return None
            best = left if best is None else max(best, left)
        return best


#: ``run(queries, remaining)``: the batch call; one answer or error per query. ``remaining`` is
#: the batch's ``time_remaining`` (None: no deadline).
Batch = Callable[[list[Q], Remaining], Awaitable[list[R | Exception]]]


class Coalescer(Generic[Q, R]):
    """See the module docstring. One per event loop (the server's); not thread-safe."""

    def __init__(self, run: Batch[Q, R], max_batch: int = 1000, linger_s: float = LINGER_S) -> None:
        self._run = run
        self.max_batch = max_batch
        self.linger_s = linger_s
        self._last_arrival = -math.inf
        self._active = 0  # calls in ``one``
        self._tasks: set[asyncio.Future[None]] = set()
        self._pending: list[tuple[Q, Remaining, asyncio.Future[R | Exception]]] = []
        #: Batches run and calls in them (the mean is calls / batches).
        self.batches = 0
        self.calls = 0

    async def one(self, query: Q, remaining: Remaining) -> R | Exception:
        """``query``'s answer or error, from the batch it joins."""
        self._active += 1
        try:
            return await self._one(query, remaining)
        finally:
            self._active -= 1

    async def _one(self, query: Q, remaining: Remaining) -> R | Exception:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R | Exception] = loop.create_future()
        self._pending.append((query, remaining, future))
        now, before = loop.time(), self._last_arrival
        self._last_arrival = now
        if len(self._pending) > 1:  # a leader is waiting: join its batch
            return await future
        burst = self._active > 1 and now - before < self.linger_s
        try:  # the calls ready in this loop turn join; in a burst, those accepted meanwhile too
            await asyncio.sleep(self.linger_s if burst else 0)
        except asyncio.CancelledError:  # the lead passes on: the others still get their batch
            self._pending = [p for p in self._pending if p[2] is not future]
            if self._pending:
                self._spawn(self._lead_rest())
            raise
        items, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        if self._pending:  # more than one batch's worth: the rest lead themselves
            self._spawn(self._lead_rest())
        if len(items) == 1:  # alone: the batch of one on this call's own task
            self.batches += 1
            self.calls += 1
            (answer,) = await self._run([query], remaining)
            return answer
        self._spawn(self._batch(items))
        return await future

    async def _lead_rest(self) -> None:
        items, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        if self._pending:
            self._spawn(self._lead_rest())
        await self._batch(items)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """A task of its own, referenced until it ends (the loop keeps only weak references)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _batch(self, items: list[tuple[Q, Remaining, asyncio.Future[R | Exception]]]) -> None:
        items = [item for item in items if not item[2].done()]  # cancelled before the batch started
        if not items:
            return
        self.batches += 1
        self.calls += len(items)
        try:
            answers: list[R | Exception] = await self._run(
                [q for q, _, _ in items], Deadlines([r for _, r, _ in items])
            )
        except asyncio.CancelledError:  # the server is stopping: so are its calls
            for _, _, f in items:
                f.cancel()
            raise
        except Exception as exc:  # the batch as a whole failed: each caller gets the error
            answers = [exc] * len(items)
        for (_, _, f), answer in zip(items, answers, strict=True):
            if not f.done():
                f.set_result(answer)
