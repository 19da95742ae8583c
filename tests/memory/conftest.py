"""Memory fixtures: every store test runs on both engines (``db`` is parametrised): a real SQLite
file under tmp_path, and a fresh database on the session's PostgreSQL cluster (its URL).

Tests about SQLite's files (the lock file, modes, the writer process, size caps, file backups)
carry ``@pytest.mark.sqlite_only`` (or ``pytestmark``) and run on SQLite alone. Helpers in
``helpers.py``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mem_memory import MemoryEngine, MemoryStore

BACKENDS = ("sqlite", "postgresql")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """SQLite-only tests are not run (deselected, not skipped) on PostgreSQL, nor PostgreSQL-only
    ones (a lost connection) on SQLite."""
    keep, drop = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        backend = params.params.get("db") if params is not None else None
        if (backend == "postgresql" and item.get_closest_marker("sqlite_only")) or (
            backend == "sqlite" and item.get_closest_marker("postgresql_only")
        ):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path | str]:
    """Where a store lives: a SQLite path (not created yet), or the URL of an empty PostgreSQL
    database."""
    if request.param == "sqlite":
        yield tmp_path / "memory" / "memory.db"
        return
    cluster = request.getfixturevalue("postgres")
    url = cluster.create_db()
    yield url
    cluster.drop_db(url)


@pytest.fixture
def backend(db: Path | str) -> str:
    return "postgresql" if isinstance(db, str) else "sqlite"


@pytest.fixture
def store(db: Path) -> Iterator[MemoryStore]:
    s = MemoryStore.open(db)
    yield s
    s.close()


@pytest.fixture
def engine(store: MemoryStore) -> MemoryEngine:
    return MemoryEngine(store)


@pytest.fixture
def key() -> bytes:
    return os.urandom(32)
