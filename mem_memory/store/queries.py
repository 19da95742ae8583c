"""The store's reads: the event log, decisions with their outcomes, closed trades, parameters and
strategies, counts. A corrupt record is left out of a read (reported)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from mem_memory import chains
from mem_memory.errors import (
    CorruptRecord,
    UnknownDecision,
)
from mem_memory.store.request_ids import StoreRequestIds
from mem_memory.types import (
    DECISION,
    OUTCOME,
    PARAMETER_ADJUSTMENT,
    SHADOW_OUTCOME,
    STRATEGY_UPSERT,
    Decision,
    Event,
    Outcome,
    ParameterAdjustment,
    Parameters,
    StrategySpec,
)


def _event_id(row: Any) -> int:
    return int(row[1])


class StoreQueries(StoreRequestIds):
    """Reads."""

    def last_event_id(self) -> int:
        """The newest event id (0 for an empty store); cheap (the rowid b-tree's last page)."""
        with self._lock:
            row = self._c().execute("SELECT max(event_id) FROM events").fetchone()
            return int(row[0] or 0)

    def scan_since(self, event_id: int, limit: int = 1000) -> tuple[list[Event], int]:
        """Events with id > ``event_id``, oldest first, from at most ``limit`` rows, and the id of
        the last row read (the cursor to continue from: it moves past a corrupt event, which is
        left out and reported)."""
        rows = self._event_rows(event_id, limit)
        out = []
        for i, k, s, p in rows:
            try:
                payload = self._payload(i, k, p)
                record = self._record(i, k, s, p, payload)
            except CorruptRecord as exc:
                self._report(exc)
                continue
            out.append(Event(int(i), k, s, payload, record))
        return out, int(rows[-1][0]) if rows else int(event_id)

    def events_since(self, event_id: int, limit: int = 1000) -> list[Event]:
        """Events with id > ``event_id``, oldest first, at most ``limit`` (a cursor: pass the last
        id you got to continue). A corrupt event is left out and reported (``scan_since`` also
        gives the cursor past it)."""
        return self.scan_since(event_id, limit)[0]

    def decision_event_ids(self, decision_ids: Sequence[str]) -> dict[str, int]:
        """The event id of each of ``decision_ids`` that is stored (missing ones are absent)."""
        if not decision_ids:
            return {}
        with self._lock:
            rows = (
                self._c()
                .execute(
                    f"SELECT decision_id, event_id FROM decisions WHERE decision_id IN ({','.join('?' * len(decision_ids))})",
                    list(decision_ids),
                )
                .fetchall()
            )
        return {str(d): int(e) for d, e in rows}

    _PAIR_SQL = (
        "SELECT x.decision_id, d.event_id, d.payload, o.event_id, o.payload, o.kind FROM decisions x "
        "JOIN events d ON d.event_id = x.event_id "
        "LEFT JOIN events o ON o.event_id = x.outcome_event_id "
    )

    def get_decision(self, decision_id: str) -> tuple[Decision, Outcome | None]:
        """A decision and its outcome (None while open); ``UnknownDecision`` when absent,
        ``CorruptRecord`` when either record is corrupt."""
        with self._lock:
            row = self._c().execute(self._PAIR_SQL + "WHERE x.decision_id = ?", (decision_id,)).fetchone()
        if row is None:
            raise UnknownDecision(f"no decision with id {decision_id!r} in memory")
        try:
            return self._pair(*row)
        except CorruptRecord as exc:
            self._report(exc)
            raise

    def recent_decisions(self, symbol: str, n: int) -> list[tuple[Decision, Outcome | None]]:
        """The last ``n`` decisions of ``symbol``, newest first, with outcomes."""
        return self._recent_by_tag(self._codec.tag(symbol), n)

    #: True while the store is at a revision before the chains (opened read-only on a full disk,
    #: so not migrated yet): a symbol's recent decisions come from the index that revision has.
    _unchained = False

    def _recent_by_tag(self, tag: str, n: int) -> list[tuple[Decision, Outcome | None]]:
        if n <= 0:
            return []
        sql = self._PAIR_SQL + "WHERE x.symbol_tag = ? ORDER BY x.event_id DESC LIMIT ?" if self._unchained else None
        with self._lock:
            rows = self._c().execute(sql or chains.RECENT_SQL, (tag, int(n))).fetchall()
        rows.sort(key=_event_id, reverse=True)
        return self._pairs(rows)

    def recent_by_symbol(self, n: int) -> list[tuple[Decision, Outcome | None]]:
        """The last ``n`` decisions of every symbol (for building the in-process index), symbol
        by symbol (in tag order), each oldest first."""
        with self._lock:
            conn = self._c()
            if self._unchained:
                tags = [str(r[0]) for r in conn.execute("SELECT DISTINCT symbol_tag FROM decisions").fetchall()]
            else:
                tags = chains.tags(conn)
        out: list[tuple[Decision, Outcome | None]] = []
        for tag in tags:
            out.extend(reversed(self._recent_by_tag(tag, n)))
        return out

    def closed_trades(self, limit: int, offset: int = 0) -> list[tuple[Decision, Outcome]]:
        """The last ``limit`` closed trades (by close order), oldest first; ``offset`` skips the
        newest ones (for paging back). A trade with a corrupt record is left out."""
        with self._lock:
            rows = (
                self._c()
                .execute(
                    "SELECT x.decision_id, d.event_id, d.payload, o.event_id, o.payload, o.kind FROM decisions x "
                    "JOIN events d ON d.event_id = x.event_id JOIN events o ON o.event_id = x.outcome_event_id "
                    "WHERE x.outcome_event_id IS NOT NULL ORDER BY x.outcome_event_id DESC LIMIT ? OFFSET ?",
                    (int(limit), int(offset)),
                )
                .fetchall()
            )
        pairs = self._pairs(rows)
        pairs.reverse()
        return pairs  # type: ignore[return-value]

    def recent_wins(self, n: int) -> list[bool]:
        """Win flags (``pnl > 0``) of the last ``n`` closed trades, oldest first — what the
        performance monitor needs, from the outcome payloads alone (no decision decoded)."""
        with self._lock:
            rows = (
                self._c()
                .execute(
                    "SELECT event_id, payload FROM events WHERE kind = ? ORDER BY event_id DESC LIMIT ?",
                    (OUTCOME, int(n)),
                )
                .fetchall()
            )
        wins = []
        for event_id, blob in rows:
            try:
                pnl = self._payload(event_id, OUTCOME, blob)["pnl"]
                if isinstance(pnl, bool) or not isinstance(pnl, (int, float)):
                    raise TypeError(type(pnl).__name__)
            except (CorruptRecord, KeyError, TypeError) as exc:
                self._report(
                    exc
                    if isinstance(exc, CorruptRecord)
                    else CorruptRecord(
                        f"stored {OUTCOME} event {event_id} is corrupt (no numeric pnl)", int(event_id), OUTCOME
                    )
                )
                continue
            wins.append(float(pnl) > 0)
        wins.reverse()
        return wins

    def latest_parameters(self) -> tuple[int, Parameters, dict[str, Any]] | None:
        """The current stored parameter set with its event id and rule state (None before the
        first change). A corrupt newest set is reported and the newest sound one is current."""
        found = self._newest_good(
            "SELECT event_id, subject, payload FROM events WHERE kind = ? ORDER BY event_id DESC",
            (PARAMETER_ADJUSTMENT,),
            PARAMETER_ADJUSTMENT,
        )
        if found is None:
            return None
        event_id, (params, _adjustments, state) = found
        return event_id, params, state

    def parameters_by_version(self, version: str) -> Parameters | None:
        """A stored parameter set with this content hash, or None."""
        found = self._newest_good(
            "SELECT event_id, subject, payload FROM events WHERE kind = ? AND subject = ? ORDER BY event_id DESC",
            (PARAMETER_ADJUSTMENT, self._codec.tag(version)),
            PARAMETER_ADJUSTMENT,
        )
        return None if found is None else found[1][0]

    def parameter_history(self) -> list[tuple[int, Parameters, list[ParameterAdjustment]]]:
        """Every parameter change, oldest first (a corrupt one is left out)."""
        with self._lock:
            rows = (
                self._c()
                .execute(
                    "SELECT event_id, subject, payload FROM events WHERE kind = ? ORDER BY event_id",
                    (PARAMETER_ADJUSTMENT,),
                )
                .fetchall()
            )
        out = []
        for event_id, subject, blob in rows:
            try:
                params, adjustments, _state = self._record(event_id, PARAMETER_ADJUSTMENT, subject, blob)
            except CorruptRecord as exc:
                self._report(exc)
                continue
            out.append((int(event_id), params, adjustments))
        return out

    def parameter_changes_after(
        self, event_id: int, limit: int = 10_000
    ) -> list[tuple[int, list[ParameterAdjustment]]]:
        """The parameter changes recorded after event ``event_id`` (oldest first; the newest
        ``limit`` when there are more), each with its event id: what changed since a reader last looked."""
        with self._lock:
            rows = (
                self._c()
                .execute(
                    "SELECT event_id, payload FROM events WHERE kind = ? AND event_id > ? ORDER BY event_id DESC LIMIT ?",
                    (PARAMETER_ADJUSTMENT, int(event_id), int(limit)),
                )
                .fetchall()
            )
        out = [
            (
                int(e),
                [
                    ParameterAdjustment.from_dict(a)
                    for a in self._codec.decode(PARAMETER_ADJUSTMENT, blob)["adjustments"]
                ],
            )
            for e, blob in rows
        ]
        out.reverse()
        return out

    def strategies(self) -> dict[str, StrategySpec]:
        """The newest spec of every learned strategy (deprecated included), by name; a strategy
        whose newest record is corrupt is left out (reported)."""
        with self._lock:
            rows = (
                self._c()
                .execute(
                    "SELECT e.event_id, e.subject, e.payload FROM heads h JOIN events e ON e.event_id = h.event_id WHERE h.kind = ? ORDER BY h.event_id",
                    (STRATEGY_UPSERT,),
                )
                .fetchall()
            )
        specs = []
        for event_id, subject, blob in rows:
            try:
                specs.append(self._record(event_id, STRATEGY_UPSERT, subject, blob))
            except CorruptRecord as exc:
                self._report(exc)
        return {s.name: s for s in specs}

    def strategy(self, name: str) -> StrategySpec | None:
        """The newest spec of ``name`` (None when unknown); ``CorruptRecord`` when it is corrupt."""
        with self._lock:
            row = (
                self._c()
                .execute(
                    "SELECT e.event_id, e.subject, e.payload FROM heads h JOIN events e ON e.event_id = h.event_id WHERE h.kind = ? AND h.subject = ?",
                    (STRATEGY_UPSERT, self._codec.tag(name)),
                )
                .fetchone()
            )
        if row is None:
            return None
        try:
            spec: StrategySpec = self._record(row[0], STRATEGY_UPSERT, row[1], row[2])
            return spec
        except CorruptRecord as exc:
            self._report(exc)
            raise

    def decision_at(self, event_id: int) -> Decision:
        """The decision of event ``event_id`` (``CorruptRecord`` when it is corrupt)."""
        with self._lock:
            row = (
                self._c()
                .execute(
                    "SELECT subject, payload FROM events WHERE event_id = ? AND kind = ?", (int(event_id), DECISION)
                )
                .fetchone()
            )
        if row is None:
            raise UnknownDecision(f"no decision at event {event_id}")
        try:
            decision: Decision = self._record(event_id, DECISION, row[0], row[1])
            return decision
        except CorruptRecord as exc:
            self._report(exc)
            raise

    def iter_events(self, kinds: Sequence[str] | None = None, page: int = 5000) -> Iterator[Event]:
        """Every sound event, oldest first, paged (exports)."""
        cursor = 0
        while True:
            batch, after = self.scan_since(cursor, limit=page)
            if after == cursor:
                return
            for e in batch:
                if kinds is None or e.kind in kinds:
                    yield e
            cursor = after

    def outcomes_after(self, event_id: int, cap: int = 1_000_000_000) -> int:
        """How many trade outcomes (shadow outcomes not counted) were recorded after event
        ``event_id`` (counting stops at ``cap``, so "at least 20 since" costs 20 index steps, not
        a scan)."""
        with self._lock:
            row = (
                self._c()
                .execute(
                    "SELECT count(*) FROM (SELECT 1 FROM events WHERE kind = ? AND event_id > ? LIMIT ?) AS t",
                    (OUTCOME, int(event_id), int(cap)),
                )
                .fetchone()
            )
        return int(row[0])

    def counts(self) -> dict[str, int]:
        """Decisions, trade outcomes, and shadow outcomes (of held signals)."""
        with self._lock:
            n, closed = self._c().execute("SELECT count(*), count(outcome_event_id) FROM decisions").fetchone()
            shadows = self._c().execute("SELECT count(*) FROM events WHERE kind = ?", (SHADOW_OUTCOME,)).fetchone()[0]
        return {"decisions": int(n), "outcomes": int(closed) - int(shadows), "shadow_outcomes": int(shadows)}
