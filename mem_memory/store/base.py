"""The state every part of ``MemoryStore`` shares: the connection behind one lock, the codec,
the engine's dialect; and the small records the parts pass around."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, NamedTuple

from mem_memory.backend import Conn
from mem_memory.crypto import Codec
from mem_memory.dialect import dialect_of
from mem_memory.errors import StoreClosed
from mem_memory.lock import StoreLock


class PreparedDecision(NamedTuple):
    """A decision encoded for storage: id, symbol lookup tag, (encrypted) payload, the lookup
    tag of the caller's request id (None without one) and the tag of the request's fingerprint."""

    decision_id: str
    symbol_tag: str
    payload: bytes
    request_tag: str | None = None
    fingerprint: str | None = None


class StoredRequest(NamedTuple):
    """A request id found in the window: the event its call wrote, its stored answer (None for
    a decision: the decision is the answer) and the tag of its fingerprint (None when stored
    before fingerprints existed)."""

    event_id: int
    answer: dict[str, Any] | None
    fingerprint: str | None


class StoreState:
    """The shared, durable memory store. Thread-safe (one connection behind a lock); open one
    per process (do not share across fork)."""

    def __init__(
        self, path: Path, conn: Conn, codec: Codec, lock: StoreLock | None = None, location: str | None = None
    ) -> None:
        self.path = path
        #: The store in messages: its file, or its PostgreSQL URL without the password.
        self.location = location or str(path)
        #: What differs between the engines (``mem_memory.dialect``).
        self.dialect = dialect_of(conn)
        #: ``sqlite`` or ``postgresql`` (``mem_memory.backend``).
        self.backend = self.dialect.name
        self._conn: Conn | None = conn
        self._codec = codec
        self._held = lock
        self._lock = threading.RLock()
        self._span: list[int] | None = None  # event ids written by the open group transaction
        #: Corrupt records met by reads so far: event id -> kind (``CorruptRecord``).
        self.corrupt: dict[int, str] = {}
        #: The size cap in pages (None: no cap); the writer process gets it with every batch.
        self.max_pages: int | None = None
        self._pruned = float("-inf")  # when request ids past the window were last forgotten
        self._store_id = ""
        #: Why the store is open read-only ("" when it can write): its disk was full at open.
        #: Writes raise ``StoreFull`` meanwhile; ``probe_write`` reopens it for writing.
        self.read_only_reason = ""
        self._command = ""

    @property
    def writable(self) -> bool:
        """False while the store is open read-only (its disk was full when it was opened)."""
        return not self.read_only_reason

    @property
    def store_id(self) -> str:
        """The store's identity: created once with the store, the same from every process and
        after every reopen (a copy of the file keeps it too). Empty for a prepared writer."""
        return self._store_id

    @property
    def encrypted(self) -> bool:
        return self._codec.encrypted

    def _c(self) -> Conn:
        if self._conn is None:
            raise StoreClosed(f"the memory store {self.location} is closed")
        return self._conn
