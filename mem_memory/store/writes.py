"""Appends: decisions (prepared outside the lock, written many at once by the group commit),
outcomes, parameter sets, strategies, and the bulk load."""

from __future__ import annotations

import time as _time
from collections.abc import Iterable, Sequence
from typing import Any

from mem_memory import chains
from mem_memory.backend import INTEGRITY_ERRORS
from mem_memory.errors import (
    DuplicateDecision,
    DuplicateOutcome,
    UnknownDecision,
)
from mem_memory.requests import Conflict, Replay
from mem_memory.store.base import PreparedDecision
from mem_memory.store.queries import StoreQueries
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


class StoreWrites(StoreQueries):
    """Appends to the event log and its lookup tables."""

    #: How many symbol heads the store had when last read whole (``chains.heads_of``'s hint).
    _symbol_heads = 0

    def _insert(self, kind: str, subject: str, record: dict[str, Any]) -> int:
        event_id = self.dialect.insert_events(self._c(), [(kind, subject, self._codec.encode(kind, record))])
        self._note(event_id, event_id)
        return event_id

    def prepare_decision(self, decision: Decision, request_id: str = "", fingerprint: str = "") -> PreparedDecision:
        """Encode (and encrypt) a decision for ``append_prepared_checked`` — CPU work that needs no lock,
        so concurrent writers do it before they queue for the commit. ``request_id``: the
        caller's id of the request (``mem_memory.requests``), stored with the tag of the
        request's ``fingerprint``."""
        return self.prepare_decisions([decision], [request_id], [fingerprint])[0]

    def prepare_decisions(
        self, decisions: Sequence[Decision], request_ids: Sequence[str], fingerprints: Sequence[str]
    ) -> list[PreparedDecision]:
        """``prepare_decision`` of each decision with its request id and fingerprint (the same
        records, encoded together: ``Codec.encode_many``)."""
        codec = self._codec
        tag = codec.tag
        make = tuple.__new__  # PreparedDecision's own __new__, without its Python frame
        return [
            make(
                PreparedDecision,
                (
                    d.decision_id,
                    symbol_tag,
                    payload,
                    tag(request_id) if request_id else None,
                    tag(fingerprint) if request_id and fingerprint else None,
                ),
            )
            for d, symbol_tag, payload, request_id, fingerprint in zip(
                decisions,
                codec.symbol_tags([d.symbol for d in decisions]),
                codec.encode_many(DECISION, decisions),
                request_ids,
                fingerprints,
                strict=True,
            )
        ]

    def append_prepared_checked(
        self, prepared: Sequence[PreparedDecision], written: dict[str, tuple[int, PreparedDecision]] | None = None
    ) -> list[int | Replay | Conflict]:
        """Write prepared decisions inside the current transaction, checking their request ids
        there (the one check): per decision its new event id, or ``Replay`` (the id is recorded
        with the same fingerprint, or twice in ``prepared``: the first one's event) or
        ``Conflict`` (another fingerprint), which write nothing. One SELECT for the ids, then
        ``append_prepared_many`` for the rest. ``written``: the request ids that calls before
        this one wrote in the transaction (a batch written in parts), answered as a repeat
        within ``prepared`` is; this call's are added to it."""
        conn = self._c()
        if not conn.in_transaction:
            raise RuntimeError("append_prepared_checked needs an open write transaction")
        earlier = written or {}
        tags = list(
            dict.fromkeys(p.request_tag for p in prepared if p.request_tag is not None and p.request_tag not in earlier)
        )
        known: dict[str, tuple[int, str | None, bytes]] = {}
        if tags:
            with self._lock:
                rows = conn.execute(
                    "SELECT r.tag, r.event_id, r.reply, e.payload FROM requests r JOIN events e ON e.event_id = r.event_id"
                    f" WHERE r.kind = ? AND r.tag IN ({','.join('?' * len(tags))})",
                    [DECISION, *tags],
                ).fetchall()
            known = {str(t): (int(e), None if fp is None else bytes(fp).decode(), bytes(pl)) for t, e, fp, pl in rows}
        results: list[int | Replay | Conflict | None] = [None] * len(prepared)
        writing: dict[str, int] = {}  # request tag -> index of the decision of this batch that records it
        write: list[int] = []
        for i, p in enumerate(prepared):
            t = p.request_tag
            if t is not None and t in earlier:
                seen_id, seen = earlier[t]
                results[i] = Replay(seen_id, seen.payload) if seen.fingerprint == p.fingerprint else Conflict(seen_id)
            elif t is not None and t in known:
                event_id, fp, payload = known[t]
                same = fp is None or fp == p.fingerprint
                results[i] = Replay(event_id, payload, fp is not None) if same else Conflict(event_id)
            elif t is not None and t in writing:
                results[i] = -1 - writing[t]  # resolved below, once the first one has its event id
            else:
                if t is not None:
                    writing[t] = i
                write.append(i)
        for i, new_id in zip(write, self.append_prepared_many([prepared[i] for i in write])):
            results[i] = new_id
            if written is not None and (t := prepared[i].request_tag) is not None:
                written[t] = (new_id, prepared[i])
        for i, r in enumerate(results):
            if isinstance(r, int) and r < 0:
                first = prepared[-1 - r]
                first_id = results[-1 - r]
                assert isinstance(first_id, int)
                same = first.fingerprint == prepared[i].fingerprint
                results[i] = Replay(first_id, first.payload) if same else Conflict(first_id)
        return [r for r in results if r is not None]

    def append_prepared_many(self, prepared: Sequence[PreparedDecision]) -> list[int]:
        """Write several prepared decisions with four statements (one multi-row INSERT per table,
        the lookup of their symbols' heads and its upsert: ``mem_memory.chains``), inside the
        current transaction; returns their event ids. No duplicate check of its own:
        a repeated decision id fails the whole statement with ``sqlite3.IntegrityError`` (the
        caller rolls back), and so does a repeated request id. Few statements matter: each one lets other Python threads take the
        GIL, and the committing thread then waits to get it back."""
        conn = self._c()
        if not conn.in_transaction:
            raise RuntimeError("append_prepared_many needs an open write transaction")
        n = len(prepared)
        if not n:
            return []
        with self._lock:
            last = self.dialect.insert_events(conn, [(DECISION, p.decision_id, p.payload) for p in prepared])
            first = last - n + 1  # one statement: consecutive ids in VALUES order
            symbols = [p.symbol_tag for p in prepared]
            heads, self._symbol_heads = chains.heads_of(conn, symbols, self._symbol_heads)
            dec_args: list[Any] = []
            for i, (p, prev) in enumerate(zip(prepared, chains.link(symbols, first, heads))):
                dec_args += (p.decision_id, p.symbol_tag, first + i, prev)
            conn.execute(
                "INSERT INTO decisions(decision_id, symbol_tag, event_id, prev_event_id) VALUES "
                + ",".join(["(?,?,?,?)"] * n),
                dec_args,
            )
            chains.set_heads(conn, heads)
            tagged = [(p, first + i) for i, p in enumerate(prepared) if p.request_tag is not None]
            if tagged:
                now, req_args = _time.time(), list[Any]()
                for p, event_id in tagged:
                    fp = None if p.fingerprint is None else p.fingerprint.encode()
                    req_args += (DECISION, p.request_tag, event_id, fp, now)
                conn.execute(
                    "INSERT INTO requests(kind, tag, event_id, reply, created) VALUES "
                    + ",".join(["(?,?,?,?,?)"] * len(tagged)),
                    req_args,
                )
            self._note(first, last)
            return list(range(first, last + 1))

    def append_decision(self, decision: Decision) -> int:
        """Record a decision; returns its event id once durable. ``DuplicateDecision`` if the id
        exists."""
        with self.transaction():
            if self._c().execute("SELECT 1 FROM decisions WHERE decision_id = ?", (decision.decision_id,)).fetchone():
                raise DuplicateDecision(f"decision {decision.decision_id} is already recorded")
            return self.append_prepared_many([self.prepare_decision(decision)])[0]

    def append_outcome(self, outcome: Outcome) -> int:
        """Record the outcome of a decision (a shadow outcome as kind ``shadow_outcome``).
        ``UnknownDecision`` when the id is not stored, ``DuplicateOutcome`` when it already has
        one (checked and set atomically)."""
        with self.transaction():
            conn = self._c()
            row = conn.execute(
                "SELECT outcome_event_id FROM decisions WHERE decision_id = ?", (outcome.decision_id,)
            ).fetchone()
            if row is None:
                raise UnknownDecision(f"no decision with id {outcome.decision_id!r} in memory")
            if row[0] is not None:
                raise DuplicateOutcome(f"decision {outcome.decision_id} already has an outcome (event {row[0]})")
            event_id = self._insert(
                SHADOW_OUTCOME if outcome.shadow else OUTCOME, outcome.decision_id, outcome.to_dict()
            )
            conn.execute(
                "UPDATE decisions SET outcome_event_id = ? WHERE decision_id = ?", (event_id, outcome.decision_id)
            )
            return event_id

    def append_parameters(
        self, parameters: Parameters, adjustments: Sequence[ParameterAdjustment], state: dict[str, Any] | None = None
    ) -> int:
        """Record a new current parameter set, the adjustments that led to it, and the rules'
        small state carried with it (e.g. the performance monitor's last firing)."""
        record = {
            "parameters": parameters.to_dict(),
            "adjustments": [a.to_dict() for a in adjustments],
            "state": dict(state or {}),
        }
        with self.transaction():
            return self._insert(PARAMETER_ADJUSTMENT, self._codec.tag(parameters.version), record)

    def append_strategy(self, spec: StrategySpec) -> int:
        """Record a created, updated or deprecated learned strategy (the newest record wins)."""
        with self.transaction():
            subject = self._codec.tag(spec.name)
            event_id = self._insert(STRATEGY_UPSERT, subject, spec.to_dict())
            self._c().execute(
                "INSERT INTO heads(kind, subject, event_id) VALUES (?, ?, ?) "
                "ON CONFLICT(kind, subject) DO UPDATE SET event_id = excluded.event_id",
                (STRATEGY_UPSERT, subject, event_id),
            )
            return event_id

    def bulk_append(self, decisions: Iterable[Decision], outcomes: Iterable[Outcome] = ()) -> int:
        """Fast path for loading history (benchmarks, imports): every decision, then every
        outcome, in ONE transaction with executemany. Outcomes must name decisions of this batch
        or already stored ones without an outcome. Returns the number of events written."""
        codec = self._codec
        with self.transaction():
            conn = self._c()
            next_id = self.dialect.next_event_id(conn, self.last_event_id())
            ev_rows: list[tuple[int, str, str, bytes]] = []
            tags: list[str] = []
            for d in decisions:
                ev_rows.append((next_id, DECISION, d.decision_id, codec.encode(DECISION, d.to_dict())))
                tags.append(codec.tag(d.symbol))
                next_id += 1
            heads, self._symbol_heads = chains.heads_of(conn, tags, self._symbol_heads)
            first = next_id - len(ev_rows)
            dec_rows = [(e[2], tag, e[0], prev) for e, tag, prev in zip(ev_rows, tags, chains.link(tags, first, heads))]
            conn.executemany("INSERT INTO events(event_id, kind, subject, payload) VALUES (?, ?, ?, ?)", ev_rows)
            try:
                conn.executemany(
                    "INSERT INTO decisions(decision_id, symbol_tag, event_id, prev_event_id) VALUES (?, ?, ?, ?)",
                    dec_rows,
                )
            except INTEGRITY_ERRORS as exc:
                raise DuplicateDecision(f"bulk load repeats a stored decision id ({exc})") from None
            chains.set_heads(conn, heads)
            n = len(ev_rows)
            ev_rows, out_rows = [], []
            for o in outcomes:
                kind = SHADOW_OUTCOME if o.shadow else OUTCOME
                ev_rows.append((next_id, kind, o.decision_id, codec.encode(kind, o.to_dict())))
                out_rows.append((next_id, o.decision_id))
                next_id += 1
            conn.executemany("INSERT INTO events(event_id, kind, subject, payload) VALUES (?, ?, ?, ?)", ev_rows)
            cur = conn.executemany(
                "UPDATE decisions SET outcome_event_id = ? WHERE decision_id = ? AND outcome_event_id IS NULL", out_rows
            )
            if cur.rowcount != len(out_rows):
                raise UnknownDecision("bulk load: an outcome names an unknown or already closed decision")
            return n + len(ev_rows)
