"""Compare a live store's schema with the declaration (``mem_memory.schema``) through SQLAlchemy's
inspector (imported by tests; not collected)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from mem_memory import schema
from mem_memory.backend import is_postgres, postgres_url


def _engine(db: Path | str) -> sa.Engine:
    if isinstance(db, str) and is_postgres(db):
        return sa.create_engine(postgres_url(db).replace("postgresql://", "postgresql+psycopg://", 1))
    return sa.create_engine(f"sqlite:///{db}")


def assert_declared_schema(db: Path | str, backend: str, *, strict_keys: bool = True) -> None:
    """The store at ``db`` has exactly the declared tables, columns (names, order, types,
    nullability), primary keys and indexes. ``strict_keys`` False: a primary-key column may be
    nullable (SQLite stores of revision 1 declared ``TEXT PRIMARY KEY`` without NOT NULL; the
    store never writes NULL there, and SQLite cannot add the constraint without rebuilding)."""
    engine = _engine(db)
    dialect = schema.DIALECTS[backend]
    try:
        found = sa.inspect(engine)
        assert set(found.get_table_names()) == set(schema.TABLES)
        for table in schema.metadata.sorted_tables:
            columns = {c["name"]: c for c in found.get_columns(table.name)}
            assert list(columns) == [c.name for c in table.columns], table.name
            for c in table.columns:
                want = c.type.compile(dialect=dialect)
                assert columns[c.name]["type"].compile(dialect=dialect) == want, (table.name, c.name)
                if strict_keys or not c.primary_key:
                    assert columns[c.name]["nullable"] == (c.nullable and not c.primary_key), (table.name, c.name)
            pk = found.get_pk_constraint(table.name)["constrained_columns"]
            assert pk == [c.name for c in table.primary_key.columns], table.name
            indexes = {i["name"]: i["column_names"] for i in found.get_indexes(table.name)}
            assert indexes == {i.name: [c.name for c in i.columns] for i in table.indexes}, table.name
    finally:
        engine.dispose()
