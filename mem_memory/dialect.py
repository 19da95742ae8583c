"""What differs between the store's two engines, in one object per engine (``dialect_of(conn)``).

- types: the DDL compiled from the one declaration (``mem_memory.schema``) for this engine;
- creating the schema (a new store, or a migration): SQLite runs its ``IF NOT EXISTS`` statements;
  PostgreSQL checks CREATE rights even for ``IF NOT EXISTS``, so a role that may only read and
  write an existing store (docs/deploy.md) runs them only when a table is missing;
- event ids: one multi-row ``INSERT`` on both; SQLite's ``AUTOINCREMENT`` numbers them, PostgreSQL
  takes ``max(event_id) + n`` inside the write lock (``backend.insert_events``), so a rolled-back
  transaction gives its ids back on both; a bulk load continues after SQLite's high-water mark;
- locking: ``BEGIN IMMEDIATE`` on SQLite, ``BEGIN`` + ``pg_advisory_xact_lock`` on PostgreSQL
  (the statement is translated by ``backend.PgConnection``);
- upserts: ``INSERT ... ON CONFLICT ... DO UPDATE`` is the same SQL on both;
- maintenance: ``PRAGMA integrity_check`` / the server's own checksums; WAL checkpoints and page
  caps (``max_bytes``) exist on SQLite only;
- files: a SQLite store is a file on this machine (its ``<db>.lock``, file modes, the writer
  process, its real path naming it in the audit trail); a PostgreSQL store is its URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mem_memory.backend import POSTGRESQL, SQLITE, Conn, PgConnection, has_table, insert_events


@dataclass(frozen=True)
class StoreDialect:
    """One engine's side of every difference listed in the module docstring."""

    name: str
    #: Whether the store can cap its size in pages (``MemoryStore.set_max_bytes``).
    size_cap: bool
    #: Whether the engine keeps a WAL that ``checkpoint`` moves into the database file.
    checkpoints: bool
    #: Whether the store is a file on this machine (the writer process can share it).
    files: bool

    def ddl(self, tables: tuple[str, ...] | None = None) -> list[str]:
        from mem_memory import schema  # SQLAlchemy is imported only to create or migrate a store

        return schema.ddl(self.name, tables)

    def create_schema(self, conn: Conn) -> None:
        """Create what is missing of the declared schema (inside the caller's transaction)."""
        from mem_memory import schema

        if self.name == POSTGRESQL and all(has_table(conn, t) for t in schema.TABLES):
            return
        for statement in self.ddl():
            conn.execute(statement)

    def insert_events(self, conn: Conn, rows: Sequence[tuple[str, str, bytes]]) -> int:
        """Append ``rows`` with consecutive ids; returns the last one (``backend.insert_events``)."""
        return insert_events(conn, rows)

    def next_event_id(self, conn: Conn, last: int) -> int:
        """The id a bulk load's first event takes after ``last`` (the newest stored id): SQLite's
        AUTOINCREMENT never reuses an id it gave out, even one whose row is gone."""
        if self.name == SQLITE:
            seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name='events'").fetchone()
            return max(last, seq[0] if seq else 0) + 1
        return last + 1

    def integrity_check(self, conn: Conn) -> str:
        if self.name == POSTGRESQL:  # the server checks its pages itself (data checksums)
            conn.execute("SELECT 1").fetchone()
            return "ok"
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])

    def checkpoint(self, conn: Conn) -> None:
        """Move the WAL into the database file and truncate it (nothing to do on PostgreSQL)."""
        if self.checkpoints:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


SQLITE_DIALECT = StoreDialect(SQLITE, size_cap=True, checkpoints=True, files=True)
POSTGRESQL_DIALECT = StoreDialect(POSTGRESQL, size_cap=False, checkpoints=False, files=False)


def dialect_of(conn: Conn) -> StoreDialect:
    return POSTGRESQL_DIALECT if isinstance(conn, PgConnection) else SQLITE_DIALECT
