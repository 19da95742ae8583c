"""Backups clean up after themselves: a `mem memory backup` killed with SIGKILL in the middle of
its copy leaves its temporary files (``.partial``, ``-journal``) behind, and the next backup
removes them, so the folder holds only what ``--keep`` manages; a backup in progress is never
taken for a stale one."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from mem_memory import MemoryStore
from mem_memory.backup import backup, backups
from tests.memory.helpers import make_decision

pytestmark = pytest.mark.sqlite_only  # backups are SQLite's files

ROOT = Path(__file__).resolve().parents[2]


def _big_store(db: Path, decisions: int = 6000) -> None:
    """~60 MB: long enough to copy that a kill lands in the middle."""
    store = MemoryStore.open(db)
    try:
        filler = "x" * 10_000
        store.bulk_append(replace(make_decision(i), reasoning=f"{i} {filler}") for i in range(decisions))
    finally:
        store.close()


def _kill_mid_copy(db: Path, folder: Path) -> list[str]:
    """Start `mem memory backup`, SIGKILL it once its rollback journal exists (mid-copy); the
    names it left in ``folder``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEM_MEMORY_")}
    for _attempt in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-m", "mem_cli.main", "memory", "backup", str(folder), "--memory-db", str(db)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                if folder.is_dir() and any(p.name.endswith("-journal") for p in folder.iterdir()):
                    proc.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.001)
        finally:
            if proc.poll() is None and time.monotonic() >= deadline:
                proc.kill()
            rc = proc.wait(timeout=30)
        if rc == -signal.SIGKILL:
            return sorted(p.name for p in folder.iterdir())
        for p in backups(folder):  # it finished before the kill: try again
            p.unlink()
            p.with_suffix(".json").unlink(missing_ok=True)
    pytest.fail("the backup never ran long enough to be killed mid-copy")


def _not_managed(folder: Path) -> list[str]:
    """Files of the folder that are neither a backup nor its manifest."""
    managed = {p.name for p in backups(folder)} | {p.with_suffix(".json").name for p in backups(folder)}
    return sorted(p.name for p in folder.iterdir() if p.name not in managed)


def test_a_killed_backup_leaves_nothing_after_the_next_backup(tmp_path: Path) -> None:
    db = tmp_path / "memory" / "memory.db"
    _big_store(db)
    folder = tmp_path / "backups"
    kept = backup(db, folder)
    for _ in range(2):  # two killed backups pile up their leftovers
        left = _kill_mid_copy(db, folder)
        assert any(n.endswith(".partial") for n in left) and any(n.endswith("-journal") for n in left), left
    assert _not_managed(folder)  # what the kills left: today nothing ever removed it
    done = subprocess.run(
        [sys.executable, "-m", "mem_cli.main", "memory", "backup", str(folder), "--keep", "1", "--memory-db", str(db)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert _not_managed(folder) == []  # no .partial, no -journal
    assert backups(folder) == [Path(info["path"])] and not Path(kept.path).exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted([Path(info["path"]).name, Path(info["manifest"]).name])


def test_a_backup_in_progress_is_not_stale(tmp_path: Path) -> None:
    db = tmp_path / "memory" / "memory.db"
    MemoryStore.open(db).close()
    folder = tmp_path / "backups"
    folder.mkdir(mode=0o700)
    live = folder / ".memory-20260101T000000.000000Z.db.partial"
    stale = folder / ".memory-20250101T000000.000000Z.db.partial"
    for p in (live, stale, Path(f"{stale}-journal")):
        p.write_bytes(b"left")
    fd = os.open(live, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a running backup holds its own partial file
        backup(db, folder)
        assert live.exists()  # another backup's copy in progress: left alone
        assert not stale.exists() and not Path(f"{stale}-journal").exists()
    finally:
        os.close(fd)
    backup(db, folder)
    assert not live.exists()
