"""The durable memory: one SQLite file in WAL mode, an append-only event log plus two small
lookup tables kept in the same transactions.

Layout (docs/memory.md):

- ``events(event_id INTEGER PRIMARY KEY AUTOINCREMENT, kind, subject, payload)`` — the audit
  trail. Every change is one appended row; nothing is updated or deleted. ``payload`` is the
  record as JSON, AES-GCM encrypted when the store has a key. ``subject`` is the decision id
  (random UUID) for decisions and outcomes, and a keyed HMAC tag of the strategy name or the
  parameter version otherwise (the text itself without a key).
- ``decisions(decision_id PRIMARY KEY, symbol_tag, event_id, outcome_event_id)`` — finds a
  decision, its symbol's recent decisions, and the closed trades; ``outcome_event_id`` set once
  makes "one outcome per decision" atomic across processes.
- ``heads(kind, subject, event_id)`` — the latest event per strategy name.
- ``meta`` — format version, whether the store is encrypted, the key-check record, and the
  store's id (a random UUID created once: which store a server writes, ``store_id``).

Writes run in ``BEGIN IMMEDIATE`` transactions (one writer at a time across processes, waiting up
to ``busy_timeout``), so event ids are committed in increasing order: a reader that has seen id N
has seen every event <= N. ``synchronous=FULL`` makes every acknowledged commit durable before
it returns. ``group_transaction`` + ``savepoint`` + ``append_prepared_many`` are the pieces the
group committer (``mem_memory.group``) writes several callers' records with, in one commit. The file is created 0600 and SQLite creates ``-wal``/``-shm`` with the database's
mode; ``open`` tightens any of the three that are looser.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from mem_memory.crypto import Codec
from mem_memory.errors import (
    DuplicateDecision,
    DuplicateOutcome,
    MemoryKeyError,
    MissingMemoryKey,
    StoreClosed,
    UnencryptedStoreKeyError,
    UnknownDecision,
    WrongMemoryKey,
)
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

log = logging.getLogger(__name__)


class PreparedDecision(NamedTuple):
    """A decision encoded for storage: id, symbol lookup tag, (encrypted) payload."""

    decision_id: str
    symbol_tag: str
    payload: bytes


FORMAT_VERSION = "1"
BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    event_id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind, event_id);
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY,
    symbol_tag TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    outcome_event_id INTEGER
);
CREATE INDEX IF NOT EXISTS decisions_symbol ON decisions(symbol_tag, event_id);
CREATE INDEX IF NOT EXISTS decisions_closed ON decisions(outcome_event_id) WHERE outcome_event_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS heads (
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    PRIMARY KEY (kind, subject)
);
CREATE INDEX IF NOT EXISTS events_subject ON events(kind, subject, event_id);
"""


