"""The SQL engines the memory store runs on: SQLite (the default, one machine) and PostgreSQL
(``MEM_MEMORY_DB=postgresql://user@host:port/db``: serving replicas on many machines share it).

``MemoryStore`` is written against ``sqlite3``'s connection surface (``execute`` with ``?``
placeholders, ``BEGIN IMMEDIATE`` / ``BEGIN`` / ``COMMIT`` / ``SAVEPOINT`` statements,
``in_transaction``). ``PgConnection`` gives a psycopg 3 connection that surface, and maps the few
things that differ:

- ``?`` placeholders become ``%s``;
- ``BEGIN IMMEDIATE`` (one writer at a time across processes) becomes ``BEGIN`` plus
  ``pg_advisory_xact_lock(WRITE_LOCK)``: every write transaction of every process holds one
  transaction-level advisory lock until it commits, so event ids are committed in increasing order
  and a reader that has seen id N has seen every event <= N (the lock is released only after the
  commit is visible). ``BEGIN`` (a read snapshot) becomes ``BEGIN ISOLATION LEVEL REPEATABLE READ``;
- event ids are assigned as ``max(event_id) + n`` inside that lock (``insert_events``), not from a
  sequence: a rolled-back transaction or savepoint gives its ids back, as SQLite's AUTOINCREMENT
  does, so a group commit's events are exactly ``first .. last`` on both engines;
- the schema's types (``BYTEA`` blobs, ``BIGINT`` ids, ``DOUBLE PRECISION`` times) come from the one
  declaration in ``mem_memory.schema``.

Everything else is the same SQL on both. ``synchronous_commit`` (on by default) makes a commit
durable on the server before it returns: acknowledged = committed. SQLite-only: the ``<db>.lock``
file (PostgreSQL uses a session advisory lock, ``OPEN_LOCK``, shared by every open and alone for a
rekey), file modes, ``max_page_count`` caps, online file backups, the writer process.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import pq

from mem_memory.errors import MemoryUnavailable

#: Transaction-level advisory lock held by every write transaction (per database).
WRITE_LOCK = 0x4D454D5F5752  # "MEM_WR"
#: Session-level advisory lock: shared while a store is open, exclusive for a rekey.
OPEN_LOCK = 0x4D454D5F4F50  # "MEM_OP"

SQLITE = "sqlite"
POSTGRESQL = "postgresql"

_URL = re.compile(r"^(postgres|postgresql):/+", re.IGNORECASE)

#: A unique or primary key violated (a repeated decision or request id), on either engine.
INTEGRITY_ERRORS: tuple[type[BaseException], ...] = (sqlite3.IntegrityError, psycopg.IntegrityError)


def is_postgres(target: str | os.PathLike[str]) -> bool:
    """Whether ``target`` names a PostgreSQL database (``postgresql://…`` or ``postgres://…``;
    also after a ``Path`` collapsed its ``//``)."""
    return bool(_URL.match(os.fspath(target)))


def postgres_url(target: str | os.PathLike[str]) -> str:
    """``target`` as a connection URL: ``Path("postgresql://h/db")`` reads ``postgresql:/h/db``;
    the ``//`` is put back (so give a host: ``postgresql:///db`` is not supported)."""
    return _URL.sub(lambda m: m.group(1) + "://", os.fspath(target), count=1)


def redact(url: str) -> str:
    """``url`` without its password (for messages, logs and the served store location)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit((parts.scheme, f"{user}:***@{netloc[1]}", parts.path, parts.query, parts.fragment))


def redact_text(text: str, target: str | os.PathLike[str]) -> str:
    """``text`` (an error message) with the password of ``target``'s URL masked, if it has one."""
    if not is_postgres(target):
        return text
    password = urlsplit(postgres_url(target)).password
    return text.replace(password, "***") if password else text


def _pg_sql(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class PgConnection:
    """A psycopg 3 connection (autocommit: transactions are the explicit statements the store
    runs) with the slice of ``sqlite3.Connection`` the store uses. Not thread-safe by itself: the
    store guards it with its lock, as it does its SQLite connection."""

    backend = POSTGRESQL

    def __init__(self, raw: psycopg.Connection[Any], url: str = "", who: str = "") -> None:
        self.raw = raw
        self._url, self._who = url, who
        self._txn = False  # inside a transaction this connection began
        self._lock_mode: bool | None = None  # OPEN_LOCK held: exclusive or shared (None: not held)

    @classmethod
    def connect(cls, url: str, command: str = "") -> PgConnection:
        """Connect; ``application_name`` says which process holds the connection
        (``pid 123 (mem serve)``: what ``holders`` reports when a rekey finds the store in use)."""
        who = (f"pid {os.getpid()} ({command})" if command else f"pid {os.getpid()}")[:63]
        return cls(cls._raw(url, who), url, who)

    @staticmethod
    def _raw(url: str, who: str) -> psycopg.Connection[Any]:
        return psycopg.connect(url, autocommit=True, application_name=who)

    @property
    def lost(self) -> bool:
        """The server closed the connection (restart, failover, an administrator)."""
        return bool(self.raw.closed or self.raw.broken)

    def _reconnect(self) -> None:
        """A new connection after a lost one (with the store's session lock taken again). Only
        between transactions: what a lost transaction wrote was never committed, and its caller
        got the error."""
        if not self._url:
            raise psycopg.OperationalError("the connection to the memory store is lost")
        try:
            self.raw.close()
        except psycopg.Error:
            pass
        self.raw = self._raw(self._url, self._who)
        self._txn = False
        if self._lock_mode is not None and not self.try_open_lock(self._lock_mode):
            raise psycopg.OperationalError("reconnected, but the memory store is held alone by another process")

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:  # a psycopg cursor
        """Run ``sql``; ``MemoryUnavailable`` (serving: UNAVAILABLE) when the connection is lost
        and could not be made again, or was lost inside a transaction (nothing of it stored)."""
        try:
            return self._run(sql, args)
        except psycopg.OperationalError as exc:
            if not self.lost:
                raise
            raise MemoryUnavailable(
                f"the memory store's PostgreSQL connection is lost ({type(exc).__name__}): nothing of the "
                "transaction in flight was stored; the next call reconnects"
            ) from exc

    def _run(self, sql: str, args: Sequence[Any]) -> Any:
        verb = sql.strip().upper()
        if not (verb.startswith("BEGIN") or (not self._txn and verb.startswith("SELECT"))):
            return self._execute(verb, sql, args)
        # a new transaction, or a read between transactions: nothing to lose by trying again on a
        # new connection when the old one turns out to be gone (psycopg learns it on first use)
        if self.lost:
            self._reconnect()
        try:
            return self._execute(verb, sql, args)
        except psycopg.OperationalError:
            if not self.lost:
                raise
            self._reconnect()
            return self._execute(verb, sql, args)

    def _execute(self, verb: str, sql: str, args: Sequence[Any]) -> Any:
        if verb == "BEGIN IMMEDIATE":  # one round trip: no parameters, so both go as one simple query
            cur = self.raw.execute(f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK:d})")
            self._txn = True
            return cur
        if verb == "BEGIN":
            cur = self.raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            self._txn = True
            return cur
        if verb in ("COMMIT", "ROLLBACK"):
            self._txn = False  # over, whether the statement succeeds or the connection is gone
            if verb == "ROLLBACK" and self.lost:
                return None  # the server rolled it back already
        return self.raw.execute(_pg_sql(sql), tuple(args) if args else None)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        try:
            if self.lost and not self._txn:
                self._reconnect()
            cur = self.raw.cursor()
            cur.executemany(_pg_sql(sql), rows)
            return cur
        except psycopg.OperationalError as exc:
            if not self.lost:
                raise
            raise MemoryUnavailable(f"the memory store's PostgreSQL connection is lost ({type(exc).__name__})") from exc

    @property
    def in_transaction(self) -> bool:
        if self.lost:  # the server rolled back what was open; until the store ends that transaction
            return self._txn  # (its COMMIT raises, its ROLLBACK is a no-op) nothing reconnects
        return self.raw.info.transaction_status != pq.TransactionStatus.IDLE

    def close(self) -> None:
        self._url = ""  # no reconnect after an explicit close
        self.raw.close()

    def try_open_lock(self, exclusive: bool) -> bool:
        """Take the store's session lock (``OPEN_LOCK``) shared, or alone, without waiting."""
        fn = "pg_try_advisory_lock" if exclusive else "pg_try_advisory_lock_shared"
        row = self.raw.execute(f"SELECT {fn}(%s)", (OPEN_LOCK,)).fetchone()
        if row and row[0]:
            self._lock_mode = exclusive
            return True
        return False

    def holders(self) -> str:
        """The other sessions holding ``OPEN_LOCK``, by their ``application_name`` and client
        address (``pid 123 (mem serve) at 10.0.0.5``), or ``another process``."""
        rows = self.raw.execute(
            "SELECT DISTINCT a.application_name, coalesce(host(a.client_addr), 'local') FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.classid = %s AND l.objid = %s AND l.objsubid = 1 AND l.pid <> pg_backend_pid()",
            (OPEN_LOCK >> 32, OPEN_LOCK & 0xFFFFFFFF),
        ).fetchall()
        return ", ".join(f"{name or '?'} at {addr}" for name, addr in rows) or "another process"


#: A connection of either engine.
Conn = sqlite3.Connection | PgConnection


def backend_of(conn: Conn) -> str:
    return POSTGRESQL if isinstance(conn, PgConnection) else SQLITE


def has_table(conn: Conn, name: str) -> bool:
    if isinstance(conn, PgConnection):
        row = conn.execute("SELECT to_regclass(?) IS NOT NULL", (name,)).fetchone()
        return bool(row and row[0])
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def insert_events(conn: Conn, rows: Sequence[tuple[str, str, bytes]]) -> int:
    """Append ``rows`` (kind, subject, payload) to the event log with one statement, inside the
    caller's write transaction; returns the last id (they are ``last - len(rows) + 1 .. last``,
    in order)."""
    n = len(rows)
    args: list[Any] = []
    if isinstance(conn, PgConnection):
        values = []
        for i, (kind, subject, payload) in enumerate(rows, 1):
            values.append(f"({i},?,?,?::bytea)")
            args += (kind, subject, payload)
        cur = conn.execute(
            "WITH m AS (SELECT coalesce(max(event_id), 0) AS m FROM events) "
            "INSERT INTO events(event_id, kind, subject, payload) SELECT m.m + v.n, v.k, v.s, v.p FROM m, (VALUES "
            + ",".join(values)
            + ") AS v(n, k, s, p) RETURNING event_id",
            args,
        )
        return max(int(r[0]) for r in cur.fetchall())
    for kind, subject, payload in rows:
        args += (kind, subject, payload)
    cur2 = conn.execute("INSERT INTO events(kind, subject, payload) VALUES " + ",".join(["(?,?,?)"] * n), args)
    return int(cur2.lastrowid or 0)  # one statement, AUTOINCREMENT: consecutive ids in VALUES order


def is_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the store has no space: SQLite's SQLITE_FULL, PostgreSQL's
    ``disk_full`` (53100)."""
    if isinstance(exc, psycopg.errors.DiskFull):
        return True
    return isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL"


def describe(target: str | os.PathLike[str]) -> str:
    """How to name a store in messages: its path, or its URL without the password."""
    return redact(postgres_url(target)) if is_postgres(target) else str(Path(target))


__all__ = [
    "Conn",
    "INTEGRITY_ERRORS",
    "PgConnection",
    "backend_of",
    "describe",
    "has_table",
    "insert_events",
    "is_full",
    "is_postgres",
    "postgres_url",
    "redact",
]
