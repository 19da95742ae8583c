"""Backups of the memory store, and the restore that checks them.

``backup(db, folder)`` takes an online, consistent snapshot while servers keep writing: SQLite's
backup API copies every page in one step inside one read transaction (WAL readers do not block
writers, and the copy is the database as of one commit). Payloads are copied as stored, so an
encrypted store's backup is encrypted under the same key(s); lookup columns hold tags. The file
is written under a temporary name, fsynced, renamed to ``memory-<UTC time>.db`` (0600) in a
folder that is 0700, with a manifest ``memory-<UTC time>.json`` beside it (size, SHA-256, last
event id, counts, key ids needed to read it). No key is needed to take a backup.

``restore(backup, db, key)`` refuses a store in use (``StoreInUse``: it takes the store's lock
alone) and an existing store unless ``force``; it copies the backup to a staging file beside
the target, checks it (SHA-256 against the manifest, ``PRAGMA integrity_check``, the key check,
every payload decrypted and decoded, counts and last event id against the manifest, the working
memory rebuilt) and only then renames it over the target.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mem_memory import audit, keys
from mem_memory.backend import describe, is_postgres
from mem_memory.errors import CorruptRecord, MemoryStoreError, StoreClosed
from mem_memory.lock import StoreLock, lock_path
from mem_memory.store import MemoryStore, _connect

PREFIX = "memory-"
BACKUP_COMMAND = "mem memory backup"
RESTORE_COMMAND = "mem memory restore"


@dataclass(frozen=True)
class BackupInfo:
    path: str
    manifest: str
    bytes: int
    sha256: str
    last_event_id: int
    events: int
    decisions: int
    outcomes: int
    encrypted: bool
    key_ids: list[str]  # the keys needed to read it (two while a rotation is unfinished)
    created_at: str
    seconds: float
    pruned: list[str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RestoreInfo:
    path: str
    source: str
    sha256: str
    last_event_id: int
    events: int
    decisions: int
    outcomes: int
    key_id: str | None
    replaced_to: str | None  # where the store that was there before was moved
    manifest_checked: bool
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def private_folder(folder: Path) -> Path:
    """``folder`` created 0700, or tightened to 0700 when it is ours and looser; a looser
    folder of another user is refused (``PermissionError``)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = folder.stat()
    if stat.S_IMODE(st.st_mode) & 0o077:
        if st.st_uid != os.getuid():
            raise PermissionError(f"the backup folder {folder} is open to other users and not ours to tighten")
        os.chmod(folder, 0o700)
    return folder


def _sqlite_only(db: str | os.PathLike[str]) -> None:
    if is_postgres(db):
        raise MemoryStoreError(
            f"backups of a PostgreSQL memory ({describe(db)}) are PostgreSQL's own: pg_dump or "
            "point-in-time recovery (the payloads stay encrypted in them); `mem memory backup|restore` is SQLite-only"
        )


