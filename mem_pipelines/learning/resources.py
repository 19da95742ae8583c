"""The memory store as a Dagster resource.

The database path comes from the resource config, else env ``MEM_MEMORY_DB``, else
``project_paths().memory_db``; the encryption key only ever from env ``MEM_MEMORY_KEY`` via
``mem_memory.key_from_env()`` when the store is opened — never a config field, never logged.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from mem_core.settings import project_paths


def memory_db_path(explicit: str | Path | None = None) -> Path:
    """Where the memory store lives: the explicit path, env MEM_MEMORY_DB, or the project default."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("MEM_MEMORY_DB", "")
    return Path(env) if env else project_paths().memory_db


@contextmanager
def open_store(path: str | Path | None = None) -> Iterator[object]:
    """The ``MemoryStore`` at ``memory_db_path(path)`` (key from MEM_MEMORY_KEY), closed afterwards."""
    from mem_memory import MemoryStore, key_from_env

    db = memory_db_path(path)
    store = MemoryStore.open(db, key=key_from_env())
    try:
        yield store
    finally:
        store.close()


@contextmanager
def open_engine(path: str | Path | None = None) -> Iterator[object]:
    """A ``MemoryEngine`` on the store at ``memory_db_path(path)``, closed afterwards."""
    from mem_memory import MemoryEngine

    with open_store(path) as store:
        yield MemoryEngine(store)


class MemoryStoreResource(dg.ConfigurableResource):
    """The shared memory store (SQLite, WAL) the gRPC server also writes to."""

    path: str = ""  # empty: env MEM_MEMORY_DB, else .mem/memory/memory.db under the project

    def db_path(self) -> Path:
        return memory_db_path(self.path or None)

    @contextmanager
    def store(self) -> Iterator[object]:
        """The store alone (cheap: what the sensors need)."""
        with open_store(self.db_path()) as store:
            yield store

    @contextmanager
    def engine(self) -> Iterator[object]:
        with open_engine(self.db_path()) as engine:
            yield engine

    def exports_folder(self) -> Path:
        """Where the human-readable exports (strategy_modules.py, ...) are rendered."""
        return self.db_path().parent / "exports"
