"""Backups and the restore drill: an online snapshot taken while a real process writes, restored
into a new path by `mem memory restore`, every event up to the backup's last id present and the
working memory rebuilt equal; a restore refuses a store in use, an existing store, a damaged
backup and a wrong key, and then leaves the target untouched."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mem_memory import (
    CorruptRecord,
    MemoryEngine,
    MemoryStore,
    StoreInUse,
    WrongMemoryKey,
    key_id,
)
from mem_memory.backup import backup, backups, prune, restore
from tests.memory._history import CONFIG, MARKER, SYMBOLS, events, populate, views
from tests.memory.helpers import b64

pytestmark = pytest.mark.sqlite_only  # SQLite's files: the writer process, caps, backups, modes

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_worker.py")


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mem_cli.main", "memory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
        check=False,
    )


class Lines:
    """A child's stdout lines, read by a thread as they come."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        self._thread = threading.Thread(target=lambda: [self.lines.append(line) for line in proc.stdout], daemon=True)  # type: ignore[union-attr]
        self._thread.start()

    def wait_for(self, n: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.lines) < n:
            assert time.monotonic() < deadline, f"only {len(self.lines)} lines"
            time.sleep(0.01)


def _replayed(source: MemoryStore, through: int, empty: Path, key: bytes) -> MemoryEngine:
    """The working memory a live engine held at event ``through``: an engine started on an empty
    store, then fed the source's events one by one as its refresh would."""
    engine = MemoryEngine(MemoryStore.open(empty, key), CONFIG)
    engine.store = source  # outcomes of decisions no longer held are looked up in the source
    for event in source.iter_events():
        if event.event_id > through:
            break
        engine._apply(event)
    return engine


def test_backup_during_load_then_restore_drill(tmp_path: Path, db: Path, key: bytes) -> None:
    populate(db, key, bulk=3000)
    env = {"MEM_MEMORY_KEY": b64(key), "MEM_MEMORY_DB": str(db)}
    writer = subprocess.Popen(
        [sys.executable, str(WORKER), "write", str(db), "LIVE", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    try:
        out = Lines(writer)
        out.wait_for(50)
        during = _cli("backup", str(tmp_path / "backups"), env=env)  # a real process, while the writer commits
        assert during.returncode == 0, during.stderr
        acked_at_backup = len(out.lines)
        out.wait_for(acked_at_backup + 50)  # the writer never stopped
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.communicate(timeout=30)
    info = json.loads(during.stdout)
    file, manifest = Path(info["path"]), Path(info["manifest"])
    assert _mode(tmp_path / "backups") == 0o700 and _mode(file) == 0o600 and _mode(manifest) == 0o600
    assert info["encrypted"] and info["key_ids"] == [key_id(key)]
    assert MARKER.encode() not in file.read_bytes() and b"LIVE" not in file.read_bytes()  # payloads stay encrypted
    last = info["last_event_id"]
    source = MemoryStore.open(db, key)
    try:
        assert source.last_event_id() > last  # the writer went on past the snapshot
        restored_db = tmp_path / "restored" / "memory.db"
        done = _cli("restore", str(file), "--memory-db", str(restored_db), env={"MEM_MEMORY_KEY": b64(key)})
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["last_event_id"] == last and report["manifest_checked"] and report["replaced_to"] is None
        assert _mode(restored_db) == 0o600
        restored = MemoryStore.open(restored_db, key)
        try:
            assert restored.integrity_check() == "ok"
            assert events(restored) == events(source, through=last)  # every event up to the last id, nothing after
            assert restored.counts()["decisions"] == info["decisions"]
            rebuilt = views(MemoryEngine(restored, CONFIG), (*SYMBOLS, "LIVE"))
            assert rebuilt["LIVE"]  # the live writer's decisions are in the snapshot
            expected = views(_replayed(source, last, tmp_path / "empty.db", key), (*SYMBOLS, "LIVE"))
            assert rebuilt == expected
        finally:
            restored.close()
    finally:
        source.close()


def test_restore_refuses_in_use_existing_damaged_and_wrong_key(tmp_path: Path, db: Path, key: bytes) -> None:
    populate(db, key, bulk=200)
    info = backup(db, tmp_path / "b")
    target = tmp_path / "target" / "memory.db"
    restore(info.path, target, key)
    holder = MemoryStore.open(target, key)
    try:
        with pytest.raises(StoreInUse, match="in use by pid"):
            restore(info.path, target, key, force=True)
    finally:
        holder.close()
    before = target.read_bytes()
    with pytest.raises(FileExistsError):
        restore(info.path, target, key)  # an existing store needs --force
    with pytest.raises(WrongMemoryKey):
        restore(info.path, target, os.urandom(32), force=True)
    damaged = Path(info.path).read_bytes()
    flipped = bytearray(damaged)
    flipped[len(flipped) // 2] ^= 0xFF
    bad = tmp_path / "b" / "memory-damaged.db"
    bad.write_bytes(bytes(flipped))
    Path(info.manifest).with_name("memory-damaged.json").write_text(Path(info.manifest).read_text())
    with pytest.raises(CorruptRecord, match="manifest"):
        restore(bad, target, key, force=True)
    Path(info.manifest).with_name("memory-damaged.json").unlink()
    with pytest.raises(CorruptRecord):  # no manifest: the page or payload checks catch it
        restore(bad, target, key, force=True)
    assert target.read_bytes() == before and not list(target.parent.glob(".*restoring*"))
    replaced = restore(info.path, target, key, force=True)
    assert (
        replaced.replaced_to is not None and Path(replaced.replaced_to).read_bytes() == before
    )  # moved aside, not lost


def test_backup_keeps_the_newest_and_touches_nothing_else(tmp_path: Path, db: Path) -> None:
    populate(db, None, bulk=20)
    folder = tmp_path / "b"
    folder.mkdir(mode=0o755)
    (folder / "notes.txt").write_text("mine")
    made = [backup(db, folder) for _ in range(3)]
    assert _mode(folder) == 0o700  # tightened
    assert backups(folder) == [Path(m.path) for m in made]
    last = backup(db, folder, keep=2)
    assert [Path(p) for p in last.pruned] == [Path(m.path) for m in made[:2]]
    assert backups(folder) == [Path(made[2].path), Path(last.path)]
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith("memory-")) == ["notes.txt"]
    assert len(list(folder.glob("memory-*.json"))) == 2
    assert prune(folder, 1) == [Path(made[2].path)]
    with pytest.raises(ValueError):
        prune(folder, 0)
