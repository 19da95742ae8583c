"""Group commit: concurrent writers of one process share one write transaction and one fsync.

A writer hands ``submit`` a unit of work (a function of the store that writes its records), or
``submit_decision`` a decision already encoded. Writers that arrive while a commit is in
progress queue up; the first writer to find no commit in progress becomes the *leader*: it takes
every queued unit (up to ``max_batch``), writes them in arrival order in ONE ``BEGIN IMMEDIATE``
transaction and commits (``synchronous=FULL``: one fsync of the WAL for the whole group).
Consecutive decisions are written with one multi-row INSERT per table after one SELECT of
their request ids (``MemoryStore.append_prepared_checked``: a known id is answered, not written); every other unit runs
inside its own savepoint, so its error (unknown decision, second outcome, ...) rolls back only
its own writes and is raised to its own writer (but a full store, ``StoreFull``, fails the whole
group: SQLite may have rolled the transaction back). Should a decision id repeat (the multi-row
INSERT fails), the transaction is rolled back and the group written again unit by unit, each in
a savepoint, so only that writer gets ``DuplicateDecision``.

Why so few statements: ``sqlite3`` lets other Python threads take the GIL during every
statement, and under load the committing thread then waits to get it back, while every writer
of the next group waits for this one. A group of decisions costs four statements (BEGIN, two
INSERTs, COMMIT) however many writers it holds. Then, still as leader, it calls
``after_commit`` with the group's event id span and each unit's result (the engine applies them
to its in-process index in commit order), marks every unit done and wakes the writers. A writer
returns only when the transaction holding its records has committed, so every acknowledged
write is as durable as before; when the commit itself fails, every writer of the group gets
the error and nothing of the group is stored.

No thread of its own: with a single writer the leader is the caller itself (one transaction per
call, as without grouping); under load a group forms while the previous one is in its fsync.
Each writer sleeps on its own event: the leader wakes exactly the writers of its group and hands
the leadership to the first queued writer, if any (no thundering herd on one condition).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from mem_memory.backend import INTEGRITY_ERRORS
from mem_memory.errors import DuplicateDecision, StoreFull
from mem_memory.requests import Conflict, Replay
from mem_memory.store import MemoryStore, PreparedDecision

log = logging.getLogger(__name__)

T = TypeVar("T")

#: ``after_commit(before, after, [(apply, result), ...])``: the group's events are ids
#: ``before+1 .. after``; ``apply(result)`` for every unit that succeeded, in commit order.
AfterCommit = Callable[[int, int, Sequence[tuple[Callable[[Any], None] | None, Any]]], None]


@dataclass(eq=False)
class _Unit(Generic[T]):
    work: Callable[[MemoryStore], T] | None
    apply: Callable[[T], None] | None
    prepared: PreparedDecision | None = None
    result: Any = None
    error: BaseException | None = None
    done: bool = False
    ok: bool = field(default=False)
    wake: threading.Event = field(default_factory=threading.Event)


@dataclass
class GroupStats:
    """Counters since start: transactions committed, units in them, the largest group."""

    commits: int = 0
    units: int = 0
    largest: int = 0

    def as_dict(self) -> dict[str, float]:
        return {
            "commits": self.commits,
            "units": self.units,
            "largest_group": self.largest,
            "mean_group": round(self.units / self.commits, 2) if self.commits else 0.0,
        }


class GroupCommitter:
    """See the module docstring. Thread-safe; one per store connection (per process)."""

    def __init__(self, store: MemoryStore, after_commit: AfterCommit | None = None, max_batch: int = 256) -> None:
        self.store = store
        self.after_commit = after_commit
        self.max_batch = max_batch
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[_Unit[Any]] = []
        self._leading = False
        self.stats = GroupStats()

    def submit(self, work: Callable[[MemoryStore], T], apply: Callable[[T], None] | None = None) -> T:
        """Run ``work`` in the next group transaction; return its result once that transaction
        has committed (durable), or raise its error (or the commit's)."""
        return self._submit(_Unit(work, apply))

    def submit_decision(
        self, prepared: PreparedDecision, apply: Callable[[Any], None] | None = None
    ) -> int | Replay | Conflict:
        """Write a prepared decision in the next group transaction; its event id once durable, or
        the ``Replay``/``Conflict`` of its request id (nothing written; ``apply`` gets it too).
        ``DuplicateDecision`` if the decision id is already stored."""
        return self._submit(_Unit(None, apply, prepared))

    def _submit(self, unit: _Unit[T]) -> T:
        # Each writer sleeps on its own event; the leader wakes exactly the writers of its group
        # and, when more are queued, hands the leadership to the first of them (no thundering
        # herd of every waiter on one condition).
        with self._cond:
            self._queue.append(unit)
            lead = not self._leading
            if lead:
                self._leading = True
        while True:
            if not lead:
                unit.wake.wait()
                unit.wake.clear()
                if unit.done:
                    return self._outcome(unit)
                # promoted: this writer leads the next group
            with self._cond:
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            try:
                self._run(batch)
            finally:
                with self._cond:
                    for u in batch:
                        u.done = True
                    nxt = None
                    if not unit.done:
                        pass  # still queued (group full): keep leading
                    elif self._queue:
                        nxt = self._queue[0]
                    else:
                        self._leading = False
                for u in batch:
                    if u is not unit:
                        u.wake.set()
                if nxt is not None:
                    nxt.wake.set()
            if unit.done:
                return self._outcome(unit)
            lead = True

    @staticmethod
    def _outcome(unit: _Unit[T]) -> T:
        if unit.error is not None:
            raise unit.error
        return unit.result

    def _run(self, batch: list[_Unit[Any]]) -> None:
        store = self.store
        for fast in (True, False):
            for u in batch:
                u.ok, u.error, u.result = False, None, None
            try:
                with store.group_transaction() as span:
                    self._write(store, batch, fast)
            except INTEGRITY_ERRORS:
                if fast:  # a repeated decision id in a multi-row INSERT: again, unit by unit
                    continue
                self._fail(batch, sys.exc_info()[1])
                return
            except BaseException as exc:  # BEGIN or COMMIT failed: nothing of the group is stored
                self._fail(batch, exc)
                if not isinstance(exc, Exception):
                    raise
                return
            break
        done = [u for u in batch if u.ok]
        self.stats.commits += 1
        self.stats.units += len(done)
        self.stats.largest = max(self.stats.largest, len(batch))
        if self.after_commit is not None and done:
            try:
                self.after_commit(span[0] - 1, span[1], [(u.apply, u.result) for u in done])
            except Exception:  # the records are durable; the index catches up from the log later
                log.exception("applying a committed group to the in-process index failed")

    @staticmethod
    def _fail(batch: list[_Unit[Any]], exc: BaseException | None) -> None:
        for u in batch:
            u.ok = False
            u.error = exc

    @staticmethod
    def _write(store: MemoryStore, batch: list[_Unit[Any]], fast: bool) -> None:
        i, n = 0, len(batch)
        while i < n:
            u = batch[i]
            if fast and u.prepared is not None:
                j = i + 1
                while j < n and batch[j].prepared is not None:
                    j += 1
                run = batch[i:j]
                prepared = [x.prepared for x in run if x.prepared is not None]
                for x, written in zip(run, store.append_prepared_checked(prepared)):
                    x.result, x.ok = written, True
                i = j
                continue
            try:
                with store.savepoint():
                    if u.prepared is not None:
                        try:
                            u.result = store.append_prepared_checked([u.prepared])[0]
                        except INTEGRITY_ERRORS:  # the savepoint rolls back its writes
                            raise DuplicateDecision(f"decision {u.prepared.decision_id} is already recorded") from None
                    else:
                        assert u.work is not None  # a unit carries a prepared decision or work
                        u.result = u.work(store)
                u.ok = True
            except StoreFull:  # SQLite may have rolled back the whole transaction: the group fails
                raise
            except Exception as exc:  # this unit only: its savepoint is rolled back
                u.error = exc
            i += 1
