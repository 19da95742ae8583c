"""Backups of the memory store, and the restore that checks them.

``backup(db, folder)`` takes an online, consistent snapshot while servers keep writing: SQLite's
backup API copies every page in one step inside one read transaction (WAL readers do not block
writers, and the copy is the database as of one commit). Payloads are copied as stored, so an
encrypted store's backup is encrypted under the same key(s); lookup columns hold tags. The file
is written under a temporary name, fsynced, renamed to ``memory-<UTC time>.db`` (0600) in a
folder that is 0700, with a manifest ``memory-<UTC time>.json`` beside it (size, SHA-256, last
event id, counts, key ids needed to read it). No key is needed to take a backup.

A killed backup leaves its temporary files (``.memory-<time>.db.partial`` and SQLite's
``-journal``); each backup holds a lock on its own partial file while it runs, and the next
backup removes every partial file whose backup is no longer running (``remove_stale``).

``restore(backup, db, key)`` first checks the backup itself, whatever the flags: an empty,
truncated or foreign file, or one that does not match its manifest, is refused
(``CorruptRecord``) before anything else happens. It resolves the store's real path (a symlink
stays a symlink and points at the restored file), refuses a store in use (``StoreInUse``: it
takes the lock every open holds, alone, and refuses while any process has a lock on the database
file itself, whatever name it opened it by) and an existing store unless ``force``; it copies
the backup to a staging file beside the target, checks it (``PRAGMA integrity_check``, the key
check, every payload decrypted and decoded, counts and last event id against the manifest, the
working memory rebuilt) and only then renames it over the target.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import stat
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mem_memory import audit, keys
from mem_memory.backend import describe, is_postgres
from mem_memory.errors import CorruptRecord, MemoryStoreError, StoreClosed, StoreInUse
from mem_memory.lock import StoreLock, file_holders, lock_path
from mem_memory.lock import describe as describe_pids
from mem_memory.store import MemoryStore, _connect, _no_space, read_only_connect

log = logging.getLogger(__name__)

PREFIX = "memory-"
#: A backup's temporary files: ``.memory-<time>.db.partial`` (+ SQLite's ``-journal``, ``-wal``,
#: ``-shm``) and ``.memory-<time>.json.partial``.
_TEMPORARY = re.compile(r"^\.(memory-[0-9T.]+Z)\.(?:db|json)\.partial(?:-journal|-wal|-shm)?$")
_SQLITE_MAGIC = b"SQLite format 3\x00"
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
    audited: bool = True  # False: the store's disk was full, the backup row is not in its audit trail
    removed_stale: list[str] = field(default_factory=list)  # temporary files of killed backups

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
    rekey or restore holds the store. A store whose disk is full is read read-only (its audit
    row is then left out: ``audited`` False). Fails with ``MemoryStoreError`` (one line) when the
    backup cannot be written; nothing is left in ``folder`` then."""
    _sqlite_only(db)
    started = time.perf_counter()
    db = Path(db)
    if not db.exists():
        raise StoreClosed(f"the memory store {db} does not exist")
    if keep is not None and keep < 1:
        raise ValueError("keep must be >= 1")
    dest = private_folder(Path(folder))
    stale = remove_stale(dest)
    created = datetime.now(UTC)
    name = f"{PREFIX}{created:%Y%m%dT%H%M%S.%f}Z"
    final, manifest = dest / f"{name}.db", dest / f"{name}.json"
    partial = dest / f".{name}.db.partial"
    with StoreLock.acquire(db):
        src, writable = _source(db)
        try:
            if src.execute("SELECT count(*) FROM sqlite_master WHERE name = 'events'").fetchone()[0] != 1:
                raise StoreClosed(f"{db} is not a memory store (no events table)")
            try:
                info = _copy(src, partial, final, manifest, created, started, stale)
            except (OSError, sqlite3.Error) as exc:
                raise MemoryStoreError(f"cannot write the backup of {db} into {dest}: {exc}") from None
            audited = writable and _audit_backup(src, db, info, command)
        finally:
            src.close()
    pruned = prune(dest, keep) if keep is not None else []
    return BackupInfo(
        **{
            **info.as_dict(),
            "pruned": [str(p) for p in pruned],
            "seconds": round(time.perf_counter() - started, 3),
            "audited": audited,
        }
    )


def _source(db: Path) -> tuple[sqlite3.Connection, bool]:
    """A connection to the store to copy, and whether it can write (its audit row): read-only
    when the store's disk is full."""
    try:
        conn = _connect(db)
    except sqlite3.Error as exc:
        if not _no_space(db, exc):
            raise
        log.info("the disk of the memory store %s is full (%s): backing it up read-only", db, exc)
        return read_only_connect(db), False
    return conn, True


