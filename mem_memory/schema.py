"""The memory store's schema, declared once for both engines (SQLAlchemy Core metadata).

``ddl(dialect)`` compiles it into that engine's statements (``CreateTable(...).compile``):
``BLOB``/``BYTEA``, ``INTEGER``/``BIGINT``, ``REAL``/``DOUBLE PRECISION`` come from the type
variants below, the append-only ids from the table options (SQLite ``AUTOINCREMENT``; on
PostgreSQL ``events`` ids are allocated by the store inside its write lock, ``audit`` ids by an
identity column). Only the DDL is generated: the store's statements stay hand-written SQL.

The revision a store is at (``meta`` 'format') and the steps that bring an older store to this
shape are in ``mem_memory.migrations``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.types import TypeEngine

#: Bytes: BLOB on SQLite, BYTEA on PostgreSQL.
BYTES = LargeBinary().with_variant(postgresql.BYTEA(), "postgresql")
#: Ids and counters: INTEGER on SQLite (its rowid alias), BIGINT on PostgreSQL.
ID = Integer().with_variant(BigInteger(), "postgresql")
#: Seconds since the epoch: REAL on SQLite, DOUBLE PRECISION on PostgreSQL.
SECONDS: TypeEngine[float] = sqlite.REAL().with_variant(Double(), "postgresql")

metadata = MetaData()

meta = Table("meta", metadata, Column("k", Text, primary_key=True), Column("v", BYTES, nullable=False))

events = Table(
    "events",
    metadata,
    Column("event_id", ID, primary_key=True, autoincrement=False),
    Column("kind", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("payload", BYTES, nullable=False),
    sqlite_autoincrement=True,
)
Index("events_kind", events.c.kind, events.c.event_id)
Index("events_subject", events.c.kind, events.c.subject, events.c.event_id)

decisions = Table(
    "decisions",
    metadata,
    Column("decision_id", Text, primary_key=True),
    Column("symbol_tag", Text, nullable=False),
    Column("event_id", ID, nullable=False),
    Column("outcome_event_id", ID),
    # The event id of the symbol's decision before this one (None for its first): a symbol's
    # recent decisions are a chain from its ``heads`` row (kind ``SYMBOL_HEAD``), not an index
    # keyed by symbol, which would make a batch of 1,000 symbols dirty ~1,000 index leaf pages.
    Column("prev_event_id", ID),
)
_CLOSED = text("outcome_event_id IS NOT NULL")
Index("decisions_closed", decisions.c.outcome_event_id, sqlite_where=_CLOSED, postgresql_where=_CLOSED)

heads = Table(
    "heads",
    metadata,
    Column("kind", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("event_id", ID, nullable=False),
    PrimaryKeyConstraint("kind", "subject"),
)

probe = Table("probe", metadata, Column("x", BYTES))

requests = Table(
    "requests",
    metadata,
    Column("kind", Text, nullable=False),
    Column("tag", Text, nullable=False),
    Column("event_id", ID, nullable=False),
    Column("reply", BYTES),
    Column("created", SECONDS, nullable=False),
    PrimaryKeyConstraint("kind", "tag"),
)
Index("requests_created", requests.c.created)

audit = Table(
    "audit",
    metadata,
    Column("audit_id", ID, Identity(always=True), primary_key=True),
    Column("at", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("key_id", Text),
    Column("command", Text, nullable=False),
    Column("pid", ID, nullable=False),
    Column("user", Text, nullable=False),
    Column("host", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("hash", Text, nullable=False),
    sqlite_autoincrement=True,
)

#: The engines' SQLAlchemy dialects, by the store's backend name.
DIALECTS: dict[str, Dialect] = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}


def ddl(backend: str, tables: tuple[str, ...] | None = None) -> list[str]:
    """``CREATE TABLE/INDEX IF NOT EXISTS`` statements of ``tables`` (default: all) for
    ``backend`` ("sqlite" or "postgresql"), in dependency order."""
    dialect = DIALECTS[backend]
    out: list[str] = []
    for table in metadata.sorted_tables:
        if tables is not None and table.name not in tables:
            continue
        out.append(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)).strip())
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            out.append(str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect)).strip())
    return out


def symbol_index(backend: str) -> str:
    """``CREATE INDEX IF NOT EXISTS`` of revision 2's ``decisions_symbol`` (symbol_tag, event_id):
    no longer declared, migration 3 reads it to chain each symbol's decisions, then drops it."""
    old = Table("decisions", MetaData(), Column("symbol_tag", Text), Column("event_id", ID))
    index = Index("decisions_symbol", old.c.symbol_tag, old.c.event_id)
    return str(CreateIndex(index, if_not_exists=True).compile(dialect=DIALECTS[backend])).strip()


#: Every table of a store (the audit trail included).
TABLES = tuple(t.name for t in metadata.sorted_tables)
