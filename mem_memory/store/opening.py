"""Opening a store (SQLite file or PostgreSQL URL): its lock, its revision (migrations), its
``meta`` row and key checks, the audit row of an open; read-only on a full disk and writable
again once there is space; closing."""

from __future__ import annotations

import logging
import os
import sqlite3
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import psycopg

from mem_memory import audit, keys, migrations
from mem_memory.backend import (
    PgConnection,
    has_table,
    is_postgres,
    postgres_url,
    redact,
)
from mem_memory.crypto import Codec
from mem_memory.errors import (
    MemoryKeyError,
    MemoryStoreError,
    StoreClosed,
    StoreInUse,
    StoreNeedsUpgrade,
    StoreTooNew,
    UnencryptedStoreKeyError,
)
from mem_memory.files import private_dir
from mem_memory.lock import StoreLock, file_holders
from mem_memory.lock import describe as describe_pids
from mem_memory.store.connect import (
    PROBE_BYTES,
    WRITER_PRAGMAS,
    _connect,
    _create_private,
    _full,
    _no_space,
    _tighten,
    free_bytes,
    read_only_connect,
)
from mem_memory.store.writes import StoreWrites

log = logging.getLogger(__name__)


#: ``meta`` rows holding bytes (the others are text; PostgreSQL returns every ``v`` as bytes).
_BINARY_META = frozenset({"key_check", "rekey_check"})