def backup(
    db: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    *,
    keep: int | None = None,
    command: str = BACKUP_COMMAND,
) -> BackupInfo:
    """Snapshot the store at ``db`` into ``folder`` (see the module docstring); with ``keep``,
    then delete all but the newest ``keep`` backups there. Refused (``StoreInUse``) only while a
    rekey or restore holds the store."""
    _sqlite_only(db)
    started = time.perf_counter()
    db = Path(db)
    if not db.exists():
        raise StoreClosed(f"the memory store {db} does not exist")
    if keep is not None and keep < 1:
        raise ValueError("keep must be >= 1")
    dest = private_folder(Path(folder))
    created = datetime.now(UTC)
    name = f"{PREFIX}{created:%Y%m%dT%H%M%S.%f}Z"
    final, manifest = dest / f"{name}.db", dest / f"{name}.json"
    partial = dest / f".{name}.db.partial"
    with StoreLock.acquire(db):
        src = _connect(db)
        try:
            if src.execute("SELECT count(*) FROM sqlite_master WHERE name = 'events'").fetchone()[0] != 1:
                raise StoreClosed(f"{db} is not a memory store (no events table)")
            os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            try:
                dst = sqlite3.connect(partial, isolation_level=None)
                try:
                    src.backup(dst)  # every page in one step: one read transaction, one consistent snapshot
                    dst.execute("PRAGMA journal_mode=DELETE")  # a self-contained file (no -wal beside it)
                    facts = _facts(dst)
                finally:
                    dst.close()
                _fsync(partial)
                digest, size = _sha256(partial), partial.stat().st_size
                os.replace(partial, final)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            _fsync_dir(dest)
            info = BackupInfo(
                path=str(final),
                manifest=str(manifest),
                bytes=size,
                sha256=digest,
                created_at=created.isoformat(),
                seconds=round(time.perf_counter() - started, 3),
                pruned=[],
                **facts,
            )
            _write_private(
                manifest,
                json.dumps(
                    {k: v for k, v in info.as_dict().items() if k not in ("pruned", "seconds", "manifest")}, indent=1
                ),
            )
            _fsync_dir(dest)
            audit.record_now(
                src,
                audit.BACKUP,
                info.key_ids[0] if info.key_ids else None,
                command,
                {
                    "file": final.name,
                    "sha256": digest,
                    "bytes": size,
                    "last_event_id": info.last_event_id,
                },
            )
        finally:
            src.close()
    pruned = prune(dest, keep) if keep is not None else []
    return BackupInfo(
        **{**info.as_dict(), "pruned": [str(p) for p in pruned], "seconds": round(time.perf_counter() - started, 3)}
    )


def backups(folder: str | os.PathLike[str]) -> list[Path]:
    """The backups in ``folder``, oldest first (their names sort by time)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"{PREFIX}*.db") if p.is_file())


def prune(folder: str | os.PathLike[str], keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups (and their manifests) in ``folder``; other
    files are never touched. Returns the deleted backups."""
    if keep < 1:
        raise ValueError("keep must be >= 1")
    old = backups(folder)[:-keep]
    for p in old:
        p.unlink()
        p.with_suffix(".json").unlink(missing_ok=True)
    return old