def _copy(
    src: sqlite3.Connection,
    partial: Path,
    final: Path,
    manifest: Path,
    created: datetime,
    started: float,
    stale: list[str],
) -> BackupInfo:
    """Write the snapshot to ``partial`` (locked for as long as this backup runs, so no other
    backup takes it for a stale one), rename it to ``final``, then write ``manifest``."""
    holder = os.open(partial, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
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
            _remove_temporary(partial)
            raise
        _fsync_dir(final.parent)
        info = BackupInfo(
            path=str(final),
            manifest=str(manifest),
            bytes=size,
            sha256=digest,
            created_at=created.isoformat(),
            seconds=round(time.perf_counter() - started, 3),
            pruned=[],
            removed_stale=stale,
            **facts,
        )
        skip = ("pruned", "seconds", "manifest", "audited", "removed_stale")
        try:
            _write_private(manifest, json.dumps({k: v for k, v in info.as_dict().items() if k not in skip}, indent=1))
            _fsync_dir(final.parent)
        except BaseException:
            final.unlink(missing_ok=True)  # a backup without its manifest is not left behind
            raise
    finally:
        os.close(holder)
    return info


def _audit_backup(src: sqlite3.Connection, db: Path, info: BackupInfo, command: str) -> bool:
    """The backup's audit row in the store; left out (False, logged) when the store is full."""
    try:
        audit.record_now(
            src,
            audit.BACKUP,
            info.key_ids[0] if info.key_ids else None,
            command,
            {
                "file": Path(info.path).name,
                "sha256": info.sha256,
                "bytes": info.bytes,
                "last_event_id": info.last_event_id,
            },
        )
    except sqlite3.Error as exc:
        if not _no_space(db, exc):
            raise
        log.info("the memory store %s is full (%s): the backup is not in its audit trail (audited: false)", db, exc)
        return False
    return True


def remove_stale(folder: str | os.PathLike[str]) -> list[str]:
    """Delete the temporary files of backups that no longer run (killed, or the machine went
    down) from ``folder``; a running backup holds a lock on its partial file (then on its
    renamed backup until its manifest is written) and keeps its files. Returns the names
    removed."""
    folder = Path(folder)
    by_backup: dict[str, list[Path]] = {}
    for p in folder.iterdir() if folder.is_dir() else ():
        m = _TEMPORARY.match(p.name)
        if m and p.is_file():
            by_backup.setdefault(m.group(1), []).append(p)
    removed: list[str] = []
    for name, files in sorted(by_backup.items()):
        if _running(folder / f".{name}.db.partial") or _running(folder / f"{name}.db"):
            continue
        for p in files:
            p.unlink(missing_ok=True)
            removed.append(p.name)
    if removed:
        log.warning("removed %d temporary file(s) of killed backups from %s: %s", len(removed), folder, removed)
    return removed


def _running(path: Path) -> bool:
    """Whether a running backup holds ``path`` (its lock cannot be taken)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _remove_temporary(partial: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{partial}{suffix}").unlink(missing_ok=True)


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
    ``CorruptRecord`` when the backup fails a check (first, whatever ``force`` says),
    ``StoreInUse`` while anything has ``db`` open (by any name), ``FileExistsError`` when it
    exists and not ``force`` (then the old store is moved aside to
    ``<db>.before-restore-<time>``), ``MemoryKeyError`` when the keys do not open it,
    ``MemoryStoreError`` when there is no room to stage it; the target is untouched in every one
    of these cases. ``db`` is resolved to its real path: a symlink keeps pointing at the store."""
    _sqlite_only(db)
    started = time.perf_counter()
    source, db = Path(source), Path(os.path.realpath(db))
    manifest, digest = check_backup(source)
    if not db.parent.exists():
        private_folder(db.parent)
    staging = db.parent / f".{db.name}.restoring"
    with StoreLock.acquire(db, exclusive=True):
        holders = file_holders(db) if db.exists() else []
        if holders:
            raise StoreInUse(
                f"the memory store {db} is in use by {describe_pids(holders)} (it has the database file open); stop it first"
            )
        replaced = db.exists()
        if replaced and not force:
            raise FileExistsError(f"the memory store {db} exists; pass --force to replace it (it is not in use)")
        _remove(staging)
        try:
            try:
                with (
                    open(source, "rb") as fin,
                    os.fdopen(os.open(staging, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600), "wb") as fout,
                ):
                    shutil.copyfileobj(fin, fout, 1 << 20)
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
                    source,
                )
                _fsync(staging)
            except (OSError, sqlite3.DatabaseError) as exc:
                if isinstance(exc, OSError) or _no_space(staging, exc):
                    raise MemoryStoreError(
                        f"cannot stage the restore of {source} beside {db}: {exc}; the store is untouched"
                    ) from None
                raise CorruptRecord(f"{source} is not a sound memory store: {exc}") from None
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


