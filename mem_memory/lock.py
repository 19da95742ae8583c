"""Who holds the store: an advisory ``flock`` on ``<db>.lock`` beside the database's real path.

Every ``MemoryStore.open`` takes it shared for as long as the store is open (servers, engines,
Dagster sensors, the writer process); ``mem memory rekey`` and ``mem memory restore`` take it
exclusive, without waiting, and refuse when they cannot. The kernel drops the lock when its
holder exits, SIGKILL included, so a crashed server never leaves the store "in use". A lock
belongs to one open file description: two ``open`` calls in one process are two holders.

The lock file is named after the store's real path (symlinks and relative paths resolved), so
every name of one store shares one lock; a folder reached through a bind mount holds the same
lock file. ``file_holders`` sees the rest (a bind mount or hard link of the file alone, the
``sqlite3`` shell): every process with a lock on the database file itself, as SQLite keeps one
while a connection in WAL mode is open.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

from mem_memory.errors import StoreInUse


def lock_path(db: str | os.PathLike[str]) -> Path:
    """``<real path of db>.lock``: the same file whatever name (symlink, relative path) the
    store is opened by."""
    return Path(f"{os.path.realpath(db)}.lock")


class StoreLock:
    """One held lock; ``release`` (idempotent) or process exit drops it."""

    def __init__(self, fd: int, path: Path, exclusive: bool) -> None:
        self._fd: int | None = fd
        self.path = path
        self.exclusive = exclusive

    @classmethod
    def acquire(cls, db: str | os.PathLike[str], exclusive: bool = False) -> StoreLock:
        """Take the lock of the store at ``db`` without waiting; ``StoreInUse`` names the
        holders (their pids and command lines) when it is taken in a conflicting mode."""
        path = lock_path(db)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            who = describe(holders(path)) or "another process"
            if exclusive:
                raise StoreInUse(f"the memory store {db} is in use by {who}; stop it first") from None
            raise StoreInUse(
                f"the memory store {db} is being rekeyed or restored by {who}; wait for it to finish"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, path, exclusive)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor drops the flock

    def __enter__(self) -> StoreLock:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holders(path: Path, kinds: tuple[str, ...] = ("FLOCK",)) -> list[int]:
    """Pids holding a lock of ``kinds`` (FLOCK, POSIX, OFDLCK) on the file ``path`` (its device
    and inode, from /proc/locks; empty where that is unavailable)."""
    try:
        st = path.stat()
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids: list[int] = []
    for line in lines:
        parts = line.split()
        if "->" in parts:  # a waiter, not a holder
            continue
        if len(parts) >= 6 and parts[1] in kinds and parts[5] == ident:
            pid = int(parts[4])
            if pid > 0 and pid not in pids:  # an OFD lock has no owning pid (-1)
                pids.append(pid)
    return pids


def file_holders(db: str | os.PathLike[str]) -> list[int]:
    """Pids with any lock on the database file itself (SQLite's, or anyone's), whatever name
    they reached it by."""
    return holders(Path(db), ("FLOCK", "POSIX", "OFDLCK"))


_WORD = re.compile(r"[A-Za-z][\w.-]{0,39}")


def program_words(argv: list[str], limit: int = 3) -> str:
    """The program name and the sub-command words right after it (up to ``limit``): ``mem memory
    rekey``, ``dagster api grpc``, ``python -m mem_cli.main serve``. It stops at the first
    argument that is not a plain word (an option, a path, a value), so data never appears."""
    if not argv:
        return "?"
    words = [Path(argv[0]).name or "?"]
    rest = list(argv[1:])
    if len(rest) >= 2 and rest[0] == "-m" and _WORD.fullmatch(rest[1]):
        words += rest[:2]
        rest = rest[2:]
    for a in rest[:limit]:
        if not _WORD.fullmatch(a):
            break
        words.append(a)
    return " ".join(words)


def describe(pids: list[int]) -> str:
    """``pid 123 (mem serve), pid 456 (...)``."""
    out = []
    for pid in pids:
        try:
            argv = [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
            out.append(f"pid {pid} ({program_words(argv)})")
        except OSError:
            out.append(f"pid {pid}")
    return ", ".join(out)