def restore(
    source: str | os.PathLike[str],
    db: str | os.PathLike[str],
    key: bytes | None,
    *,
    previous_keys: Sequence[bytes] = (),
    force: bool = False,
    command: str = RESTORE_COMMAND,
) -> RestoreInfo:
    """Restore the backup ``source`` as the store ``db`` (see the module docstring). Raises
    ``StoreInUse`` while anything has ``db`` open, ``FileExistsError`` when it exists and not
    ``force`` (then the old store is moved aside to ``<db>.before-restore-<time>``), ``CorruptRecord`` when the backup fails a check, ``MemoryKeyError`` when the keys
    do not open it; the target is untouched in every one of these cases."""
    _sqlite_only(db)
    started = time.perf_counter()
    source, db = Path(source), Path(db)
    if not source.is_file():
        raise FileNotFoundError(f"no backup at {source}")
    manifest_path = source.with_suffix(".json")
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else None
    digest = _sha256(source)
    if manifest is not None and manifest.get("sha256") != digest:
        raise CorruptRecord(f"{source} does not match its manifest (SHA-256 differs): refusing to restore it")
    if not db.parent.exists():
        private_folder(db.parent)
    staging = db.parent / f".{db.name}.restoring"
    with StoreLock.acquire(db, exclusive=True):
        replaced = db.exists()
        if replaced and not force:
            raise FileExistsError(f"the memory store {db} exists; pass --force to replace it (it is not in use)")
        _remove(staging)
        with (
            open(source, "rb") as fin,
            os.fdopen(os.open(staging, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600), "wb") as fout,
        ):
            shutil.copyfileobj(fin, fout, 1 << 20)
        try:
            try:
                facts = _verify(
                    staging,
                    key,
                    previous_keys,
                    manifest,
                    command,
                    {
                        "source": source.name,
                        "sha256": digest,
                        "manifest": manifest is not None,
                        "replaced": replaced,
                    },
                )
            except sqlite3.DatabaseError as exc:
                raise CorruptRecord(f"{source} is not a sound memory store: {exc}") from None
            _fsync(staging)
            aside = None
            if replaced:  # kept, with any log a crash left, until the operator deletes it
                aside = db.with_name(f"{db.name}.before-restore-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
                os.replace(db, aside)
                if Path(f"{db}-wal").exists():
                    os.replace(f"{db}-wal", f"{aside}-wal")
            for suffix in ("-wal", "-shm", "-journal"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)  # nothing has the old store open: we hold its lock
            os.replace(staging, db)
            _fsync_dir(db.parent)
        finally:
            _remove(staging)
    return RestoreInfo(
        path=str(db),
        source=str(source),
        sha256=digest,
        replaced_to=str(aside) if aside else None,
        manifest_checked=manifest is not None,
        seconds=round(time.perf_counter() - started, 3),
        **facts,
    )


def _verify(
    staging: Path,
    key: bytes | None,
    previous_keys: Sequence[bytes],
    manifest: dict[str, Any] | None,
    command: str,
    detail: dict[str, Any],
) -> dict[str, Any]:
    """Open the staged copy with the keys and check it; record the restore in its audit trail.
    Returns the facts RestoreInfo reports."""
    from mem_memory.engine import MemoryEngine

    store = MemoryStore.open(staging, key, previous_keys=previous_keys, exclusive=True, command=command)
    try:
        check = store.integrity_check()
        if check != "ok":
            raise CorruptRecord(f"the backup fails SQLite's integrity check: {check}")
        events = 0
        last = 0
        for event in store.iter_events():  # decrypts and decodes every payload
            events += 1
            last = event.event_id
        counts = store.counts()
        facts = {
            "last_event_id": last,
            "events": events,
            "decisions": counts["decisions"],
            "outcomes": counts["outcomes"],
            "key_id": store._codec.store_key_id,
        }
        if manifest is not None:
            for k in ("last_event_id", "events", "decisions", "outcomes"):
                if manifest.get(k) != facts[k]:
                    raise CorruptRecord(f"the backup holds {k} = {facts[k]}, its manifest says {manifest.get(k)}")
        MemoryEngine(store).close()  # the working memory rebuilds from it
        audit.record_now(
            store._c(),
            audit.RESTORE,
            store._codec.store_key_id,
            command,
            {**detail, "last_event_id": last, "events": events},
        )
        store.checkpoint()
    finally:
        store.close()
    if Path(f"{staging}-wal").exists() and Path(f"{staging}-wal").stat().st_size:
        raise CorruptRecord("the staged restore kept a write-ahead log after closing")
    return facts


def _facts(conn: sqlite3.Connection) -> dict[str, Any]:
    meta = dict(conn.execute("SELECT k, v FROM meta").fetchall())
    encrypted = meta.get("encrypted") == "1"
    store_id, target = keys.rotation(conn) if encrypted else (None, None)
    last, events = conn.execute("SELECT coalesce(max(event_id), 0), count(*) FROM events").fetchone()
    decisions, outcomes = conn.execute("SELECT count(*), count(outcome_event_id) FROM decisions").fetchone()
    return {
        "last_event_id": int(last),
        "events": int(events),
        "decisions": int(decisions),
        "outcomes": int(outcomes),
        "encrypted": encrypted,
        "key_ids": [k for k in (store_id, target) if k],
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    with os.fdopen(os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600), "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(staging: Path) -> None:
    for p in (staging, Path(f"{staging}-wal"), Path(f"{staging}-shm"), Path(f"{staging}-journal"), lock_path(staging)):
        p.unlink(missing_ok=True)