def _create_private(path: Path) -> None:
    """Create the database file 0600 (O_EXCL: a concurrent creator simply wins)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _tighten(path: Path) -> None:
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        if stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.getuid():
            os.chmod(p, 0o600)


def _connect(p: Path) -> sqlite3.Connection:
    """A connection in WAL mode with ``synchronous=FULL`` (every commit fsynced) and the busy
    timeout that serialises writers across processes."""
    conn = sqlite3.connect(p, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"could not switch {p} to WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous=FULL")
    except BaseException:
        conn.close()
        raise
    return conn


class MemoryStore:
    """The shared, durable memory store. Thread-safe (one connection behind a lock); open one
    per process (do not share across fork)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, codec: Codec) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = conn
        self._codec = codec
        self._lock = threading.RLock()
        self._span: list[int] | None = None  # event ids written by the open group transaction
        self._store_id = ""

    # ------------------------------------------------------------------ open / close
    @classmethod
    def open(cls, path: str | os.PathLike[str], key: bytes | None = None) -> MemoryStore:
        """Open (creating when missing) the store at ``path``.

        ``key`` (32 bytes, see ``key_from_env``) turns on encryption for a new store and must be
        the same key for an existing encrypted one. Raises ``MissingMemoryKey``,
        ``WrongMemoryKey`` or ``UnencryptedStoreKeyError`` (all ``MemoryKeyError``) otherwise.
        """
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        codec = Codec(key)
        _create_private(p)
        conn = _connect(p)
        try:
            store = cls(p, conn, codec)
            store._init_meta()
        except BaseException:
            conn.close()
            raise
        _tighten(p)
        return store

    @classmethod
    def attach_prepared_writer(cls, path: str | os.PathLike[str]) -> MemoryStore:
        """A connection to an existing store that only writes decisions prepared (encoded and
        encrypted) by a store opened with the key: the writer process of
        ``mem_memory.writer``. It holds no key; its reads would not decode."""
        p = Path(path)
        if not p.exists():
            raise StoreClosed(f"the memory store {p} does not exist")
        conn = _connect(p)
        try:
            if conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'decisions'").fetchone()[0] != 1:
                raise StoreClosed(f"{p} is not a memory store (no decisions table)")
        except BaseException:
            conn.close()
            raise
        return cls(p, conn, Codec(None))

    def _init_meta(self) -> None:
        conn = self._c()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            meta = dict(conn.execute("SELECT k, v FROM meta").fetchall())
            if "format" not in meta:
                conn.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT_VERSION,))
                conn.execute("INSERT INTO meta VALUES ('encrypted', ?)", ("1" if self._codec.encrypted else "0",))
                if self._codec.encrypted:
                    conn.execute("INSERT INTO meta VALUES ('key_check', ?)", (self._codec.key_check(),))
            elif meta.get("encrypted") == "1":
                if not self._codec.encrypted:
                    raise MissingMemoryKey(
                        f"the memory store {self.path} is encrypted; set MEM_MEMORY_KEY to the key it was created with"
                    )
                if not self._codec.verify(bytes(meta["key_check"])):
                    raise WrongMemoryKey(f"the key given is not the key of the memory store {self.path}")
            elif self._codec.encrypted:
                raise UnencryptedStoreKeyError(
                    f"the memory store {self.path} was created without encryption; unset MEM_MEMORY_KEY or use a new store"
                )
            if "store_id" not in meta:  # stores made before ids existed get theirs on first open
                meta["store_id"] = str(uuid.uuid4())
                conn.execute("INSERT INTO meta VALUES ('store_id', ?)", (meta["store_id"],))
            self._store_id = str(meta["store_id"])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MemoryStore(path={str(self.path)!r}, encrypted={self.encrypted}, open={self._conn is not None})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("MemoryStore holds a connection and key material; open it again in the other process")

    @property
    def store_id(self) -> str:
        """The store's identity: created once with the store, the same from every process and
        after every reopen (a copy of the file keeps it too). Empty for a prepared writer."""
        return self._store_id

    @property
    def encrypted(self) -> bool:
        return self._codec.encrypted

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreClosed(f"the memory store {self.path} is closed")
        return self._conn

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def transaction(self) -> Iterator[MemoryStore]:
        """One write transaction (``BEGIN IMMEDIATE``): reads inside see the latest committed
        state and no other process writes until it ends. Nested use joins the outer one."""
        with self._lock:
            conn = self._c()
            if conn.in_transaction:
                yield self
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[MemoryStore]:
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

    def _insert(self, kind: str, subject: str, record: dict[str, Any]) -> int:
        cur = self._c().execute(
            "INSERT INTO events(kind, subject, payload) VALUES (?, ?, ?)", (kind, subject, self._codec.encode(kind, record))
        )
        event_id = int(cur.lastrowid)
        self._note(event_id, event_id)
        return event_id

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
            conn.execute("BEGIN IMMEDIATE")
            self._span = span = [0, 0]
            try:
                yield span
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._span = None

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
            except BaseException:
                conn.execute("ROLLBACK TO unit")
                conn.execute("RELEASE unit")
                if saved is not None and self._span is not None:
                    self._span[:] = saved
                raise
            conn.execute("RELEASE unit")

    # ------------------------------------------------------------------ appends
    def prepare_decision(self, decision: Decision) -> PreparedDecision:
        """Encode (and encrypt) a decision for ``append_prepared`` — CPU work that needs no lock,
        so concurrent writers do it before they queue for the commit."""
        return PreparedDecision(
            decision.decision_id, self._codec.tag(decision.symbol), self._codec.encode(DECISION, decision.to_dict())
        )

    def append_prepared(self, prepared: PreparedDecision) -> int:
        """Write a prepared decision (joining the current transaction, or in its own); returns its
        event id. ``DuplicateDecision`` if the id exists (nothing is written then)."""
        with self.transaction():
            conn = self._c()
            if conn.execute("SELECT 1 FROM decisions WHERE decision_id = ?", (prepared.decision_id,)).fetchone():
                raise DuplicateDecision(f"decision {prepared.decision_id} is already recorded")
            return self.append_prepared_many([prepared])[0]

    def append_prepared_many(self, prepared: Sequence[PreparedDecision]) -> list[int]:
        """Write several prepared decisions with two statements (one multi-row INSERT per table),
        inside the current transaction; returns their event ids. No duplicate check of its own:
        a repeated decision id fails the whole statement with ``sqlite3.IntegrityError`` (the
        caller rolls back). Few statements matter: each one lets other Python threads take the
        GIL, and the committing thread then waits to get it back."""
        conn = self._c()
        if not conn.in_transaction:
            raise RuntimeError("append_prepared_many needs an open write transaction")
        n = len(prepared)
        if not n:
            return []
        with self._lock:
            ev_args: list[Any] = []
            for p in prepared:
                ev_args += (DECISION, p.decision_id, p.payload)
            cur = conn.execute("INSERT INTO events(kind, subject, payload) VALUES " + ",".join(["(?,?,?)"] * n), ev_args)
            last = int(cur.lastrowid)
            first = last - n + 1  # one statement, AUTOINCREMENT: consecutive ids in VALUES order
            dec_args: list[Any] = []
            for i, p in enumerate(prepared):
                dec_args += (p.decision_id, p.symbol_tag, first + i)
            conn.execute(
                "INSERT INTO decisions(decision_id, symbol_tag, event_id) VALUES " + ",".join(["(?,?,?)"] * n), dec_args
            )
            self._note(first, last)
            return list(range(first, last + 1))

    def append_decision(self, decision: Decision) -> int:
        """Record a decision; returns its event id once durable. ``DuplicateDecision`` if the id
        exists."""
        return self.append_prepared(self.prepare_decision(decision))

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
            event_id = self._insert(SHADOW_OUTCOME if outcome.shadow else OUTCOME, outcome.decision_id, outcome.to_dict())
            conn.execute("UPDATE decisions SET outcome_event_id = ? WHERE decision_id = ?", (event_id, outcome.decision_id))
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
            next_id = self.last_event_id() + 1
            seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name='events'").fetchone()
            next_id = max(next_id, (seq[0] if seq else 0) + 1)
            ev_rows: list[tuple[int, str, str, bytes]] = []
            dec_rows: list[tuple[str, str, int]] = []
            for d in decisions:
                ev_rows.append((next_id, DECISION, d.decision_id, codec.encode(DECISION, d.to_dict())))
                dec_rows.append((d.decision_id, codec.tag(d.symbol), next_id))
                next_id += 1
            conn.executemany("INSERT INTO events(event_id, kind, subject, payload) VALUES (?, ?, ?, ?)", ev_rows)
            try:
                conn.executemany("INSERT INTO decisions(decision_id, symbol_tag, event_id) VALUES (?, ?, ?)", dec_rows)
            except sqlite3.IntegrityError as exc:
                raise DuplicateDecision(f"bulk load repeats a stored decision id ({exc})") from None
            n = len(ev_rows)
            ev_rows, out_rows = [], []
            for o in outcomes:
                ev_rows.append((next_id, OUTCOME, o.decision_id, codec.encode(OUTCOME, o.to_dict())))
                out_rows.append((next_id, o.decision_id))
                next_id += 1
            conn.executemany("INSERT INTO events(event_id, kind, subject, payload) VALUES (?, ?, ?, ?)", ev_rows)
            cur = conn.executemany(
                "UPDATE decisions SET outcome_event_id = ? WHERE decision_id = ? AND outcome_event_id IS NULL", out_rows
            )
            if cur.rowcount != len(out_rows):
                raise UnknownDecision("bulk load: an outcome names an unknown or already closed decision")
            return n + len(ev_rows)

    # ------------------------------------------------------------------ reads
    def last_event_id(self) -> int:
        """The newest event id (0 for an empty store); cheap (the rowid b-tree's last page)."""
        with self._lock:
            row = self._c().execute("SELECT max(event_id) FROM events").fetchone()
            return int(row[0] or 0)

    def events_since(self, event_id: int, limit: int = 1000) -> list[Event]:
        """Events with id > ``event_id``, oldest first, at most ``limit`` (a cursor: pass the last
        id you got to continue)."""
        with self._lock:
            rows = self._c().execute(
                "SELECT event_id, kind, subject, payload FROM events WHERE event_id > ? ORDER BY event_id LIMIT ?",
                (int(event_id), int(limit)),
            ).fetchall()
        return [Event(int(i), k, s, self._codec.decode(k, p)) for i, k, s, p in rows]

    def decision_event_ids(self, decision_ids: Sequence[str]) -> dict[str, int]:
        """The event id of each of ``decision_ids`` that is stored (missing ones are absent)."""
        if not decision_ids:
            return {}
        with self._lock:
            rows = self._c().execute(
                f"SELECT decision_id, event_id FROM decisions WHERE decision_id IN ({','.join('?' * len(decision_ids))})",
                list(decision_ids),
            ).fetchall()
        return {str(d): int(e) for d, e in rows}

    def get_decision(self, decision_id: str) -> tuple[Decision, Outcome | None]:
        """A decision and its outcome (None while open); ``UnknownDecision`` when absent."""
        with self._lock:
            row = self._c().execute(
                "SELECT d.payload, o.payload, o.kind FROM decisions x JOIN events d ON d.event_id = x.event_id "
                "LEFT JOIN events o ON o.event_id = x.outcome_event_id WHERE x.decision_id = ?",
                (decision_id,),
            ).fetchone()
        if row is None:
            raise UnknownDecision(f"no decision with id {decision_id!r} in memory")
        return self._pair(*row)

    def _pair(self, d: bytes, o: bytes | None, kind: str | None = OUTCOME) -> tuple[Decision, Outcome | None]:
        decision = Decision.from_dict(self._codec.decode(DECISION, d))
        outcome = Outcome.from_dict(self._codec.decode(kind or OUTCOME, o)) if o is not None else None
        return decision, outcome

    def recent_decisions(self, symbol: str, n: int) -> list[tuple[Decision, Outcome | None]]:
        """The last ``n`` decisions of ``symbol``, newest first, with outcomes."""
        return self._recent_by_tag(self._codec.tag(symbol), n)

    def _recent_by_tag(self, tag: str, n: int) -> list[tuple[Decision, Outcome | None]]:
        with self._lock:
            rows = self._c().execute(
                "SELECT d.payload, o.payload, o.kind FROM decisions x JOIN events d ON d.event_id = x.event_id "
                "LEFT JOIN events o ON o.event_id = x.outcome_event_id WHERE x.symbol_tag = ? "
                "ORDER BY x.event_id DESC LIMIT ?",
                (tag, int(n)),
            ).fetchall()
        return [self._pair(*r) for r in rows]

    def recent_by_symbol(self, n: int) -> list[tuple[Decision, Outcome | None]]:
        """The last ``n`` decisions of every symbol (for building the in-process index)."""
        with self._lock:
            tags = [r[0] for r in self._c().execute("SELECT DISTINCT symbol_tag FROM decisions").fetchall()]
        out: list[tuple[Decision, Outcome | None]] = []
        for tag in tags:
            out.extend(reversed(self._recent_by_tag(tag, n)))
        return out

    def closed_trades(self, limit: int, offset: int = 0) -> list[tuple[Decision, Outcome]]:
        """The last ``limit`` closed decisions (by close order), oldest first; ``offset`` skips the
        newest ones (for paging back). Shadow outcomes are among them (``Outcome.shadow``): callers
        that want trades only skip those."""
        with self._lock:
            rows = self._c().execute(
                "SELECT d.payload, o.payload, o.kind FROM decisions x JOIN events d ON d.event_id = x.event_id "
                "JOIN events o ON o.event_id = x.outcome_event_id WHERE x.outcome_event_id IS NOT NULL "
                "ORDER BY x.outcome_event_id DESC LIMIT ? OFFSET ?",
                (int(limit), int(offset)),
            ).fetchall()
        pairs = [self._pair(*r) for r in rows]
        pairs.reverse()
        return pairs  # type: ignore[return-value]

    def recent_wins(self, n: int) -> list[bool]:
        """Win flags (``pnl > 0``) of the last ``n`` closed trades, oldest first — what the
        performance monitor needs, from the outcome payloads alone (no decision decoded)."""
        with self._lock:
            rows = self._c().execute(
                "SELECT payload FROM events WHERE kind = ? ORDER BY event_id DESC LIMIT ?", (OUTCOME, int(n))
            ).fetchall()
        wins = [float(self._codec.decode(OUTCOME, r[0])["pnl"]) > 0 for r in rows]
        wins.reverse()
        return wins

    def latest_parameters(self) -> tuple[int, Parameters, dict[str, Any]] | None:
        """The current stored parameter set with its event id and rule state (None before the
        first change)."""
        with self._lock:
            row = self._c().execute(
                "SELECT event_id, payload FROM events WHERE kind = ? ORDER BY event_id DESC LIMIT 1", (PARAMETER_ADJUSTMENT,)
            ).fetchone()
        if row is None:
            return None
        rec = self._codec.decode(PARAMETER_ADJUSTMENT, row[1])
        return int(row[0]), Parameters.from_dict(rec["parameters"]), dict(rec.get("state", {}))

    def parameters_by_version(self, version: str) -> Parameters | None:
        """A stored parameter set with this content hash, or None."""
        with self._lock:
            row = self._c().execute(
                "SELECT payload FROM events WHERE kind = ? AND subject = ? ORDER BY event_id DESC LIMIT 1",
                (PARAMETER_ADJUSTMENT, self._codec.tag(version)),
            ).fetchone()
        if row is None:
            return None
        return Parameters.from_dict(self._codec.decode(PARAMETER_ADJUSTMENT, row[0])["parameters"])

    def parameter_history(self) -> list[tuple[int, Parameters, list[ParameterAdjustment]]]:
        """Every parameter change, oldest first."""
        with self._lock:
            rows = self._c().execute(
                "SELECT event_id, payload FROM events WHERE kind = ? ORDER BY event_id", (PARAMETER_ADJUSTMENT,)
            ).fetchall()
        out = []
        for event_id, blob in rows:
            rec = self._codec.decode(PARAMETER_ADJUSTMENT, blob)
            out.append((int(event_id), Parameters.from_dict(rec["parameters"]), [ParameterAdjustment.from_dict(a) for a in rec["adjustments"]]))
        return out

    def parameter_changes_after(self, event_id: int, limit: int = 10_000) -> list[tuple[int, list[ParameterAdjustment]]]:
        """The parameter changes recorded after event ``event_id`` (oldest first; the newest
        ``limit`` when there are more), each with its event id: what changed since a reader last looked."""
        with self._lock:
            rows = self._c().execute(
                "SELECT event_id, payload FROM events WHERE kind = ? AND event_id > ? ORDER BY event_id DESC LIMIT ?",
                (PARAMETER_ADJUSTMENT, int(event_id), int(limit)),
            ).fetchall()
        out = [(int(e), [ParameterAdjustment.from_dict(a) for a in self._codec.decode(PARAMETER_ADJUSTMENT, blob)["adjustments"]])
               for e, blob in rows]
        out.reverse()
        return out

    def strategies(self) -> dict[str, StrategySpec]:
        """The newest spec of every learned strategy (deprecated included), by name."""
        with self._lock:
            rows = self._c().execute(
                "SELECT e.payload FROM heads h JOIN events e ON e.event_id = h.event_id WHERE h.kind = ? ORDER BY h.event_id",
                (STRATEGY_UPSERT,),
            ).fetchall()
        specs = [StrategySpec.from_dict(self._codec.decode(STRATEGY_UPSERT, r[0])) for r in rows]
        return {s.name: s for s in specs}

    def strategy(self, name: str) -> StrategySpec | None:
        with self._lock:
            row = self._c().execute(
                "SELECT e.payload FROM heads h JOIN events e ON e.event_id = h.event_id WHERE h.kind = ? AND h.subject = ?",
                (STRATEGY_UPSERT, self._codec.tag(name)),
            ).fetchone()
        return None if row is None else StrategySpec.from_dict(self._codec.decode(STRATEGY_UPSERT, row[0]))

    def iter_events(self, kinds: Sequence[str] | None = None, page: int = 5000) -> Iterator[Event]:
        """Every event, oldest first, paged (exports)."""
        cursor = 0
        while True:
            batch = self.events_since(cursor, limit=page)
            if not batch:
                return
            for e in batch:
                if kinds is None or e.kind in kinds:
                    yield e
            cursor = batch[-1].event_id

    def outcomes_after(self, event_id: int, cap: int = 1_000_000_000) -> int:
        """How many trade outcomes (shadow outcomes not counted) were recorded after event
        ``event_id`` (counting stops at ``cap``, so "at least 20 since" costs 20 index steps, not
        a scan)."""
        with self._lock:
            row = self._c().execute(
                "SELECT count(*) FROM (SELECT 1 FROM events WHERE kind = ? AND event_id > ? LIMIT ?)",
                (OUTCOME, int(event_id), int(cap)),
            ).fetchone()
        return int(row[0])

    def counts(self) -> dict[str, int]:
        """Decisions, trade outcomes, and shadow outcomes (of held signals)."""
        with self._lock:
            n, closed = self._c().execute("SELECT count(*), count(outcome_event_id) FROM decisions").fetchone()
            shadows = self._c().execute("SELECT count(*) FROM events WHERE kind = ?", (SHADOW_OUTCOME,)).fetchone()[0]
        return {"decisions": int(n), "outcomes": int(closed) - int(shadows), "shadow_outcomes": int(shadows)}

    # ------------------------------------------------------------------ maintenance
    def integrity_check(self) -> str:
        with self._lock:
            return str(self._c().execute("PRAGMA integrity_check").fetchone()[0])

    def checkpoint(self) -> None:
        """Move the WAL into the main file and truncate it."""
        with self._lock:
            self._c().execute("PRAGMA wal_checkpoint(TRUNCATE)")


__all__ = ["MemoryStore", "MemoryKeyError", "PreparedDecision"]
