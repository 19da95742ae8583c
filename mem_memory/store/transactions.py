"""Write transactions (``BEGIN IMMEDIATE``), read snapshots, the group commit's transaction and
its savepoints, and the size cap (``max_bytes``, SQLite only)."""

from __future__ import annotations

import time as _time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

from mem_memory.backend import Conn
from mem_memory.errors import (
    MemoryStoreError,
    StoreFull,
)
from mem_memory.requests import REQUEST_ID_WINDOW_S
from mem_memory.store.connect import NO_PAGE_CAP, _full, is_full
from mem_memory.store.integrity import StoreIntegrity


def forget_expired(conn: Conn, older_than: float, limit: int) -> int:
    """Delete up to ``limit`` request ids recorded before ``older_than`` (inside the caller's
    write transaction); returns how many."""
    cur = conn.execute(
        "DELETE FROM requests WHERE (kind, tag) IN (SELECT kind, tag FROM requests WHERE created < ? LIMIT ?)",
        (float(older_than), int(limit)),
    )
    return int(cur.rowcount)


class StoreTransactions(StoreIntegrity):
    """Transactions and the size cap."""

    @contextmanager
    def transaction(self) -> Iterator[Self]:
        """One write transaction (``BEGIN IMMEDIATE``): reads inside see the latest committed
        state and no other process writes until it ends. Nested use joins the outer one."""
        with self._lock:
            conn = self._c()
            if conn.in_transaction:
                yield self
                return
            self._check_writable()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:  # SQLITE_FULL may have rolled it back already
                    conn.execute("ROLLBACK")
                if is_full(exc):
                    raise _full(self.location, exc) from exc
                raise

    @contextmanager
    def snapshot(self) -> Iterator[Self]:
        """A consistent read snapshot (``BEGIN DEFERRED``) for several queries."""
        with self._lock:
            conn = self._c()
            if conn.in_transaction:
                yield self
                return
            conn.execute("BEGIN")
            try:
                yield self
            finally:
                conn.execute("COMMIT")

    @contextmanager
    def group_transaction(self) -> Iterator[list[int]]:
        """The write transaction of one group commit (``mem_memory.group``). Yields
        ``[first, last]``: the lowest and highest event id written in it so far (0, 0 while none),
        final once the block ends. The events of the group are exactly ``first .. last`` (ids are
        consecutive: one writer at a time, and a rolled-back savepoint gives its ids back), and
        the log held nothing above ``first - 1`` before it. Commits when the block ends (one fsync
        for everything written in it), rolls back on an exception. Not nestable."""
        with self._lock:
            conn = self._c()
            if conn.in_transaction:
                raise RuntimeError("group_transaction cannot run inside another transaction")
            self._check_writable()
            conn.execute("BEGIN IMMEDIATE")
            self._span = span = [0, 0]
            try:
                yield span
                if _time.monotonic() - self._pruned >= 1.0:
                    forget_expired(conn, _time.time() - REQUEST_ID_WINDOW_S, 1000)
                    self._pruned = _time.monotonic()
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if is_full(exc):
                    raise _full(self.location, exc) from exc
                raise
            finally:
                self._span = None

    def _check_writable(self) -> None:
        if self.read_only_reason:
            raise StoreFull(
                f"the memory store {self.location} is full (no space left on its disk, or its size cap is reached): "
                "nothing was stored"
            )

    def _note(self, first: int, last: int) -> None:
        span = self._span
        if span is not None:
            if not span[0]:
                span[0] = first
            span[1] = last

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested unit inside the current write transaction: an exception rolls back only what
        was written inside it (one writer's records in a group commit)."""
        with self._lock:
            conn = self._c()
            saved = list(self._span) if self._span is not None else None
            conn.execute("SAVEPOINT unit")
            try:
                yield
            except BaseException as exc:
                if conn.in_transaction:  # else SQLITE_FULL rolled back the whole transaction already
                    conn.execute("ROLLBACK TO unit")
                    conn.execute("RELEASE unit")
                    if saved is not None and self._span is not None:
                        self._span[:] = saved
                if is_full(exc):
                    raise _full(self.location, exc) from exc
                raise
            conn.execute("RELEASE unit")

    @property
    def in_transaction(self) -> bool:
        with self._lock:
            return self._c().in_transaction

    # ------------------------------------------------------------------ space
    def set_max_bytes(self, max_bytes: int | None) -> None:
        """Cap the store's size at ``max_bytes`` (rounded down to whole pages; never below its
        current size), or lift the cap (None). A write beyond it fails with ``StoreFull``, as on
        a full disk. Applies to this connection and to the writer process's next batch."""
        with self._lock:
            conn = self._c()
            if not self.dialect.size_cap:
                if max_bytes is not None:
                    raise MemoryStoreError("a size cap (max_bytes) is SQLite-only; PostgreSQL has its own quotas")
                return
            if max_bytes is None:
                pages = None
                conn.execute(f"PRAGMA max_page_count = {NO_PAGE_CAP}")
            else:
                page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
                pages = int(
                    conn.execute(f"PRAGMA max_page_count = {max(1, int(max_bytes) // page_size)}").fetchone()[0]
                )
            self.max_pages = pages

    def apply_max_pages(self, pages: int | None) -> None:
        """The writer process's side of ``set_max_bytes``: the cap as the parent has it."""
        if pages != self.max_pages and self.dialect.size_cap:
            with self._lock:
                self._c().execute(f"PRAGMA max_page_count = {NO_PAGE_CAP if pages is None else int(pages)}")
                self.max_pages = pages