class StoreOpening(StoreWrites):
    """Open and close."""

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        key: bytes | None = None,
        *,
        previous_keys: Sequence[bytes] = (),
        exclusive: bool = False,
        rotate: bool = False,
        command: str | None = None,
        max_bytes: int | None = None,
        read_only_when_full: bool = False,
        upgrade: bool = False,
    ) -> Self:
        """Open (creating when missing) the store at ``path``.

        ``key`` (32 bytes, see ``key_from_env``) turns on encryption for a new store and must be
        the same key for an existing encrypted one; ``previous_keys`` (``previous_keys_from_env``)
        read records of an unfinished rotation (``mem_memory.keys``). Raises ``MissingMemoryKey``,
        ``WrongMemoryKey`` or ``UnencryptedStoreKeyError`` (all ``MemoryKeyError``) otherwise.
        ``max_bytes`` caps the store's size (``set_max_bytes``).
        Holds the store's lock shared, or alone with ``exclusive`` (``StoreInUse`` when it cannot);
        ``rotate`` starts a rotation to ``key`` (``mem_memory.rekey``). The first open per
        process, key and ``command`` (default: this process's command words) is an audit row.
        ``read_only_when_full``: an existing SQLite store whose disk is full opens read-only
        instead of failing (``writable`` False, writes raise ``StoreFull``, no audit row until
        it can write); ``probe_write`` makes it writable again once there is space.
        An older store is migrated to this code's revision (``mem_memory.migrations``; offline
        steps only with ``upgrade``, else ``StoreNeedsUpgrade``); a newer one raises ``StoreTooNew``.
        """
        if is_postgres(path):
            return cls._open_postgres(
                postgres_url(path), key, previous_keys, exclusive, rotate, command or audit.current_command(), upgrade
            )
        p = Path(path)
        private_dir(p.parent)
        codec = Codec(key, previous_keys)
        lock = StoreLock.acquire(p, exclusive)
        command = command or audit.current_command()
        try:
            if exclusive and (holders := file_holders(p)):  # opened under a name that resolves elsewhere
                raise StoreInUse(
                    f"the memory store {p} is in use by {describe_pids(holders)} (it has the database file open); stop it first"
                )
            _create_private(p)
            try:
                conn = _connect(p)
                try:
                    store = cls(p, conn, codec, lock)
                    store._command = command
                    store._init_meta(command, rotate, upgrade)
                except BaseException:
                    conn.close()
                    raise
            except (sqlite3.Error, MemoryStoreError) as exc:
                if isinstance(exc, (StoreTooNew, StoreNeedsUpgrade)) or not (
                    read_only_when_full and not rotate and not exclusive and _no_space(p, exc)
                ):
                    raise
                store = cls._open_read_only(p, codec, lock, command, exc)
        except BaseException:
            lock.release()
            raise
        _tighten(p)
        if max_bytes is not None:
            store.set_max_bytes(max_bytes)
        return store

    @classmethod
    def _open_read_only(cls, p: Path, codec: Codec, lock: StoreLock, command: str, cause: BaseException) -> Self:
        """The store on a full disk, read-only: the keys are checked against ``meta`` as a
        normal open does, nothing is written (no audit row: it is written once the store can
        write). Raises ``cause`` again when there is no store to read."""
        conn = read_only_connect(p)
        try:
            if not all(has_table(conn, t) for t in ("meta", "events", "decisions")):
                raise cause
            revision = migrations.revision_of(conn)
            migrations.pending(revision, str(p))  # a newer store: refused
            store = cls(p, conn, codec, lock)
            store._unchained = revision is not None and revision < migrations.CHAINED
            store._command = command
            meta = {
                k: v.decode() if isinstance(v, bytes) and k not in _BINARY_META else v
                for k, v in conn.execute("SELECT k, v FROM meta").fetchall()
            }
            if meta.get("encrypted") == "1":
                keys.settle(conn, meta, codec, store.location, False, command, read_only=True)
            elif codec.encrypted:
                raise UnencryptedStoreKeyError(
                    f"the memory store {store.location} was created without encryption; unset MEM_MEMORY_KEY or use a new store"
                )
            store._store_id = str(meta.get("store_id", ""))
        except BaseException:
            conn.close()
            raise
        free = free_bytes(p.parent)
        store.read_only_reason = (
            f"the memory store {p} is full (no space left on its disk: {free if free is not None else '?'} bytes free, "
            f"{cause}): open read-only, writes are refused until space returns"
        )
        log.error("%s", store.read_only_reason)
        return store

    def _reopen_writable(self) -> None:
        """Swap the read-only connection of a store opened on a full disk for a normal one
        (``StoreFull`` while that still fails for lack of space)."""
        with self._lock:
            if self.writable:
                return
            old = self._c()
            try:
                conn = _connect(self.path)
            except sqlite3.Error as exc:
                if _no_space(self.path, exc):
                    raise _full(self.location, exc) from None
                raise
            self._conn = conn
            try:
                self._init_meta(self._command, False)
            except BaseException as exc:
                self._conn = old
                conn.close()
                if _no_space(self.path, exc):
                    raise _full(self.location, exc) from None
                raise
            old.close()
            self.read_only_reason = ""
            self._unchained = False  # migrated by _init_meta
            log.warning("the memory store %s has space again: open for writing", self.location)
        if self.max_pages is not None:
            self.apply_max_pages(self.max_pages)

    @classmethod
    def _open_postgres(
        cls,
        url: str,
        key: bytes | None,
        previous_keys: Sequence[bytes],
        exclusive: bool,
        rotate: bool,
        command: str,
        upgrade: bool = False,
    ) -> Self:
        """``open`` on PostgreSQL: one connection; the session advisory lock ``OPEN_LOCK`` stands
        for the SQLite store's ``<db>.lock`` (shared while open, alone for a rekey)."""
        location = redact(url)
        conn = PgConnection.connect(url, command)
        try:
            if not conn.try_open_lock(exclusive):
                who = conn.holders()
                if exclusive:
                    raise StoreInUse(f"the memory store {location} is in use by {who}; stop it first")
                raise StoreInUse(
                    f"the memory store {location} is being rekeyed or restored by {who}; wait for it to finish"
                )
            store = cls(Path(location), conn, Codec(key, previous_keys), None, location)
            store._init_meta(command, rotate, upgrade)
        except BaseException:
            conn.close()
            raise
        return store

    @classmethod
    def attach_prepared_writer(cls, path: str | os.PathLike[str]) -> Self:
        """A connection to an existing store that only writes decisions prepared (encoded and
        encrypted) by a store opened with the key: the writer process of
        ``mem_memory.writer``. It holds no key; its reads would not decode."""
        if is_postgres(path):
            raise MemoryStoreError("the writer process is SQLite-only (on PostgreSQL the store commits in-process)")
        p = Path(path)
        if not p.exists():
            raise StoreClosed(f"the memory store {p} does not exist")
        lock = StoreLock.acquire(p)
        conn = _connect(p)
        try:
            if conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'decisions'").fetchone()[0] != 1:
                raise StoreClosed(f"{p} is not a memory store (no decisions table)")
            for pragma in WRITER_PRAGMAS:
                conn.execute(pragma)
        except BaseException:
            conn.close()
            lock.release()
            raise
        return cls(p, conn, Codec(None), lock)

    def _init_meta(self, command: str, rotate: bool, upgrade: bool = False) -> None:
        conn = self._c()
        codec = self._codec
        migrations.migrate(conn, codec, self.location, upgrade)  # an older store: to this code's revision
        ident = str(self.path.resolve()) if self.dialect.files else self.location
        announce = audit.first_open(ident, codec.key_id, command)
        conn.execute("BEGIN IMMEDIATE")
        try:
            if migrations.revision_of(conn) is None:  # a new store (older ones were migrated above)
                self.dialect.create_schema(conn)
            meta = {
                k: v.decode() if isinstance(v, bytes) and k not in _BINARY_META else v
                for k, v in conn.execute("SELECT k, v FROM meta").fetchall()
            }
            if "format" not in meta:
                conn.execute("INSERT INTO meta VALUES ('format', ?)", (str(migrations.head()),))
                conn.execute("INSERT INTO meta VALUES ('encrypted', ?)", ("1" if codec.encrypted else "0",))
                if codec.encrypted:
                    conn.execute("INSERT INTO meta VALUES ('key_check', ?)", (codec.key_check(),))
                    conn.execute("INSERT INTO meta VALUES ('key_id', ?)", (codec.key_id,))
            elif meta.get("encrypted") == "1":
                keys.settle(conn, meta, codec, self.location, rotate, command)
            elif codec.encrypted:
                raise UnencryptedStoreKeyError(
                    f"the memory store {self.location} was created without encryption; unset MEM_MEMORY_KEY or use a new store"
                )
            if announce:
                audit.record(
                    conn,
                    audit.OPEN,
                    codec.key_id,
                    command,
                    {"store_key_id": codec.store_key_id} if codec.encrypted else {},
                )
            if "store_id" not in meta:  # a new store (older ones got theirs from a migration)
                meta["store_id"] = str(uuid.uuid4())
                conn.execute("INSERT INTO meta VALUES ('store_id', ?)", (meta["store_id"],))
            self._store_id = str(meta["store_id"])
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:  # SQLITE_FULL may have rolled it back already
                conn.execute("ROLLBACK")
            if announce:
                audit.forget_open(ident, codec.key_id, command)
            if isinstance(exc, MemoryKeyError):
                self._refused(command, exc)
            raise

    def _refused(self, command: str, exc: MemoryKeyError) -> None:
        """An ``open.refused`` audit row for a key that did not fit (the error's class, the
        offered key ids); best effort: a store that cannot take the row still refuses."""
        try:
            audit.record_now(
                self._c(),
                audit.OPEN_REFUSED,
                self._codec.key_id,
                command,
                {"error": exc.__class__.__name__, "key_ids": list(self._codec.key_ids)},
            )
        except (sqlite3.Error, psycopg.Error):
            log.warning("could not record the refused open of %s in its audit trail", self.location)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._held is not None:
                self._held.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MemoryStore(location={self.location!r}, encrypted={self.encrypted}, open={self._conn is not None})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("MemoryStore holds a connection and key material; open it again in the other process")

    def probe_write(self) -> None:
        """Write and delete a few pages in one committed transaction: ``StoreFull`` while the
        store cannot grow (its disk is full or its cap reached). Stores nothing. A store opened
        read-only on a full disk is opened for writing first."""
        if not self.writable:
            self._reopen_writable()
        with self.transaction():
            conn = self._c()
            conn.execute("INSERT INTO probe(x) VALUES (?)", (bytes(PROBE_BYTES),))
            conn.execute("DELETE FROM probe")
