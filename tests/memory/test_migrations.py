"""Versioned migrations (``mem_memory.migrations``): every store records its revision, an older one
is migrated on open (offline steps by ``mem memory upgrade``, after a backup), a newer one is
refused in one line, and a SIGKILL in the middle of a migration leaves a store that opens and
finishes it. Both engines."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from mem_memory import MemoryEngine, MemoryStore, StoreTooNew, migrations
from mem_memory.backend import has_table
from mem_testing.cli import run_mem
from tests.memory.helpers import T0, raw_connect, request

ROOT = Path(__file__).resolve().parents[2]


def _meta(db: Path | str, k: str) -> str | None:
    conn = raw_connect(db)
    try:
        row = conn.execute("SELECT v FROM meta WHERE k = ?", (k,)).fetchone()
    finally:
        conn.close()
    return None if row is None else bytes(row[0]).decode() if not isinstance(row[0], str) else row[0]


def _set_meta(db: Path | str, k: str, v: str | None) -> None:
    conn = raw_connect(db)
    try:
        conn.execute("DELETE FROM meta WHERE k = ?", (k,))
        if v is not None:
            conn.execute("INSERT INTO meta VALUES (?, ?)", (k, v.encode()))
        if isinstance(conn, sqlite3.Connection):
            conn.commit()
    finally:
        conn.close()


def _filled(db: Path | str, n: int = 23) -> None:
    store = MemoryStore.open(db)
    try:
        engine = MemoryEngine(store)
        for i in range(n):
            engine.enhance(request(symbol=f"S{i % 3}", time=T0 + timedelta(minutes=i)))
    finally:
        store.close()


def _worker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEM_MEMORY_")}
    return subprocess.run(
        [sys.executable, "-m", "tests.memory._migrate_worker", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_new_store_records_this_codes_revision(db: Path | str) -> None:
    MemoryStore.open(db).close()
    assert _meta(db, "format") == str(migrations.head()) == "3"


def test_a_first_release_store_is_migrated_on_open(db: Path | str) -> None:
    _filled(db, 5)
    _set_meta(db, "format", "1")
    _set_meta(db, "store_id", None)  # as the first stores were made, before ids and request ids
    conn = raw_connect(db)
    conn.execute("DROP TABLE requests")
    conn.execute("DROP TABLE probe")
    conn.commit()
    conn.close()
    with MemoryStore.open(db) as store:
        assert store.counts()["decisions"] == 5
        assert store.store_id
    conn = raw_connect(db)
    assert has_table(conn, "requests") and has_table(conn, "probe")
    conn.close()
    assert _meta(db, "format") == str(migrations.head())
    assert _meta(db, "store_id") == store.store_id


def test_a_newer_store_is_refused_in_one_line(db: Path | str) -> None:
    MemoryStore.open(db).close()
    _set_meta(db, "format", str(migrations.head() + 1))
    with pytest.raises(StoreTooNew, match="newer than this MEM knows"):
        MemoryStore.open(db)
    done = run_mem("memory", "verify", "--memory-db", str(db))  # in process: the message is the point
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "newer than this MEM knows" in lines[0] and "upgrade MEM" in lines[0], done.stderr
    assert _meta(db, "format") == str(migrations.head() + 1)  # nothing changed


@pytest.mark.sqlite_only
def test_an_offline_step_needs_mem_memory_upgrade_which_takes_a_backup_first(db: Path) -> None:
    _filled(db, 7)
    refused = _worker("offline", "0", "mem", "memory", "verify", "--memory-db", str(db))
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    head = migrations.head()
    assert len(lines) == 1 and "`mem memory upgrade`" in lines[0] and f"revision {head}" in lines[0], refused.stderr
    assert _meta(db, "format") == str(head)
    done = _worker("offline", "0", "mem", "memory", "upgrade", "--memory-db", str(db))
    assert done.returncode == 0, done.stderr
    assert f"is at revision {head + 1}" in done.stdout
    assert _meta(db, "format") == str(head + 1)
    backups = sorted((db.parent / "pre-upgrade").glob("memory-*.db"))
    assert len(backups) == 1 and str(backups[0]) in done.stdout
    assert _meta(backups[0], "format") == str(head)  # taken before the migration
    conn = sqlite3.connect(db)
    assert [r[0] for r in conn.execute("SELECT event_id FROM migrated_ids ORDER BY 1")] == list(range(1, 8))
    conn.close()


def _migrated(db: Path | str) -> list[int]:
    conn = raw_connect(db)
    try:
        return [int(r[0]) for r in conn.execute("SELECT event_id FROM migrated_ids ORDER BY event_id").fetchall()]
    except (sqlite3.Error, Exception):
        return []
    finally:
        conn.close()


def test_a_sigkill_in_the_middle_of_a_migration_leaves_a_store_that_opens_and_finishes_it(db: Path | str) -> None:
    _filled(db, 23)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEM_MEMORY_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.memory._migrate_worker", "online", "0.5", "open", str(db)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while len(_migrated(db)) < 10:  # two chunks committed, the third one in flight
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    time.sleep(0.2)  # inside the third chunk's transaction (it sleeps 0.5 s before committing)
    proc.kill()
    proc.wait()
    killed = _migrated(db)
    assert len(killed) in (10, 15) and killed == list(range(1, len(killed) + 1))  # whole chunks only
    head = migrations.head()
    assert _meta(db, "format") == str(head)  # the step is unfinished: the store's revision did not move
    with MemoryStore.open(db) as store:  # opens (this code does not know the test step)
        assert store.counts()["decisions"] == 23
    finished = _worker("online", "0", "open", str(db))
    assert finished.returncode == 0 and "opened" in finished.stdout, finished.stderr
    assert f"migrated to revision {head + 1}" in finished.stderr
    assert _migrated(db) == list(range(1, 24))  # each event once: resumed where the kill stopped it
    assert _meta(db, "format") == str(head + 1)