def check_backup(source: Path) -> tuple[dict[str, Any] | None, str]:
    """The checks a backup passes before a restore touches anything: a SQLite file (not empty,
    its header sound), as long as its header says, holding a memory store, and matching its
    manifest (``memory-<time>.json`` beside it, when there is one) in SHA-256, size and counts.
    Returns (the manifest or None, the file's SHA-256); ``CorruptRecord`` naming the file
    otherwise."""
    if not source.is_file():
        raise FileNotFoundError(f"no backup at {source}")
    size = source.stat().st_size
    refuse = f"refusing to restore {source}"
    if size == 0:
        raise CorruptRecord(f"{refuse}: it is empty (what a killed backup leaves), not a backup")
    with open(source, "rb") as f:
        header = f.read(100)
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise CorruptRecord(f"{refuse}: it is not a SQLite database, so not a memory backup")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if page_size < 512 or page_size & (page_size - 1):
        raise CorruptRecord(f"{refuse}: its SQLite header is damaged (page size {page_size})")
    if header[24:28] == header[92:96] and pages and size < pages * page_size:
        raise CorruptRecord(f"{refuse}: it is truncated ({size} bytes; its header says {pages * page_size})")
    if size % page_size:
        raise CorruptRecord(f"{refuse}: it is truncated ({size} bytes is not a whole number of {page_size}-byte pages)")
    manifest_path = source.with_suffix(".json")
    manifest: dict[str, Any] | None = None
    if manifest_path.is_file():
        try:
            loaded = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise CorruptRecord(f"{refuse}: its manifest {manifest_path.name} cannot be read ({exc})") from None
        if not isinstance(loaded, dict):
            raise CorruptRecord(f"{refuse}: its manifest {manifest_path.name} is not a backup manifest")
        manifest = loaded
    digest = _sha256(source)
    if manifest is not None:
        if manifest.get("sha256") != digest:
            raise CorruptRecord(f"{source} does not match its manifest (SHA-256 differs): refusing to restore it")
        if manifest.get("bytes") not in (None, size):
            raise CorruptRecord(f"{source} does not match its manifest ({size} bytes, it says {manifest.get('bytes')})")
    from urllib.parse import quote

    try:
        conn = sqlite3.connect(f"file:{quote(str(source))}?mode=ro&immutable=1", uri=True)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not {"meta", "events", "decisions"} <= tables:
                raise CorruptRecord(f"{refuse}: it is a SQLite database but not a memory store (no events/meta tables)")
            if conn.execute("SELECT count(*) FROM meta WHERE k = 'format'").fetchone()[0] != 1:
                raise CorruptRecord(f"{refuse}: it is not a memory store (no format in its meta table)")
            facts = _facts(conn)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise CorruptRecord(f"{refuse}: it is not a sound SQLite database ({exc})") from None
    if manifest is not None:
        for k in ("last_event_id", "events", "decisions", "outcomes"):
            if manifest.get(k) != facts[k]:
                raise CorruptRecord(
                    f"{source} holds {k} = {facts[k]}, its manifest says {manifest.get(k)}: refusing to restore it"
                )
    return manifest, digest


def _verify(
    staging: Path,
    key: bytes | None,
    previous_keys: Sequence[bytes],
    manifest: dict[str, Any] | None,
    command: str,
    detail: dict[str, Any],
    source: Path,
) -> dict[str, Any]:
    """Open the staged copy with the keys and check it; record the restore in its audit trail.
    Returns the facts RestoreInfo reports."""
    from mem_memory.engine import MemoryEngine

    store = MemoryStore.open(staging, key, previous_keys=previous_keys, exclusive=True, command=command)
    try:
        check = store.integrity_check()
        if check != "ok":
            raise CorruptRecord(f"{source} fails SQLite's integrity check: {check}")
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
            "outcomes": counts["outcomes"] + counts["shadow_outcomes"],  # as the manifest counts them (_facts)
            "key_id": store._codec.store_key_id,
        }
        if manifest is not None:
            for k in ("last_event_id", "events", "decisions", "outcomes"):
                if manifest.get(k) != facts[k]:
                    raise CorruptRecord(f"{source} holds {k} = {facts[k]}, its manifest says {manifest.get(k)}")
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
    try:
        with os.fdopen(os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600), "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
