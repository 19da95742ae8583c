"""Memory fixtures: real SQLite files under tmp_path (helpers in ``helpers.py``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mem_memory import MemoryEngine, MemoryStore


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "memory" / "memory.db"


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
