"""Check every record of a memory store: what ``mem memory verify`` runs.

Each event's payload must decode (and, encrypted, authenticate with the key), build its record
and name the subject it is filed under (``MemoryStore.check_events``); SQLite's own
``integrity_check`` covers the file's structure. A clear (unencrypted) store detects what breaks
a record's structure, types or ids; a changed digit inside a number of a decision or an outcome
is only caught with encryption, which authenticates every byte.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import psycopg

from mem_memory.errors import CorruptRecord
from mem_memory.store import MemoryStore


@dataclass(frozen=True)
class VerifyReport:
    """What ``verify`` found: ``events`` checked, the ``corrupt`` ones, SQLite's verdict."""

    path: Path | str
    events: int
    corrupt: tuple[CorruptRecord, ...]
    integrity: str

    @property
    def ok(self) -> bool:
        return not self.corrupt and self.integrity == "ok"

    def lines(self) -> list[str]:
        """One line per corrupt event, then a summary."""
        out = [f"event {c.event_id} ({c.kind}): {c}" for c in self.corrupt]
        if self.integrity != "ok":
            out.append(f"SQLite integrity_check: {self.integrity}")
        verdict = "sound" if self.ok else f"{len(self.corrupt)} corrupt"
        out.append(f"{self.path}: {self.events} events checked, {verdict}")
        return out


def verify(store: MemoryStore, page: int = 5000) -> VerifyReport:
    """Check every event of ``store`` (read-only; a running server may keep writing)."""
    try:
        integrity = store.integrity_check()
    except (sqlite3.DatabaseError, psycopg.Error) as exc:
        integrity = f"failed: {exc}"
    events, corrupt, cursor = 0, [], 0
    while True:
        n, bad, cursor = store.check_events(cursor, page)
        if not n:
            break
        events += n
        corrupt += bad
    return VerifyReport(store.path if store.dialect.files else store.location, events, tuple(corrupt), integrity)
