"""Callers' request ids (``mem_memory.requests``): finding and recording them, their stored
answers, and forgetting them after the window."""

from __future__ import annotations

import time as _time
from typing import Any

from mem_memory.errors import CorruptRecord
from mem_memory.requests import REPLY
from mem_memory.store.base import StoredRequest
from mem_memory.store.transactions import StoreTransactions, forget_expired
from mem_memory.types import (
    DECISION,
    Decision,
)


class StoreRequestIds(StoreTransactions):
    """The ``requests`` table."""

    def find_request(self, kind: str, request_id: str) -> StoredRequest | None:
        """The call of ``kind`` recorded with ``request_id`` within the window; None when unknown."""
        with self._lock:
            row = (
                self._c()
                .execute(
                    "SELECT event_id, reply FROM requests WHERE kind = ? AND tag = ?",
                    (kind, self._codec.tag(request_id)),
                )
                .fetchone()
            )
        if row is None:
            return None
        event_id, reply = int(row[0]), row[1]
        if reply is None:
            return StoredRequest(event_id, None, None)
        if kind == DECISION:
            return StoredRequest(event_id, None, bytes(reply).decode())
        stored = self._payload(event_id, REPLY, reply)
        if "fingerprint" in stored and "answer" in stored:
            return StoredRequest(event_id, stored["answer"], stored["fingerprint"])
        return StoredRequest(event_id, stored, None)  # recorded before fingerprints existed

    def record_request(
        self, kind: str, request_id: str, event_id: int, reply: dict[str, Any] | None = None, fingerprint: str = ""
    ) -> None:
        """Remember ``request_id`` with the tag of the request's ``fingerprint`` and its answer
        ``reply`` (inside the write transaction of its call's records)."""
        tag = self._codec.tag(fingerprint) if fingerprint else None
        record = None if reply is None else self._codec.encode(REPLY, {"answer": reply, "fingerprint": tag})
        with self._lock:
            self._c().execute(
                "INSERT INTO requests(kind, tag, event_id, reply, created) VALUES (?, ?, ?, ?, ?)",
                (kind, self._codec.tag(request_id), int(event_id), record, _time.time()),
            )

    def fingerprint_tag(self, fingerprint: str) -> str:
        """The stored form of a request fingerprint (a keyed tag when encrypted)."""
        return self._codec.tag(fingerprint)

    def decision_from(self, event_id: int, payload: bytes) -> Decision:
        """The decision of a stored event's payload (``Replay.payload``), checked as reads are."""
        try:
            record = self._payload(event_id, DECISION, payload)
            decision: Decision = self._record(event_id, DECISION, str(record.get("decision_id")), payload, record)
            return decision
        except CorruptRecord as exc:
            self._report(exc)
            raise

    def forget_requests(self, older_than: float, limit: int = 1000) -> int:
        """Forget up to ``limit`` request ids recorded before ``older_than`` (epoch seconds);
        returns how many. Write transactions call it with the window's start, at most once a
        second, so ids are remembered for at least ``REQUEST_ID_WINDOW_S``."""
        with self.transaction():
            forgotten = forget_expired(self._c(), older_than, limit)
            self._pruned = _time.monotonic()
            return forgotten
