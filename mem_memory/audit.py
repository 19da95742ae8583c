"""The audit trail of credential use, kept in the store's own ``audit`` table.

One row per use of the memory's key and per operation on the whole store: ``open`` (a process
started using the store, with which key), ``open.refused`` (a key that did not fit), ``rekey.start``
and ``rekey.finish``, ``backup``, ``restore``. A row says which key (its id, never the key),
when, by which command, process, user and host, plus a small JSON detail. Nothing secret is ever
passed here, so the table is stored in clear: ``mem memory audit`` lists it without the key.

Rows are chained: each holds the SHA-256 of the previous row's hash and its own fields, so an
edited or deleted row breaks the chain (``verify_chain``). Anyone who can write the file can
rebuild the chain, so this detects accidents and careless edits, not a determined attacker
with write access (docs/security.md).

``open`` is written once per process, store, key and command (a Dagster code server that opens
the store every minute records one row, not 1,440 a day).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mem_memory.backend import Conn, has_table
from mem_memory.dialect import dialect_of
from mem_memory.lock import program_words

OPEN = "open"
OPEN_REFUSED = "open.refused"
REKEY_START = "rekey.start"
REKEY_FINISH = "rekey.finish"
BACKUP = "backup"
RESTORE = "restore"
ACTIONS = (OPEN, OPEN_REFUSED, REKEY_START, REKEY_FINISH, BACKUP, RESTORE)

_GENESIS = "0" * 64
_announced: set[tuple[str, str | None, str]] = set()
_announced_lock = threading.Lock()


@dataclass(frozen=True)
class AuditEntry:
    audit_id: int
    at: str
    action: str
    key_id: str | None
    command: str
    pid: int
    user: str
    host: str
    detail: dict[str, Any]
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "audit_id": self.audit_id,
            "at": self.at,
            "action": self.action,
            "key_id": self.key_id,
            "command": self.command,
            "pid": self.pid,
            "user": self.user,
            "host": self.host,
            "detail": self.detail,
        }


def current_command() -> str:
    """This process's command in a few words (``mem memory backup``), from ``sys.argv``."""
    return program_words(list(sys.argv))


def ensure(conn: Conn) -> None:
    """Create the ``audit`` table when missing (its DDL from ``mem_memory.schema``; checked first:
    PostgreSQL wants CREATE rights even for ``IF NOT EXISTS``)."""
    if not has_table(conn, "audit"):
        for statement in dialect_of(conn).ddl(("audit",)):
            conn.execute(statement)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _digest(prev: str, fields: tuple[Any, ...]) -> str:
    body = json.dumps([prev, *fields], separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def record(
    conn: Conn,
    action: str,
    key_id: str | None,
    command: str | None = None,
    detail: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> int:
    """Append one row inside the connection's current transaction (the caller commits);
    returns its id."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    ensure(conn)
    row = conn.execute("SELECT hash FROM audit ORDER BY audit_id DESC LIMIT 1").fetchone()
    prev = row[0] if row else _GENESIS
    fields = (
        (at or datetime.now(UTC)).isoformat(timespec="milliseconds"),
        action,
        key_id,
        command or current_command(),
        os.getpid(),
        _user(),
        socket.gethostname(),
        json.dumps(dict(detail or {}), sort_keys=True, separators=(",", ":")),
    )
    row = conn.execute(
        'INSERT INTO audit(at, action, key_id, command, pid, "user", host, detail, hash) '
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING audit_id",
        (*fields, _digest(prev, fields)),
    ).fetchone()
    return int(row[0]) if row else 0


def record_now(
    conn: Conn,
    action: str,
    key_id: str | None,
    command: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> int:
    """``record`` in a transaction of its own (``BEGIN IMMEDIATE``, committed)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        audit_id = record(conn, action, key_id, command, detail)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return audit_id


def first_open(path: str, key_id: str | None, command: str) -> bool:
    """True the first time this process opens ``path`` with this key and command (then an
    ``open`` row is due), False after."""
    ident = (path, key_id, command)
    with _announced_lock:
        if ident in _announced:
            return False
        _announced.add(ident)
        return True


def forget_open(path: str, key_id: str | None, command: str) -> None:
    """Undo ``first_open`` when the open that claimed it failed (its row was rolled back)."""
    with _announced_lock:
        _announced.discard((path, key_id, command))


def entries(conn: Conn, limit: int | None = None, action: str | None = None) -> list[AuditEntry]:
    """Audit rows, oldest first (the last ``limit`` when given)."""
    if not has_table(conn, "audit"):
        return []
    where, args = ("WHERE action = ?", [action]) if action else ("", [])
    args_: list[object] = list(args)
    sql = f'SELECT audit_id, at, action, key_id, command, pid, "user", host, detail, hash FROM audit {where} ORDER BY audit_id DESC'
    if limit is not None:
        sql += " LIMIT ?"
        args_.append(int(limit))
    rows = conn.execute(sql, args_).fetchall()
    rows.reverse()
    return [AuditEntry(int(r[0]), r[1], r[2], r[3], r[4], int(r[5]), r[6], r[7], json.loads(r[8]), r[9]) for r in rows]


def verify_chain(conn: Conn) -> int | None:
    """The id of the first row whose hash does not follow from its fields and the row before
    (an edit, a deletion before it, or a reordering), or None when the chain holds."""
    if not has_table(conn, "audit"):
        return None
    prev = _GENESIS
    rows = conn.execute(
        'SELECT audit_id, at, action, key_id, command, pid, "user", host, detail, hash FROM audit ORDER BY audit_id'
    )
    for audit_id, *fields, digest in rows:
        if _digest(prev, tuple(fields)) != digest:
            return int(audit_id)
        prev = digest
    return None
