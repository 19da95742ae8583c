"""A store whose disk is really full (a small tmpfs filled to the last byte): it opens read-only
for whoever only reads (`mem memory verify`, `backup` to another disk, `audit`, a starting
server), writes are refused as ``StoreFull`` with nothing stored, and it becomes writable again
by itself once space returns; every CLI failure on it is one line, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mem_memory import MemoryConfig, MemoryEngine, MemoryStore, StoreFull
from mem_testing.cli import run_mem
from tests.memory._history import events, populate
from tests.memory.disk import SmallDisk, small_disk
from tests.memory.helpers import b64, request

pytestmark = pytest.mark.sqlite_only  # a file on a disk


def _cli(*args: str, key: bytes | None, previous: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """``mem memory <args>`` in this process (typer's runner: what matters is the full disk, not a
    new process), with only the given keys in the environment."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("MEM_MEMORY_")}
    if key is not None:
        env["MEM_MEMORY_KEY"] = b64(key)
    if previous is not None:
        env["MEM_MEMORY_KEY_PREVIOUS"] = b64(previous)
    return run_mem("memory", *args, env=env)


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.fixture
def full(tmp_path: Path, key: bytes) -> Iterator[tuple[SmallDisk, Path]]:
    """A populated, closed store on a small tmpfs that is then filled up."""
    with small_disk(tmp_path / "disk") as disk:
        db = disk.path / "memory" / "memory.db"
        populate(db, key, bulk=300)
        disk.fill()
        yield disk, db


def test_verify_backup_elsewhere_and_audit_work_on_a_full_disk(
    full: tuple[SmallDisk, Path], tmp_path: Path, key: bytes
) -> None:
    disk, db = full
    with pytest.raises(Exception):  # noqa: B017,PT011  # really full: not even a read-write open
        MemoryStore.open(db, key).close()
    checked = _cli("verify", "--memory-db", str(db), key=key)
    assert checked.returncode == 0, checked.stderr
    assert "events checked, sound" in checked.stdout and " 0 events" not in checked.stdout

    backed = _cli("backup", str(tmp_path / "elsewhere"), "--memory-db", str(db), key=None)
    assert backed.returncode == 0, backed.stderr
    info = json.loads(backed.stdout)
    assert info["events"] > 300 and Path(info["path"]).is_file()

    listed = _cli("audit", "--memory-db", str(db), key=None)
    assert listed.returncode == 0, listed.stderr
    assert " open " in listed.stdout

    # what cannot work says so in one line: a backup onto the full disk, a restore over the store
    _one_error_line(_cli("backup", str(disk.path / "backups"), "--memory-db", str(db), key=None))
    assert not any(disk.path.joinpath("backups").glob(".*")), "a failed backup left its partial file"
    before = db.read_bytes()
    _one_error_line(_cli("restore", info["path"], "--force", "--memory-db", str(db), key=key))
    assert db.read_bytes() == before and not list(db.parent.glob(".*restoring*"))
    _one_error_line(_cli("rekey", "--memory-db", str(db), key=os.urandom(32), previous=key))
    assert db.read_bytes() == before

    disk.free()
    restored = tmp_path / "restored" / "memory.db"
    done = _cli("restore", info["path"], "--memory-db", str(restored), key=key)
    assert done.returncode == 0, done.stderr
    a, b = MemoryStore.open(db, key), MemoryStore.open(restored, key)
    try:
        assert events(a) == events(b)  # the backup taken on the full disk is the whole store
    finally:
        a.close()
        b.close()


def test_a_store_opened_on_a_full_disk_reads_refuses_writes_and_recovers(
    full: tuple[SmallDisk, Path], key: bytes
) -> None:
    disk, db = full
    store = MemoryStore.open(db, key, read_only_when_full=True)
    try:
        assert not store.writable and "full" in store.read_only_reason
        last = store.last_event_id()
        assert last > 300 and store.latest_parameters() is not None
        engine = MemoryEngine(store, MemoryConfig(write_probe_s=0.05))
        try:
            assert not engine.write_health.ok  # NOT_SERVING for writes from the start
            assert engine.recent_decisions("S0", 5)  # the working memory was built: reads answer
            with pytest.raises(StoreFull, match="nothing was stored"):
                engine.enhance(request(symbol="S0"))
            assert store.last_event_id() == last
            time.sleep(0.3)
            assert not engine.write_health.ok  # still full: the probe keeps failing
            disk.free()
            deadline = time.monotonic() + 10
            while not engine.write_health.ok and time.monotonic() < deadline:
                time.sleep(0.02)
            assert engine.write_health.ok and store.writable  # no restart
            decided = engine.enhance(request(symbol="S0"))
            assert store.get_decision(decided.decision_id)[0] == decided
        finally:
            engine.close()
    finally:
        store.close()
    again = MemoryStore.open(db, key)
    try:
        assert again.last_event_id() == last + 1 and again.integrity_check() == "ok"
    finally:
        again.close()
