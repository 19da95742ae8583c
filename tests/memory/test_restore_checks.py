"""Restore verifies before it replaces anything: an empty, truncated or foreign file, or one whose
manifest does not match, is refused with one line whatever the flags (``--force`` included) and
the store is left as it was; the in-use check resolves the store's real path (a symlink to the
file or its folder, a relative path, a bind mount) and holds the lock servers hold; and a drill
round-trips a store holding every kind of record through `mem memory backup` and `restore`."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mem_memory import MemoryStore, StoreInUse
from mem_memory.backup import backup, restore
from mem_memory.lock import lock_path
from mem_memory.rekey import rekey
from mem_testing.cli import run_mem
from tests.memory import _every_kind
from tests.memory._history import populate
from tests.memory.helpers import b64

pytestmark = pytest.mark.sqlite_only  # backups and restores are SQLite's files

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, key: bytes | None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEM_MEMORY_")}
    if key is not None:
        env["MEM_MEMORY_KEY"] = b64(key)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "mem_cli.main", "memory", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def _in_process(*args: str, key: bytes | None) -> subprocess.CompletedProcess[str]:
    """``mem memory <args>`` as ``_cli`` runs it, in this process (typer's runner): for refusals
    that need no second process (the store's lock is a ``flock``, held against this process too)."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("MEM_MEMORY_")}
    if key is not None:
        env["MEM_MEMORY_KEY"] = b64(key)
    return run_mem("memory", *args, env=env)


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exactly one line on stderr (no traceback) and nothing on stdout."""
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr and not done.stdout.strip()
    return lines[0]


@pytest.fixture
def live(tmp_path: Path, key: bytes) -> tuple[Path, Path]:
    """A store in use (``memory/memory.db``) and a sound backup of it (with its manifest)."""
    db = tmp_path / "memory" / "memory.db"
    populate(db, key, bulk=300)
    info = backup(db, tmp_path / "backups")
    return db, Path(info.path)


def _truncated_half(good: Path, folder: Path) -> Path:
    bad = folder / "memory-truncated.db"
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    return bad


def _truncated_at_page(good: Path, folder: Path) -> Path:
    bad = folder / "memory-short.db"
    data = good.read_bytes()
    bad.write_bytes(data[: 4096 * 3])  # whole pages, a valid header: only the page count says it is short
    return bad


def _truncated_with_manifest(good: Path, folder: Path) -> Path:
    bad = _truncated_half(good, folder)
    shutil.copy(good.with_suffix(".json"), bad.with_suffix(".json"))
    return bad


def _empty(good: Path, folder: Path) -> Path:
    bad = folder / "memory-empty.db"
    bad.write_bytes(b"")  # what a backup killed at once leaves
    return bad


def _foreign_sqlite(good: Path, folder: Path) -> Path:
    bad = folder / "memory-foreign.db"
    conn = sqlite3.connect(bad)
    conn.execute("CREATE TABLE notes(x TEXT)")
    conn.execute("INSERT INTO notes VALUES ('not a memory store')")
    conn.commit()
    conn.close()
    return bad


def _foreign_bytes(good: Path, folder: Path) -> Path:
    bad = folder / "memory-text.db"
    bad.write_bytes(b"this is not a database\n" * 400)
    return bad


def _manifest_counts_differ(good: Path, folder: Path) -> Path:
    bad = folder / "memory-counts.db"
    shutil.copy(good, bad)
    manifest = json.loads(good.with_suffix(".json").read_text())
    manifest["events"] += 1
    manifest["last_event_id"] += 1
    bad.with_suffix(".json").write_text(json.dumps(manifest))
    return bad


def _manifest_of_another_backup(good: Path, folder: Path) -> Path:
    bad = folder / "memory-other.db"
    shutil.copy(good, bad)
    manifest = json.loads(good.with_suffix(".json").read_text())
    manifest["sha256"] = "0" * 64
    bad.with_suffix(".json").write_text(json.dumps(manifest))
    return bad


def _manifest_unreadable(good: Path, folder: Path) -> Path:
    bad = folder / "memory-garbled.db"
    shutil.copy(good, bad)
    bad.with_suffix(".json").write_text('{"sha256": ')
    return bad


BAD_BACKUPS: dict[str, Callable[[Path, Path], Path]] = {
    "empty": _empty,
    "truncated-half": _truncated_half,
    "truncated-at-a-page": _truncated_at_page,
    "truncated-with-its-manifest": _truncated_with_manifest,
    "foreign-sqlite": _foreign_sqlite,
    "foreign-bytes": _foreign_bytes,
    "manifest-counts-differ": _manifest_counts_differ,
    "manifest-sha-differs": _manifest_of_another_backup,
    "manifest-unreadable": _manifest_unreadable,
}


@pytest.mark.parametrize("make", BAD_BACKUPS.values(), ids=BAD_BACKUPS.keys())
def test_a_bad_backup_is_refused_with_one_line_even_with_force(
    live: tuple[Path, Path], tmp_path: Path, key: bytes, make: Callable[[Path, Path], Path]
) -> None:
    db, good = live
    before_events = MemoryStore.open(db, key)
    try:
        last = before_events.last_event_id()
        assert last > 300
    finally:
        before_events.close()
    before = db.read_bytes()
    bad = make(good, tmp_path / "backups")
    for flags in ((), ("--force",)):
        line = _one_error_line(_in_process("restore", str(bad), *flags, "--memory-db", str(db), key=key))
        assert bad.name in line  # about the backup, before anything about the target
    assert db.read_bytes() == before  # untouched: not moved aside, not replaced
    assert not list(db.parent.glob("*before-restore*")) and not list(db.parent.glob(".*restoring*"))
    store = MemoryStore.open(db, key)
    try:
        assert store.last_event_id() == last and store.integrity_check() == "ok"
    finally:
        store.close()
    # into a new place too: nothing is created from a bad backup
    fresh = tmp_path / "fresh" / "memory.db"
    _one_error_line(_in_process("restore", str(bad), "--memory-db", str(fresh), key=key))
    assert not fresh.exists()


def test_the_lock_is_the_real_paths(tmp_path: Path) -> None:
    real = tmp_path / "data" / "memory.db"
    real.parent.mkdir()
    real.touch()
    (tmp_path / "link.db").symlink_to(real)
    (tmp_path / "dir-link").symlink_to(real.parent, target_is_directory=True)
    here = Path.cwd()
    os.chdir(real.parent)
    try:
        relative = lock_path("memory.db")
    finally:
        os.chdir(here)
    assert lock_path(tmp_path / "link.db") == lock_path(real) == lock_path(tmp_path / "dir-link" / "memory.db")
    assert relative == lock_path(real) and lock_path(real).is_absolute()


@pytest.fixture
def aliases(live: tuple[Path, Path], tmp_path: Path) -> dict[str, Path]:
    db, _ = live
    (tmp_path / "link.db").symlink_to(db)
    (tmp_path / "dir-link").symlink_to(db.parent, target_is_directory=True)
    return {"real": db, "symlink": tmp_path / "link.db", "dir-symlink": tmp_path / "dir-link" / db.name}


@pytest.mark.parametrize(
    ("opened", "restored"),
    [("symlink", "real"), ("real", "symlink"), ("dir-symlink", "real"), ("real", "dir-symlink")],
)
def test_restore_refuses_a_store_in_use_under_another_name(
    live: tuple[Path, Path], aliases: dict[str, Path], key: bytes, opened: str, restored: str
) -> None:
    db, good = live
    before = db.stat().st_ino
    holder = MemoryStore.open(aliases[opened], key)
    try:
        with pytest.raises(StoreInUse, match=f"in use by pid {os.getpid()}"):
            restore(good, aliases[restored], key, force=True)
        line = _one_error_line(_cli("restore", str(good), "--force", "--memory-db", str(aliases[restored]), key=key))
        assert f"pid {os.getpid()}" in line
    finally:
        holder.close()
    assert db.stat().st_ino == before and not list(db.parent.glob("*before-restore*"))  # not replaced


def test_restore_through_a_symlink_replaces_the_real_file_and_keeps_the_link(
    live: tuple[Path, Path], aliases: dict[str, Path], key: bytes
) -> None:
    db, good = live
    link = aliases["symlink"]
    done = restore(good, link, key, force=True)
    assert link.is_symlink() and link.resolve() == db.resolve()
    assert done.path == str(db.resolve()) and done.replaced_to is not None
    assert Path(done.replaced_to).parent == db.parent  # moved aside beside the real file
    store = MemoryStore.open(link, key)
    try:
        assert store.last_event_id() == done.last_event_id
    finally:
        store.close()


def test_restore_refuses_a_store_opened_by_a_relative_path(live: tuple[Path, Path], key: bytes) -> None:
    db, good = live
    here = Path.cwd()
    os.chdir(db.parent)
    try:
        holder = MemoryStore.open(Path(db.name), key)
    finally:
        os.chdir(here)
    try:
        with pytest.raises(StoreInUse):
            restore(good, db, key, force=True)
        _one_error_line(_cli("restore", str(good), "--force", "--memory-db", db.name, key=key, cwd=db.parent))
    finally:
        holder.close()


@pytest.fixture
def bind(tmp_path: Path) -> Iterator[Callable[[Path, Path], None]]:
    """``bind(source, target)``: a bind mount, unmounted afterwards (root only; skipped elsewhere,
    never under CI=true)."""
    mounted: list[Path] = []

    def do(source: Path, target: Path) -> None:
        done = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True, text=True)
        if done.returncode != 0:
            if os.environ.get("CI") == "true":
                pytest.fail(f"cannot bind-mount under CI: {done.stderr.strip()}")
            pytest.skip(f"bind mounts need root (mount said: {done.stderr.strip()})")
        mounted.append(target)

    if os.geteuid() != 0 and os.environ.get("CI") != "true":
        pytest.skip("bind mounts need root")
    yield do
    for target in reversed(mounted):
        subprocess.run(["umount", str(target)], check=False)


@pytest.mark.parametrize("what", ["folder", "file"])
def test_restore_refuses_a_store_in_use_through_a_bind_mount(
    live: tuple[Path, Path], tmp_path: Path, key: bytes, bind: Callable[[Path, Path], None], what: str
) -> None:
    db, good = live
    if what == "folder":
        other = tmp_path / "mnt"
        other.mkdir()
        bind(db.parent, other)
        alias = other / db.name
    else:
        other = tmp_path / "elsewhere"
        other.mkdir()
        alias = other / "memory.db"
        alias.touch()
        bind(db, alias)
    before = db.stat().st_ino
    assert alias.stat().st_ino == before and os.path.realpath(alias) != os.path.realpath(db)
    holder = MemoryStore.open(alias, key)
    try:
        with pytest.raises(StoreInUse, match=f"pid {os.getpid()}"):
            restore(good, db, key, force=True)
        with pytest.raises(StoreInUse, match=f"pid {os.getpid()}"):  # and a rekey
            rekey(db, os.urandom(32), (key,))
    finally:
        holder.close()
    assert db.stat().st_ino == before and not list(db.parent.glob("*before-restore*"))  # not replaced


@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "clear"])
def test_restore_drill_round_trips_every_kind_of_record(tmp_path: Path, key: bytes, encrypted: bool) -> None:
    k = key if encrypted else None
    db = tmp_path / "memory" / "memory.db"
    _every_kind.build(db, k)
    original = _every_kind.content(db, k)
    backed = _cli("backup", str(tmp_path / "backups"), "--memory-db", str(db), key=k)
    assert backed.returncode == 0, backed.stderr
    info = json.loads(backed.stdout)
    assert {e[1] for e in original["events"]} == {
        "decision",
        "outcome",
        "shadow_outcome",
        "parameter_adjustment",
        "strategy_upsert",
    }
    assert original["requests"] and any(s["deprecated"] for s in original["strategies"].values())
    assert {row[2] for row in original["audit"]} >= {"open"}

    target = tmp_path / "restored" / "memory.db"
    done = _cli("restore", info["path"], "--memory-db", str(target), key=k)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["manifest_checked"] and report["last_event_id"] == info["last_event_id"]
    restored = _every_kind.content(target, k)
    audit_before, audit_after = original.pop("audit"), restored.pop("audit")
    assert restored == original  # every record, lookup row, request id, meta row and the working memory
    assert audit_after[: len(audit_before)] == audit_before  # the trail, then the restore's own rows
    assert "restore" in [row[2] for row in audit_after[len(audit_before) :]]
