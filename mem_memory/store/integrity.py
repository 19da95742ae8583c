"""Checked records: a stored event's payload decodes (and authenticates), builds its record and
names the subject it is filed under, else ``CorruptRecord`` (remembered, logged once, left out
of reads); the check of every event (``mem memory verify``) and the engine's own checks."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from mem_memory.crypto import Codec
from mem_memory.errors import (
    CorruptRecord,
    MemoryStoreError,
)
from mem_memory.store.base import StoreState
from mem_memory.types import (
    DECISION,
    OUTCOME,
    PARAMETER_ADJUSTMENT,
    SHADOW_OUTCOME,
    STRATEGY_UPSERT,
    Decision,
    Outcome,
    ParameterAdjustment,
    Parameters,
    StrategySpec,
)

log = logging.getLogger(__name__)


def _build_decision(p: dict[str, Any], codec: Codec) -> tuple[Decision, str]:
    d = Decision.from_dict(p)
    return d, d.decision_id


def _build_outcome(p: dict[str, Any], codec: Codec) -> tuple[Outcome, str]:
    o = Outcome.from_dict(p)
    return o, o.decision_id


def _build_parameters(
    p: dict[str, Any], codec: Codec
) -> tuple[tuple[Parameters, list[ParameterAdjustment], dict[str, Any]], str]:
    params = Parameters.from_dict(p["parameters"])
    adjustments = [ParameterAdjustment.from_dict(a) for a in p["adjustments"]]
    return (params, adjustments, dict(p.get("state", {}))), codec.tag(params.version)


def _build_strategy(p: dict[str, Any], codec: Codec) -> tuple[StrategySpec, str]:
    spec = StrategySpec.from_dict(p)
    return spec, codec.tag(spec.name)


#: Per event kind: payload -> (record, the subject it must be filed under).
_BUILD: dict[str, Any] = {
    DECISION: _build_decision,
    OUTCOME: _build_outcome,
    SHADOW_OUTCOME: _build_outcome,
    PARAMETER_ADJUSTMENT: _build_parameters,
    STRATEGY_UPSERT: _build_strategy,
}


class StoreIntegrity(StoreState):
    """Reading stored records safely, and checking the whole store."""

    def _payload(self, event_id: int, kind: str, blob: bytes) -> dict[str, Any]:
        try:
            return self._codec.decode(kind, blob)
        except CorruptRecord as exc:
            raise CorruptRecord(f"stored {kind} event {event_id} is corrupt ({exc})", int(event_id), kind) from None

    def _record(
        self, event_id: int, kind: str, subject: str, blob: bytes, payload: dict[str, Any] | None = None
    ) -> Any:
        """The record of one stored event, checked: its payload decodes (and authenticates), the
        record builds from it, and it names the subject it is filed under (a decision or outcome
        its decision id, a parameter set the tag of its content hash, a strategy the tag of its
        name). ``CorruptRecord`` carrying the event id otherwise."""
        if payload is None:
            payload = self._payload(event_id, kind, blob)
        build = _BUILD.get(kind)
        if build is None:
            raise CorruptRecord(f"stored event {event_id} is corrupt (unknown kind {kind[:40]!r})", int(event_id), kind)
        try:
            record, filed_as = build(payload, self._codec)
        except (MemoryStoreError, TypeError, KeyError, ValueError, AttributeError, IndexError) as exc:
            raise CorruptRecord(
                f"stored {kind} event {event_id} is corrupt (its record does not build: {type(exc).__name__})",
                int(event_id),
                kind,
            ) from None
        if filed_as != subject:
            raise CorruptRecord(
                f"stored {kind} event {event_id} is corrupt (its record is filed under another subject)",
                int(event_id),
                kind,
            )
        return record

    def _report(self, exc: CorruptRecord) -> None:
        """Remember and log a corrupt record once (the read that met it leaves it out)."""
        key = exc.event_id if exc.event_id is not None else -1
        if key not in self.corrupt:
            self.corrupt[key] = exc.kind or "?"
            log.error(
                "memory store %s: %s; left out (`mem memory verify` lists every corrupt record)", self.location, exc
            )

    def _pair(
        self, decision_id: str, d_id: int, d: bytes, o_id: int | None, o: bytes | None, o_kind: str | None = None
    ) -> tuple[Decision, Outcome | None]:
        decision = self._record(d_id, DECISION, decision_id, d)
        outcome = self._record(o_id, o_kind or OUTCOME, decision_id, o) if o_id is not None and o is not None else None
        return decision, outcome

    def _pairs(self, rows: Iterable[tuple[Any, ...]]) -> list[tuple[Decision, Outcome | None]]:
        """Decision/outcome pairs of ``rows``; a pair with a corrupt record is left out (reported)."""
        out = []
        for row in rows:
            try:
                out.append(self._pair(*row))
            except CorruptRecord as exc:
                self._report(exc)
        return out

    def _newest_good(self, sql: str, args: tuple[Any, ...], kind: str) -> tuple[int, Any] | None:
        """The newest event of ``sql`` (rows ``event_id, subject, payload`` newest first) whose
        record is sound, with its id; corrupt newer ones are reported and passed over."""
        with self._lock:
            cur = self._c().execute(sql, args)
            try:
                while rows := cur.fetchmany(4):
                    for event_id, subject, blob in rows:
                        try:
                            return int(event_id), self._record(event_id, kind, subject, blob)
                        except CorruptRecord as exc:
                            self._report(exc)
            finally:
                cur.close()
        return None

    def _event_rows(self, after: int, limit: int) -> list[tuple[int, str, str, bytes]]:
        """Up to ``limit`` raw event rows (id, kind, subject, payload) after ``after``, oldest first."""
        with self._lock:
            return (
                self._c()
                .execute(
                    "SELECT event_id, kind, subject, payload FROM events WHERE event_id > ? ORDER BY event_id LIMIT ?",
                    (int(after), int(limit)),
                )
                .fetchall()
            )

    def check_events(self, after: int = 0, limit: int = 5000) -> tuple[int, list[CorruptRecord], int]:
        """Check the records of up to ``limit`` events after ``after`` without reporting them:
        (rows read, the corrupt ones, the cursor to continue from). ``mem memory verify``."""
        rows = self._event_rows(after, limit)
        bad = []
        for i, k, s, p in rows:
            try:
                self._record(i, k, s, p)
            except CorruptRecord as exc:
                bad.append(exc)
        return len(rows), bad, int(rows[-1][0]) if rows else int(after)

    def integrity_check(self) -> str:
        with self._lock:
            return self.dialect.integrity_check(self._c())

    def checkpoint(self) -> None:
        """Move the WAL into the main file and truncate it."""
        with self._lock:
            self.dialect.checkpoint(self._c())
