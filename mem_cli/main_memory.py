"""The main job's memory store: the one of MEM_HOME (``mem_core.settings.memory_db_path``: MEM_MEMORY_DB,
else ``$MEM_HOME/.mem/memory/memory.db``), the same one ``mem serve``, the Dagster code location and
``scripts/ui.sh`` open, so the UI shows the decisions and the learning of the job's replay.

The replay starts from an empty memory (what it learns must come from the replayed candles, not
from an earlier replay of the same ones): a store left by an earlier run is moved, whole, to
``previous/<UTC time>/`` beside it (nothing is deleted), which needs it closed by everyone (its lock
taken alone). Afterwards the learning assets are recorded on the Dagster instance
(``mem_pipelines.learning.observe``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from mem_memory import private_dir
from mem_memory.backend import describe, is_postgres
from mem_memory.lock import StoreLock

#: The files of one SQLite store (the lock file stays: it is what is held while moving).
STORE_SUFFIXES = ("", "-wal", "-shm")


def set_aside(db: Path, now: datetime | None = None) -> Path | None:
    """Move the SQLite store at ``db`` (with its WAL files) to ``previous/<UTC time>/`` beside it;
    the folder it went to, or None when there was no store. ``StoreInUse`` when another process
    holds it (e.g. a ``mem serve`` on it). A PostgreSQL store is left as it is (None)."""
    if is_postgres(db) or not Path(db).exists():
        return None
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    target = db.parent / "previous" / stamp
    lock = StoreLock.acquire(db, exclusive=True)
    try:
        private_dir(target)
        for suffix in STORE_SUFFIXES:
            src = Path(f"{db}{suffix}")
            if src.exists():
                os.replace(src, target / src.name)
    finally:
        lock.release()
    return target


def empty_store(db: Path, say: Callable[[str], None]) -> None:
    """Make way for an empty store at ``db``: an earlier one is set aside (said), its folder made."""
    moved = set_aside(db)
    if moved is not None:
        say(f"moved the memory store of an earlier run to {moved} (this replay starts from an empty memory)")
    if not is_postgres(db):
        private_dir(db.parent)


def record_learning(dagster_home: Path, memory_db: Path, model_version: str, say: Callable[[str], None]) -> None:
    """Report the learning assets' state after the replay on the instance at ``dagster_home``."""
    import dagster as dg

    from mem_pipelines.learning.observe import report_memory_assets
    from mem_pipelines.resources import open_engine

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance, open_engine(memory_db) as engine:
        keys = report_memory_assets(instance, engine, memory_db, model_version, "mem main's replay")
    say(f"recorded {', '.join(k.to_user_string() for k in keys)} of {describe(memory_db)} in Dagster")
