"""The store's SQLite file: created 0600, connections in WAL mode with ``synchronous=FULL``, a
read-only connection that works on a full disk, and telling a full disk from other errors."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

from mem_memory.backend import is_full as _is_full
from mem_memory.errors import (
    MemoryStoreError,
    StoreFull,
)

BUSY_TIMEOUT_MS = 30_000

#: ``PRAGMA max_page_count`` without a cap (SQLite clamps it to its compile-time maximum).
NO_PAGE_CAP = 4294967294
#: The writer process's connection (``attach_prepared_writer``). A batch of 1,000 decisions
#: dirties ~700 pages: SQLite's default 2 MiB cache spilled them into the WAL mid-transaction
#: (decisions INSERT 7 -> 4.5 ms with 32 MiB), and its default checkpoint at 1,000 WAL pages
#: ran inside every other COMMIT (17-20 ms against 6-9 without). The writer's checkpoint thread
#: runs right after a big commit instead (``mem_memory.writer``); the commit's own checkpoint is
#: left for a WAL that thread could not keep short (8,192 pages: 32 MiB).
WRITER_PRAGMAS = ("PRAGMA cache_size = -32768", "PRAGMA wal_autocheckpoint = 8192")
#: Bytes the write probe needs (a few pages beyond what a full store has).
PROBE_BYTES = 16384


def is_full(exc: BaseException) -> bool:
    """Whether ``exc`` is "database or disk is full" (SQLite's SQLITE_FULL, PostgreSQL's disk_full)."""
    return _is_full(exc)


def _full(path: Path | str, exc: BaseException) -> StoreFull:
    return StoreFull(
        f"the memory store {path} is full (no space left on its disk, or its size cap is reached): nothing was stored"
    )


def _create_private(path: Path) -> None:
    """Create the database file 0600 (O_EXCL: a concurrent creator simply wins)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def _tighten(path: Path) -> None:
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            st = p.stat()
        except FileNotFoundError:
            continue
        if stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.getuid():
            os.chmod(p, 0o600)


#: Below this many free bytes on its disk, a store that cannot be opened for writing is full.
FULL_BELOW_BYTES = 1 << 20


def free_bytes(path: Path) -> int | None:
    """Free bytes on the disk that holds ``path`` (for an unprivileged writer), None if unknown."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _no_space(p: Path, exc: BaseException) -> bool:
    """Whether opening ``p`` for writing failed for lack of space: SQLITE_FULL, or an I/O error
    (SQLite cannot size its shared-memory file) on a disk with almost nothing free."""
    if is_full(exc):
        return True
    if not isinstance(exc, sqlite3.OperationalError) or "disk I/O error" not in str(exc):
        return False
    free = free_bytes(p.parent)
    return free is not None and free < FULL_BELOW_BYTES


def read_only_connect(p: Path) -> sqlite3.Connection:
    """A read-only connection to the store file ``p`` that works on a full disk too. Normally
    SQLite's read-only mode (it still coordinates with writers through ``-shm``); when that
    cannot be set up because ``-shm`` cannot grow (no space), the file is read as immutable,
    which is exact only while no write-ahead log holds committed pages, so a non-empty ``-wal``
    without a usable ``-shm`` is refused (``MemoryStoreError``)."""
    from urllib.parse import quote

    uri = f"file:{quote(str(p))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        if not _no_space(p, exc):
            raise
        wal = Path(f"{p}-wal")
        if wal.exists() and wal.stat().st_size:
            raise MemoryStoreError(
                f"the memory store {p} cannot be read on its full disk: its write-ahead log holds pages "
                "and SQLite cannot set up its shared memory; free some space"
            ) from None
    conn = sqlite3.connect(f"{uri}&immutable=1", uri=True, isolation_level=None, check_same_thread=False)
    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return conn


def _connect(p: Path) -> sqlite3.Connection:
    """A connection in WAL mode with ``synchronous=FULL`` (every commit fsynced) and the busy
    timeout that serialises writers across processes."""
    conn = sqlite3.connect(p, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"could not switch {p} to WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous=FULL")
    except BaseException:
        conn.close()
        raise
    return conn
