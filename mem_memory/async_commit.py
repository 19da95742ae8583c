"""Group commit of decisions for asyncio callers, through the writer process.

``await committer.submit_many(prepared, apply)`` returns, per decision, its event id once the
batch holding it is committed (fsynced) by the writer process (``mem_memory.writer``), or the
``Replay``/``Conflict`` of its request id found inside that transaction (nothing written). The
decisions of one ``submit_many`` (a candle close's batch) go in one transaction. ``submit_made``
is ``submit_many`` of decisions it makes part by part (``make``): with no batch in flight, a
big call is sent to the child in parts as they are made, so that the child inserts one part
(on the other core) while the caller makes the next, and commits them together after the
last: the caller then waits for the last part's inserts and the COMMIT only. Everything
runs on the caller's event loop, with no thread of its own: a submit that finds no batch in
flight sends the queue as one batch; the child's reply arrives through ``add_reader``; the reply
handler applies the batch to the engine's index (``after_commit``), resolves its callers and
sends whatever queued meanwhile as the next batch. So a batch forms while the previous one is in
its fsync, as with the threads' group commit (``mem_memory.group``), but the serving thread never
waits for a SQLite statement or for the GIL after one.

Failures, each to the callers of its batch only:
- a repeated decision id (``integrity``): the batch is written again decision by decision
  through the in-process group commit on a worker thread, so only the duplicate's caller gets
  ``DuplicateDecision``;
- a full store in the child (disk full, size cap): ``StoreFull``, nothing stored;
- another SQLite error in the child (lock timeout): ``MemoryStoreError``, nothing stored;
- the child died: the batch is in doubt, so the parent looks its ids up in the store (on a
  worker thread; nothing is sent until it answers). Those committed are acknowledged; the rest
  were certainly not (one transaction, and the child is gone), so they are sent once more to a
  new child, and get ``MemoryUnavailable`` if that one fails them too.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from mem_memory.errors import MemoryStoreError, MemoryUnavailable, StoreFull
from mem_memory.group import AfterCommit, GroupStats
from mem_memory.requests import Conflict, Replay
from mem_memory.store import MemoryStore, PreparedDecision
from mem_memory.writer import WriterProcess

log = logging.getLogger(__name__)
_UNSET: Any = object()  # a decision of a call without its answer yet

#: Sends of one decision to a writer process before its caller gets ``MemoryUnavailable``.
MAX_ATTEMPTS = 2
#: Most decisions in one batch (one transaction): a whole EnhanceSignals call.
MAX_BATCH = 5000
#: Decisions per part of a call sent in parts (``submit_made``); a call of no more goes in one
#: part, as does every single call.
PART = 250

Written = int | Replay | Conflict
Apply = Callable[[int], None] | None
#: ``make(i, j) -> (prepared, apply)``: decisions ``i`` to ``j`` (excluded) of a call, made now.
Make = Callable[[int, int], tuple[Sequence[PreparedDecision], Sequence[Apply]]]
#: ``fallback(prepared, apply) -> result``: the in-process, blocking write of one decision.
Fallback = Callable[[PreparedDecision, Apply], Written]


class _Call:
    """One ``submit_many`` call: one future answers all its decisions (a future per decision
    cost ~0.5 ms of the loop's CPU per 1,000: made, set, read)."""

    __slots__ = ("future", "left", "results")

    def __init__(self, future: asyncio.Future[list[Written | BaseException]], n: int) -> None:
        self.future = future
        self.results: list[Any] = [_UNSET] * n
        self.left = n


class _Pending:
    """One decision of a call, queued or in flight."""

    __slots__ = ("apply", "attempts", "call", "index", "prepared")

    def __init__(self, prepared: PreparedDecision, apply: Apply, call: _Call, index: int) -> None:
        self.prepared, self.apply, self.call, self.index, self.attempts = prepared, apply, call, index, 0

    @property
    def done(self) -> bool:
        """Answered, or its caller is gone (cancelled)."""
        return self.call.results[self.index] is not _UNSET or self.call.future.done()

    def settle(self, outcome: Written | BaseException) -> None:
        """This decision's result or error; the call's future once every decision has one."""
        call = self.call
        if call.results[self.index] is not _UNSET:
            return
        call.results[self.index] = outcome
        call.left -= 1
        if not call.left:
            _settle(call.future, call.results)


class AsyncDecisionCommitter:
    """See the module docstring. Bound to the first event loop that submits; one per engine."""

    def __init__(
        self,
        writer: WriterProcess,
        store: MemoryStore,
        after_commit: AfterCommit,
        fallback: Fallback,
        max_batch: int = MAX_BATCH,
        part: int = PART,
    ) -> None:
        self.writer = writer
        self.store = store
        self.after_commit = after_commit
        self.fallback = fallback
        self.max_batch = max_batch
        self.part = part
        self.stats = GroupStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: deque[_Pending] = deque()
        self._inflight: list[_Pending] | None = None
        self._reader_fd: int | None = None
        self._closed = False

    def start(self) -> None:
        """Start the writer process now (otherwise the first submit does). Blocks until the
        child has opened the store; ``MemoryUnavailable`` if it cannot."""
        if not self.writer.alive:
            self.writer.start()

    async def submit_many(self, prepared: list[PreparedDecision], apply: list[Apply]) -> list[Written | BaseException]:
        """Commit ``prepared`` in the next batch (together); per decision its result once durable,
        or the error that kept it out (``apply[i]`` runs on its event id once committed)."""
        loop = self._bind()
        if not prepared:
            return []
        # a cancelled caller cancels the call's future: its decisions are stored all the same
        return await self._queued(loop, prepared, apply)

    async def submit_made(self, n: int, make: Make) -> list[Written | BaseException]:
        """``submit_many`` of the ``n`` decisions that ``make`` makes: with no batch in flight
        and more than one ``part`` of them, each part is sent to the writer as soon as it is
        made (one transaction, committed after the last); otherwise they are made at once and
        queued as ``submit_many``'s. An error raised by ``make`` is raised, and nothing of the
        call is stored."""
        loop = self._bind()
        if not n:
            return []
        part = self.part
        if n <= part or n > self.max_batch or self._inflight is not None or self._queue:
            prepared, apply = make(0, n)
            return await self._queued(loop, prepared, apply)
        call = _Call(loop.create_future(), n)
        self._stream(call, make, [*range(part, n, part), n])
        return await call.future

    def _bind(self) -> asyncio.AbstractEventLoop:
        if self._closed:
            raise MemoryUnavailable("the memory engine is closed")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError("AsyncDecisionCommitter serves one event loop; this is another")
        return loop

    def _queued(
        self, loop: asyncio.AbstractEventLoop, prepared: Sequence[PreparedDecision], apply: Sequence[Apply]
    ) -> asyncio.Future[list[Written | BaseException]]:
        """Queue one call's decisions (sent now if nothing is in flight): its future."""
        call = _Call(loop.create_future(), len(prepared))
        queue = self._queue
        for i, (p, a) in enumerate(zip(prepared, apply, strict=True)):
            queue.append(_Pending(p, a, call, i))
        if self._inflight is None:
            self._send_next()
        return call.future

    def _stream(self, call: _Call, make: Make, ends: list[int]) -> None:
        """Make and send ``call``'s decisions part by part, up to each of ``ends``, as one batch
        (nothing is in flight). All of it runs in one step of the loop: no reply is handled and
        no other call queues meanwhile."""
        batch: list[_Pending] = []
        self._inflight = batch
        lost: MemoryUnavailable | None = None
        try:
            self._ensure_writer()  # once: a child started in mid-stream would miss the first parts
        except MemoryUnavailable as exc:
            lost = exc
        start = 0
        try:
            for end in ends:
                prepared, apply = make(start, end)
                batch += [_Pending(p, a, call, i) for i, (p, a) in enumerate(zip(prepared, apply, strict=True), start)]
                start = end
                if lost is None:
                    try:
                        self.writer.send(prepared, self.store.max_pages, more=end < ends[-1])
                    except MemoryUnavailable as exc:
                        lost = exc
        except BaseException:  # make failed: nothing of the call is stored, nobody is answered
            call.future.cancel()
            self._inflight = None
            if start and lost is None:  # the child rolls back the parts it has
                try:
                    self.writer.abandon()
                    self._inflight = []  # its reply settles nothing
                except MemoryUnavailable as exc:
                    self._writer_lost([], exc)
            raise
        for p in batch:
            p.attempts += 1
        if lost is not None:  # in doubt as a batch sent at once: _writer_lost finds none committed
            self._inflight = None
            self._writer_lost(batch, lost)

    # ------------------------------------------------------------------ the cycle
    def _ensure_writer(self) -> None:
        if not self.writer.alive:
            self._drop_reader()
            self.writer.start()
        if self._reader_fd is None:
            assert self._loop is not None
            self._reader_fd = self.writer.fileno()
            self._loop.add_reader(self._reader_fd, self._on_reply)

    def _send_next(self) -> None:
        while self._queue and self._inflight is None:
            n = min(len(self._queue), self.max_batch)
            batch = [self._queue.popleft() for _ in range(n)]
            for p in batch:
                p.attempts += 1
            try:
                self._ensure_writer()
                self._inflight = batch
                self.writer.send([p.prepared for p in batch], self.store.max_pages)
            except MemoryUnavailable as exc:
                self._inflight = None
                self._writer_lost(batch, exc)

    def _on_reply(self) -> None:
        batch = self._inflight
        if batch is None:  # nothing is in flight: the child wrote without being asked, or exited
            try:
                self.writer.recv()
            except MemoryUnavailable as exc:
                log.warning("%s while idle", exc)
                self._drop_reader()
                self.writer.stop()
            return
        try:
            reply = self.writer.recv()
        except MemoryUnavailable as exc:
            self._inflight = None
            self._writer_lost(batch, exc)
            self._send_next()
            return
        self._inflight = None
        status = reply[0]
        if status == "ok":
            self._committed(batch, reply[1])
        elif status == "integrity":
            for p in batch:  # one by one in-process: only the repeated id's caller fails
                asyncio.ensure_future(self._one_by_one(p), loop=self._loop)
        elif status == "full":
            full = StoreFull(reply[1])
            for p in batch:
                p.settle(full)
        else:
            error = MemoryStoreError(f"the memory writer could not commit: {reply[1]}")
            for p in batch:
                p.settle(error)
        self._send_next()

    def _committed(self, batch: list[_Pending], results: list[Written]) -> None:
        if len(results) != len(batch):  # cannot happen: one result per decision; be loud
            error = MemoryStoreError(f"the memory writer answered {len(results)} results for {len(batch)} decisions")
            for p in batch:
                p.settle(error)
            return
        self._acknowledge(list(zip(batch, results)))

    def _acknowledge(self, done: list[tuple[_Pending, Written]]) -> None:
        """Committed decisions with their results (new event ids are consecutive): apply the
        written ones to the index, then answer every caller."""
        self._count(len(done))
        written = [(p.apply, e) for p, e in done if isinstance(e, int)]
        if written:
            try:
                self.after_commit(written[0][1] - 1, written[-1][1], written)
            except Exception:  # the records are durable; the index catches up from the log later
                log.exception("applying a committed batch to the in-process index failed")
        for p, e in done:  # a cancelled caller's decision is stored all the same
            p.settle(e)

    def _writer_lost(self, batch: list[_Pending], exc: MemoryUnavailable) -> None:
        """The child died with ``batch`` in flight (or before it could be sent): look up which of
        its decisions the store holds, on a worker thread when called on the loop (which never
        reads the store; nothing is sent meanwhile), then ``_in_doubt_settled``."""
        self._drop_reader()
        self.writer.stop()
        ids = [p.prepared.decision_id for p in batch]
        loop = self._loop
        if loop is None or not _on_loop_thread(loop) or self._closed:
            self._in_doubt_settled(batch, exc, self._lookup(ids), resume=False)
            return
        try:
            looked_up = loop.run_in_executor(None, self._lookup, ids)
        except RuntimeError:  # the loop's executor is shut down (the server is stopping)
            self._in_doubt_settled(batch, exc, self._lookup(ids), resume=False)
            return
        self._inflight = batch
        looked_up.add_done_callback(
            lambda f: self._in_doubt_settled(
                batch, exc, self._lookup(ids) if f.cancelled() else f.result(), resume=True
            )
        )

    def _lookup(self, ids: list[str]) -> dict[str, int]:
        try:
            return self.store.decision_event_ids(ids)
        except Exception:
            log.exception("looking up an in-doubt batch failed")
            return {}

    def _in_doubt_settled(
        self, batch: list[_Pending], exc: MemoryUnavailable, stored: dict[str, int], resume: bool
    ) -> None:
        """Acknowledge what the store holds of a lost batch, fail the rest or queue it again
        (``resume``: then send the queue, unless ``close`` settled the batch meanwhile)."""
        if resume and self._inflight is not batch:
            return
        log.warning("%s with %d decisions in flight; %d of them were committed", exc, len(batch), len(stored))
        done = [(p, stored[p.prepared.decision_id]) for p in batch if p.prepared.decision_id in stored]
        if done:
            self._acknowledge(sorted(done, key=lambda x: x[1]))
        lost = MemoryUnavailable(f"{exc}; the decision was not stored")
        again = [p for p in batch if p.prepared.decision_id not in stored and not p.done]
        for p in again:
            if p.attempts >= MAX_ATTEMPTS or self._closed:
                p.settle(lost)
        for p in reversed([p for p in again if not p.done]):
            self._queue.appendleft(p)
        if resume:
            self._inflight = None
            if not self._closed:
                self._send_next()

    async def _one_by_one(self, p: _Pending) -> None:
        assert self._loop is not None
        try:
            event_id = await self._loop.run_in_executor(None, self.fallback, p.prepared, p.apply)
        except BaseException as exc:
            p.settle(exc)
        else:
            p.settle(event_id)

    def _count(self, n: int) -> None:
        self.stats.commits += 1
        self.stats.units += n
        self.stats.largest = max(self.stats.largest, n)

    def _drop_reader(self) -> None:
        if self._reader_fd is not None and self._loop is not None:
            try:
                self._loop.remove_reader(self._reader_fd)
            except Exception:  # the loop is closed already
                pass
        self._reader_fd = None

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        """Stop the writer process (it finishes the batch in flight). Callable from any thread;
        queued callers get ``MemoryUnavailable``."""
        self._closed = True
        loop = self._loop
        if loop is not None and loop.is_running() and not _on_loop_thread(loop):
            try:
                asyncio.run_coroutine_threadsafe(self._aclose(), loop).result(timeout=30)
                return
            except Exception:  # the loop stopped meanwhile: close from here
                pass
        self._close_now()

    async def _aclose(self) -> None:
        self._close_now()

    def _close_now(self) -> None:
        self._drop_reader()
        inflight, self._inflight = self._inflight, None
        try:
            if inflight:  # wait for the reply: the batch is applied to the index if it committed
                try:
                    reply = self.writer.recv()
                    if reply[0] == "ok":
                        self._committed(inflight, reply[1])
                    else:
                        for p in inflight:
                            p.settle(MemoryUnavailable("the memory engine closed"))
                except MemoryUnavailable as exc:
                    self._writer_lost(inflight, exc)
            closed = MemoryUnavailable("the memory engine closed before the decision was stored")
            while self._queue:
                self._queue.popleft().settle(closed)
        finally:
            self.writer.stop()


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    """Resolve ``future`` with a result or an exception, unless it is done (its caller was
    cancelled) or its loop is closed (the server stopped: nobody is waiting any more)."""
    if future.done():
        return
    try:
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
    except RuntimeError:  # "Event loop is closed"
        pass


def _on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
