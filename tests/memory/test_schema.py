"""The store's schema is declared once (``mem_memory.schema``) and a store created on either engine
has exactly the declared tables, columns and indexes."""

from __future__ import annotations

import re
from pathlib import Path

from mem_memory import MemoryStore, schema
from tests.memory._schema_check import assert_declared_schema

ROOT = Path(__file__).resolve().parents[2]


def test_ddl_of_both_engines_comes_from_the_one_metadata() -> None:
    names = {t.name for t in schema.metadata.sorted_tables}
    assert names == {"meta", "events", "decisions", "heads", "probe", "requests", "audit"}
    for backend, blob, big, seconds in (
        ("sqlite", "BLOB", "INTEGER", "REAL"),
        ("postgresql", "BYTEA", "BIGINT", "DOUBLE PRECISION"),
    ):
        statements = schema.ddl(backend)
        created = {m.group(1) for s in statements if (m := re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", s))}
        indexed = {m.group(1) for s in statements if (m := re.match(r"CREATE INDEX IF NOT EXISTS (\w+)", s))}
        assert created == names
        assert indexed == {i.name for t in schema.metadata.sorted_tables for i in t.indexes}
        events = next(s for s in statements if s.startswith("CREATE TABLE IF NOT EXISTS events"))
        assert f"payload {blob} NOT NULL" in events and f"event_id {big} NOT NULL" in events
        requests = next(s for s in statements if s.startswith("CREATE TABLE IF NOT EXISTS requests"))
        assert f"created {seconds} NOT NULL" in requests
    assert "AUTOINCREMENT" in " ".join(schema.ddl("sqlite", ("events",)))
    assert "GENERATED ALWAYS AS IDENTITY" in " ".join(schema.ddl("postgresql", ("audit",)))
    assert "IDENTITY" not in " ".join(schema.ddl("postgresql", ("events",)))  # ids: max + n in the lock


def test_no_other_module_declares_a_table() -> None:
    """No second copy of the DDL can drift from the declaration."""
    for path in (ROOT / "mem_memory").rglob("*.py"):
        if path.name != "schema.py":
            assert not re.search(r"CREATE\s+(TABLE|INDEX)", path.read_text(), re.IGNORECASE), path


def test_a_new_store_has_exactly_the_declared_schema(db: Path | str, backend: str) -> None:
    with MemoryStore.open(db) as store:
        assert store.dialect.name == backend  # the engine's differences come from one object
    assert_declared_schema(db, backend)
