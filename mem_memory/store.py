"""The durable memory: one SQLite file in WAL mode, an append-only event log plus two small
lookup tables kept in the same transactions.

Layout (declared once for both engines in ``mem_memory.schema``; docs/memory.md):

- ``events(event_id INTEGER PRIMARY KEY AUTOINCREMENT, kind, subject, payload)`` — the audit
  trail. Every change is one appended row; nothing is updated or deleted (a key rotation,
  ``mem_memory.rekey``, alone re-encrypts payloads in place with the same plaintext). ``payload`` is the
  record as JSON, AES-GCM encrypted when the store has a key. ``subject`` is the decision id
  (random UUID) for decisions and outcomes, and a keyed HMAC tag of the strategy name or the
  parameter version otherwise (the text itself without a key).
- ``decisions(decision_id PRIMARY KEY, symbol_tag, event_id, outcome_event_id)`` — finds a
  decision, its symbol's recent decisions, and the closed trades; ``outcome_event_id`` set once
  makes "one outcome per decision" atomic across processes.
- ``heads(kind, subject, event_id)`` — the latest event per strategy name.
- ``requests(kind, tag, event_id, reply, created)`` — callers' request ids (a keyed tag when
  encrypted) with the event their call wrote and ``reply``: for a decision the tag of the
  request's fingerprint, for an outcome or a push its (encrypted) answer with that tag; kept
  for ``REQUEST_ID_WINDOW_S`` (``mem_memory.requests``), then forgotten.
- ``probe`` — empty; the write probe of a full store writes and deletes a row in it.
- ``meta`` — the store's revision ('format', ``mem_memory.migrations``), whether the store is encrypted, the key-check record, the key
  ids (``mem_memory.keys``) and the store's id (a random UUID created once: which store a server
  writes, ``store_id``).
- ``audit`` — the audit trail of credential use (``mem_memory.audit``), in clear.

Every open holds ``<db>.lock`` shared (``mem_memory.lock``); a rekey or restore needs it alone.

The same store runs on PostgreSQL when ``open`` is given a ``postgresql://`` URL: the SQL that
differs (placeholders, the write lock, event ids, a lost connection) is in
``mem_memory.backend``; docs/memory.md ("PostgreSQL") says what is SQLite-only.

Writes run in ``BEGIN IMMEDIATE`` transactions (one writer at a time across processes, waiting up
to ``busy_timeout``), so event ids are committed in increasing order: a reader that has seen id N
has seen every event <= N. ``synchronous=FULL`` makes every acknowledged commit durable before
it returns. ``group_transaction`` + ``savepoint`` + ``append_prepared_many`` are the pieces the
group committer (``mem_memory.group``) writes several callers' records with, in one commit. The
file is created 0600 (in a directory created 0700, ``mem_memory.files``) and SQLite creates
``-wal``/``-shm`` with the database's mode; ``open`` tightens any of the three that are looser.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
import time as _time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import psycopg

from mem_memory import audit, keys, migrations
from mem_memory.backend import (
    INTEGRITY_ERRORS,
    POSTGRESQL,
    SQLITE,
    Conn,
    PgConnection,
    has_table,
    is_postgres,
    postgres_url,
    redact,
)
from mem_memory.backend import is_full as _is_full
from mem_memory.crypto import Codec
from mem_memory.dialect import dialect_of
from mem_memory.errors import (
    CorruptRecord,
    DuplicateDecision,
    DuplicateOutcome,
    MemoryKeyError,
    MemoryStoreError,
    StoreClosed,
    StoreFull,
    StoreInUse,
    StoreNeedsUpgrade,
    StoreTooNew,
    UnencryptedStoreKeyError,
    UnknownDecision,
)
from mem_memory.files import private_dir
from mem_memory.lock import StoreLock, file_holders
from mem_memory.lock import describe as describe_pids
from mem_memory.requests import REPLY, REQUEST_ID_WINDOW_S, Conflict, Replay
from mem_memory.types import (
    DECISION,
    OUTCOME,
    PARAMETER_ADJUSTMENT,
    SHADOW_OUTCOME,
    STRATEGY_UPSERT,
    Decision,
    Event,
    Outcome,
    ParameterAdjustment,
    Parameters,
    StrategySpec,
)

log = logging.getLogger(__name__)


class PreparedDecision(NamedTuple):
    """A decision encoded for storage: id, symbol lookup tag, (encrypted) payload, the lookup
    tag of the caller's request id (None without one) and the tag of the request's fingerprint."""

    decision_id: str
    symbol_tag: str
    payload: bytes
    request_tag: str | None = None
    fingerprint: str | None = None


class StoredRequest(NamedTuple):
    """A request id found in the window: the event its call wrote, its stored answer (None for
    a decision: the decision is the answer) and the tag of its fingerprint (None when stored
    before fingerprints existed)."""

    event_id: int
    answer: dict[str, Any] | None
    fingerprint: str | None


def _build_decision(p: dict[str, Any], codec: Codec) -> tuple[Decision, str]:
    d = Decision.from_dict(p)
    return d, d.decision_id


def _build_outcome(p: dict[str, Any], codec: Codec) -> tuple[Outcome, str]:
    o = Outcome.from_dict(p)
    return o, o.decision_id


def _build_parameters(
    p: dict[str, Any], codec: Codec
) -> tuple[tuple[Parameters, list[ParameterAdjustment], dict[str, Any]], str]:
    params = Parameters.from_dict(p["parameters"])
    adjustments = [ParameterAdjustment.from_dict(a) for a in p["adjustments"]]
    return (params, adjustments, dict(p.get("state", {}))), codec.tag(params.version)


def _build_strategy(p: dict[str, Any], codec: Codec) -> tuple[StrategySpec, str]:
    spec = StrategySpec.from_dict(p)
    return spec, codec.tag(spec.name)


#: Per event kind: payload -> (record, the subject it must be filed under).
_BUILD: dict[str, Any] = {
    DECISION: _build_decision,
    OUTCOME: _build_outcome,
    SHADOW_OUTCOME: _build_outcome,
    PARAMETER_ADJUSTMENT: _build_parameters,
    STRATEGY_UPSERT: _build_strategy,
}

#: ``meta`` rows holding bytes (the others are text; PostgreSQL returns every ``v`` as bytes).
_BINARY_META = frozenset({"key_check", "rekey_check"})
BUSY_TIMEOUT_MS = 30_000

#: ``PRAGMA max_page_count`` without a cap (SQLite clamps it to its compile-time maximum).
NO_PAGE_CAP = 4294967294
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


class MemoryStore:
    """The shared, durable memory store. Thread-safe (one connection behind a lock); open one
    per process (do not share across fork)."""

    def __init__(
        self, path: Path, conn: Conn, codec: Codec, lock: StoreLock | None = None, location: str | None = None
    ) -> None:
        self.path = path
        #: The store in messages: its file, or its PostgreSQL URL without the password.
        self.location = location or str(path)
        #: ``sqlite`` or ``postgresql`` (``mem_memory.backend``).
        self.backend = POSTGRESQL if isinstance(conn, PgConnection) else SQLITE
        #: What differs between the engines (``mem_memory.dialect``).
        self.dialect = dialect_of(conn)
        self._conn: Conn | None = conn
        self._codec = codec
        self._held = lock
        self._lock = threading.RLock()
        self._span: list[int] | None = None  # event ids written by the open group transaction
        #: Corrupt records met by reads so far: event id -> kind (``CorruptRecord``).
        self.corrupt: dict[int, str] = {}
        #: The size cap in pages (None: no cap); the writer process gets it with every batch.
        self.max_pages: int | None = None
        self._pruned = float("-inf")  # when request ids past the window were last forgotten
        self._store_id = ""
        #: Why the store is open read-only ("" when it can write): its disk was full at open.
        #: Writes raise ``StoreFull`` meanwhile; ``probe_write`` reopens it for writing.
        self.read_only_reason = ""
        self._command = ""

    @property
    def writable(self) -> bool:
        """False while the store is open read-only (its disk was full when it was opened)."""
        return not self.read_only_reason

    # ------------------------------------------------------------------ open / close
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
    ) -> MemoryStore:
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
    def _open_read_only(cls, p: Path, codec: Codec, lock: StoreLock, command: str, cause: BaseException) -> MemoryStore:
        """The store on a full disk, read-only: the keys are checked against ``meta`` as a
        normal open does, nothing is written (no audit row: it is written once the store can
        write). Raises ``cause`` again when there is no store to read."""
        conn = read_only_connect(p)
        try:
            if not all(has_table(conn, t) for t in ("meta", "events", "decisions")):
                raise cause
            migrations.pending(migrations.revision_of(conn), str(p))  # a newer store: refused
            store = cls(p, conn, codec, lock)
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
    ) -> MemoryStore:
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
    def attach_prepared_writer(cls, path: str | os.PathLike[str]) -> MemoryStore:
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
        except BaseException:
            conn.close()
            lock.release()
            raise
        return cls(p, conn, Codec(None), lock)

    def _init_meta(self, command: str, rotate: bool, upgrade: bool = False) -> None:
        conn = self._c()
        codec = self._codec
        migrations.migrate(conn, codec, self.location, upgrade)  # an older store: to this code's revision
        ident = self.location if self.backend == POSTGRESQL else str(self.path.resolve())
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

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MemoryStore(location={self.location!r}, encrypted={self.encrypted}, open={self._conn is not None})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("MemoryStore holds a connection and key material; open it again in the other process")

    @property
    def store_id(self) -> str:
        """The store's identity: created once with the store, the same from every process and
        after every reopen (a copy of the file keeps it too). Empty for a prepared writer."""
        return self._store_id

    @property
    def encrypted(self) -> bool:
        return self._codec.encrypted

    def _c(self) -> Conn:
        if self._conn is None:
            raise StoreClosed(f"the memory store {self.location} is closed")
        return self._conn

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def transaction(self) -> Iterator[MemoryStore]:
        """One write transaction (``BEGIN IMMEDIATE``): reads inside see the latest committed
        state and no other process writes until it ends. Nested use joins the outer one."""
        with self._lock:
            conn = self._c()
            if conn.in_transaction:
                yield self
                return
            self._check_writable()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:  # SQLITE_FULL may have rolled it back already
                    conn.execute("ROLLBACK")
                if is_full(exc):
                    raise _full(self.location, exc) from exc
                raise

    @contextmanager
    def snapshot(self) -> Iterator[MemoryStore]:
        """A consistent read snapshot (``BEGIN DEFERRED``) for several queries."""
        with self._lock:
            conn = self._c()
            if conn.in_transaction:
                yield self
                return
            conn.execute("BEGIN")
            try:
                yield self
            finally:
                conn.execute("COMMIT")

    def _insert(self, kind: str, subject: str, record: dict[str, Any]) -> int:
        event_id = self.dialect.insert_events(self._c(), [(kind, subject, self._codec.encode(kind, record))])
        self._note(event_id, event_id)
        return event_id

    @contextmanager
    def group_transaction(self) -> Iterator[list[int]]:
        """The write transaction of one group commit (``mem_memory.group``). Yields
        ``[first, last]``: the lowest and highest event id written in it so far (0, 0 while none),
        final once the block ends. The events of the group are exactly ``first .. last`` (ids are
        consecutive: one writer at a time, and a rolled-back savepoint gives its ids back), and
        the log held nothing above ``first - 1`` before it. Commits when the block ends (one fsync
        for everything written in it), rolls back on an exception. Not nestable."""
        with self._lock:
            conn = self._c()
            if conn.in_transaction:
                raise RuntimeError("group_transaction cannot run inside another transaction")
            self._check_writable()
            conn.execute("BEGIN IMMEDIATE")
            self._span = span = [0, 0]
            try:
                yield span
                if _time.monotonic() - self._pruned >= 1.0:
                    self.forget_requests(_time.time() - REQUEST_ID_WINDOW_S)
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if is_full(exc):
                    raise _full(self.location, exc) from exc
                raise
            finally:
                self._span = None

    def _check_writable(self) -> None:
        if self.read_only_reason:
            raise StoreFull(
                f"the memory store {self.location} is full (no space left on its disk, or its size cap is reached): "
                "nothing was stored"
            )

    def _note(self, first: int, last: int) -> None:
        span = self._span
        if span is not None:
            if not span[0]:
                span[0] = first
            span[1] = last

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested unit inside the current write transaction: an exception rolls back only what
        was written inside it (one writer's records in a group commit)."""
        with self._lock:
            conn = self._c()
            saved = list(self._span) if self._span is not None else None
            conn.execute("SAVEPOINT unit")
            try:
                yield
            except BaseException as exc:
                if conn.in_transaction:  # else SQLITE_FULL rolled back the whole transaction already
                    conn.execute("ROLLBACK TO unit")
                    conn.execute("RELEASE unit")
                    if saved is not None and self._span is not None:
                        self._span[:] = saved
                if is_full(exc):
                    raise _full(self.location, exc) from exc
                raise
            conn.execute("RELEASE unit")

    @property
    def in_transaction(self) -> bool:
        with self._lock:
            return self._c().in_transaction

    # ------------------------------------------------------------------ space
    def set_max_bytes(self, max_bytes: int | None) -> None:
        """Cap the store's size at ``max_bytes`` (rounded down to whole pages; never below its
        current size), or lift the cap (None). A write beyond it fails with ``StoreFull``, as on
        a full disk. Applies to this connection and to the writer process's next batch."""
        with self._lock:
            conn = self._c()
            if not self.dialect.size_cap:
                if max_bytes is not None:
                    raise MemoryStoreError("a size cap (max_bytes) is SQLite-only; PostgreSQL has its own quotas")
                return
            if max_bytes is None:
                pages = None
                conn.execute(f"PRAGMA max_page_count = {NO_PAGE_CAP}")
            else:
                page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
                pages = int(
                    conn.execute(f"PRAGMA max_page_count = {max(1, int(max_bytes) // page_size)}").fetchone()[0]
                )
            self.max_pages = pages

    def apply_max_pages(self, pages: int | None) -> None:
        """The writer process's side of ``set_max_bytes``: the cap as the parent has it."""
        if pages != self.max_pages and self.dialect.size_cap:
            with self._lock:
                self._c().execute(f"PRAGMA max_page_count = {NO_PAGE_CAP if pages is None else int(pages)}")
                self.max_pages = pages

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

    # ------------------------------------------------------------------ appends
    def prepare_decision(self, decision: Decision, request_id: str = "", fingerprint: str = "") -> PreparedDecision:
        """Encode (and encrypt) a decision for ``append_prepared_checked`` — CPU work that needs no lock,
        so concurrent writers do it before they queue for the commit. ``request_id``: the
        caller's id of the request (``mem_memory.requests``), stored with the tag of the
        request's ``fingerprint``."""
        tag = self._codec.tag
        return PreparedDecision(
            decision.decision_id,
            tag(decision.symbol),
            self._codec.encode(DECISION, decision.to_dict()),
            tag(request_id) if request_id else None,
            tag(fingerprint) if request_id and fingerprint else None,
        )

    def append_prepared_checked(self, prepared: Sequence[PreparedDecision]) -> list[int | Replay | Conflict]:
        """Write prepared decisions inside the current transaction, checking their request ids
        there (the one check): per decision its new event id, or ``Replay`` (the id is recorded
        with the same fingerprint, or twice in ``prepared``: the first one's event) or
        ``Conflict`` (another fingerprint), which write nothing. One SELECT for the ids, then
        ``append_prepared_many`` for the rest."""
        conn = self._c()
        if not conn.in_transaction:
            raise RuntimeError("append_prepared_checked needs an open write transaction")
        tags = list(dict.fromkeys(p.request_tag for p in prepared if p.request_tag is not None))
        known: dict[str, tuple[int, str | None, bytes]] = {}
        if tags:
            with self._lock:
                rows = conn.execute(
                    "SELECT r.tag, r.event_id, r.reply, e.payload FROM requests r JOIN events e ON e.event_id = r.event_id"
                    f" WHERE r.kind = ? AND r.tag IN ({','.join('?' * len(tags))})",
                    [DECISION, *tags],
                ).fetchall()
            known = {str(t): (int(e), None if fp is None else bytes(fp).decode(), bytes(pl)) for t, e, fp, pl in rows}
        results: list[int | Replay | Conflict | None] = [None] * len(prepared)
        writing: dict[str, int] = {}  # request tag -> index of the decision of this batch that records it
        write: list[int] = []
        for i, p in enumerate(prepared):
            t = p.request_tag
            if t is not None and t in known:
                event_id, fp, payload = known[t]
                same = fp is None or fp == p.fingerprint
                results[i] = Replay(event_id, payload, fp is not None) if same else Conflict(event_id)
            elif t is not None and t in writing:
                results[i] = -1 - writing[t]  # resolved below, once the first one has its event id
            else:
                if t is not None:
                    writing[t] = i
                write.append(i)
        for i, new_id in zip(write, self.append_prepared_many([prepared[i] for i in write])):
            results[i] = new_id
        for i, r in enumerate(results):
            if isinstance(r, int) and r < 0:
                first = prepared[-1 - r]
                first_id = results[-1 - r]
                assert isinstance(first_id, int)
                same = first.fingerprint == prepared[i].fingerprint
                results[i] = Replay(first_id, first.payload) if same else Conflict(first_id)
        return [r for r in results if r is not None]

    def append_prepared_many(self, prepared: Sequence[PreparedDecision]) -> list[int]:
        """Write several prepared decisions with two statements (one multi-row INSERT per table),
        inside the current transaction; returns their event ids. No duplicate check of its own:
        a repeated decision id fails the whole statement with ``sqlite3.IntegrityError`` (the
        caller rolls back), and so does a repeated request id. Few statements matter: each one lets other Python threads take the
        GIL, and the committing thread then waits to get it back."""
        conn = self._c()
        if not conn.in_transaction:
            raise RuntimeError("append_prepared_many needs an open write transaction")
        n = len(prepared)
        if not n:
            return []
        with self._lock:
            last = self.dialect.insert_events(conn, [(DECISION, p.decision_id, p.payload) for p in prepared])
            first = last - n + 1  # one statement: consecutive ids in VALUES order
            dec_args: list[Any] = []
            for i, p in enumerate(prepared):
                dec_args += (p.decision_id, p.symbol_tag, first + i)
            conn.execute(
                "INSERT INTO decisions(decision_id, symbol_tag, event_id) VALUES " + ",".join(["(?,?,?)"] * n), dec_args
            )
            tagged = [(p, first + i) for i, p in enumerate(prepared) if p.request_tag is not None]
            if tagged:
                now, req_args = _time.time(), list[Any]()
                for p, event_id in tagged:
                    fp = None if p.fingerprint is None else p.fingerprint.encode()
                    req_args += (DECISION, p.request_tag, event_id, fp, now)
                conn.execute(
                    "INSERT INTO requests(kind, tag, event_id, reply, created) VALUES "
                    + ",".join(["(?,?,?,?,?)"] * len(tagged)),
                    req_args,
                )
            self._note(first, last)
            return list(range(first, last + 1))

    def append_decision(self, decision: Decision) -> int:
        """Record a decision; returns its event id once durable. ``DuplicateDecision`` if the id
        exists."""
        with self.transaction():
            if self._c().execute("SELECT 1 FROM decisions WHERE decision_id = ?", (decision.decision_id,)).fetchone():
                raise DuplicateDecision(f"decision {decision.decision_id} is already recorded")
            return self.append_prepared_many([self.prepare_decision(decision)])[0]

    def append_outcome(self, outcome: Outcome) -> int:
        """Record the outcome of a decision (a shadow outcome as kind ``shadow_outcome``).
        ``UnknownDecision`` when the id is not stored, ``DuplicateOutcome`` when it already has
        one (checked and set atomically)."""
        with self.transaction():
            conn = self._c()
            row = conn.execute(
                "SELECT outcome_event_id FROM decisions WHERE decision_id = ?", (outcome.decision_id,)
            ).fetchone()
            if row is None:
                raise UnknownDecision(f"no decision with id {outcome.decision_id!r} in memory")
            if row[0] is not None:
                raise DuplicateOutcome(f"decision {outcome.decision_id} already has an outcome (event {row[0]})")
            event_id = self._insert(
                SHADOW_OUTCOME if outcome.shadow else OUTCOME, outcome.decision_id, outcome.to_dict()
            )
            conn.execute(
                "UPDATE decisions SET outcome_event_id = ? WHERE decision_id = ?", (event_id, outcome.decision_id)
            )
            return event_id

    def append_parameters(
        self, parameters: Parameters, adjustments: Sequence[ParameterAdjustment], state: dict[str, Any] | None = None
    ) -> int:
        """Record a new current parameter set, the adjustments that led to it, and the rules'
        small state carried with it (e.g. the performance monitor's last firing)."""
        record = {
            "parameters": parameters.to_dict(),
            "adjustments": [a.to_dict() for a in adjustments],
            "state": dict(state or {}),
        }
        with self.transaction():
            return self._insert(PARAMETER_ADJUSTMENT, self._codec.tag(parameters.version), record)

    def append_strategy(self, spec: StrategySpec) -> int:
        """Record a created, updated or deprecated learned strategy (the newest record wins)."""
        with self.transaction():
            subject = self._codec.tag(spec.name)
            event_id = self._insert(STRATEGY_UPSERT, subject, spec.to_dict())
            self._c().execute(
                "INSERT INTO heads(kind, subject, event_id) VALUES (?, ?, ?) "
                "ON CONFLICT(kind, subject) DO UPDATE SET event_id = excluded.event_id",
                (STRATEGY_UPSERT, subject, event_id),
            )
            return event_id

    def bulk_append(self, decisions: Iterable[Decision], outcomes: Iterable[Outcome] = ()) -> int:
        """Fast path for loading history (benchmarks, imports): every decision, then every
        outcome, in ONE transaction with executemany. Outcomes must name decisions of this batch
        or already stored ones without an outcome. Returns the number of events written."""
        codec = self._codec
        with self.transaction():
            conn = self._c()
            next_id = self.dialect.next_event_id(conn, self.last_event_id())
            ev_rows: list[tuple[int, str, str, bytes]] = []
            dec_rows: list[tuple[str, str, int]] = []
            for d in decisions:
                ev_rows.append((next_id, DECISION, d.decision_id, codec.encode(DECISION, d.to_dict())))
                dec_rows.append((d.decision_id, codec.tag(d.symbol), next_id))
                next_id += 1
            conn.executemany("INSERT INTO events(event_id, kind, subject, payload) VALUES (?, ?, ?, ?)", ev_rows)
            try:
                conn.executemany("INSERT INTO decisions(decision_id, symbol_tag, event_id) VALUES (?, ?, ?)", dec_rows)
            except INTEGRITY_ERRORS as exc:
                raise DuplicateDecision(f"bulk load repeats a stored decision id ({exc})") from None
            n = len(ev_rows)
            ev_rows, out_rows = [], []
            for o in outcomes:
                kind = SHADOW_OUTCOME if o.shadow else OUTCOME
                ev_rows.append((next_id, kind, o.decision_id, codec.encode(kind, o.to_dict())))
                out_rows.append((next_id, o.decision_id))
                next_id += 1
            conn.executemany("INSERT INTO events(event_id, kind, subject, payload) VALUES (?, ?, ?, ?)", ev_rows)
            cur = conn.executemany(
                "UPDATE decisions SET outcome_event_id = ? WHERE decision_id = ? AND outcome_event_id IS NULL", out_rows
            )
            if cur.rowcount != len(out_rows):
                raise UnknownDecision("bulk load: an outcome names an unknown or already closed decision")
            return n + len(ev_rows)

    # ------------------------------------------------------------------ request ids
    def find_request(self, kind: str, request_id: str) -> StoredRequest | None:
        """The call of ``kind`` recorded with ``request_id`` within the window; None when unknown."""
        with self._lock:
            row = (
                self._c()
                .execute(
                    "SELECT event_id, reply FROM requests WHERE kind = ? AND tag = ?",
                    (kind, self._codec.tag(request_id)),
                )
                .fetchone()
            )
        if row is None:
            return None
        event_id, reply = int(row[0]), row[1]
        if reply is None:
            return StoredRequest(event_id, None, None)
        if kind == DECISION:
            return StoredRequest(event_id, None, bytes(reply).decode())
        stored = self._payload(event_id, REPLY, reply)
        if "fingerprint" in stored and "answer" in stored:
            return StoredRequest(event_id, stored["answer"], stored["fingerprint"])
        return StoredRequest(event_id, stored, None)  # recorded before fingerprints existed

    def record_request(
        self, kind: str, request_id: str, event_id: int, reply: dict[str, Any] | None = None, fingerprint: str = ""
    ) -> None:
        """Remember ``request_id`` with the tag of the request's ``fingerprint`` and its answer
        ``reply`` (inside the write transaction of its call's records)."""
        tag = self._codec.tag(fingerprint) if fingerprint else None
        record = None if reply is None else self._codec.encode(REPLY, {"answer": reply, "fingerprint": tag})
        with self._lock:
            self._c().execute(
                "INSERT INTO requests(kind, tag, event_id, reply, created) VALUES (?, ?, ?, ?, ?)",
                (kind, self._codec.tag(request_id), int(event_id), record, _time.time()),
            )

    def fingerprint_tag(self, fingerprint: str) -> str:
        """The stored form of a request fingerprint (a keyed tag when encrypted)."""
        return self._codec.tag(fingerprint)

    def decision_from(self, event_id: int, payload: bytes) -> Decision:
        """The decision of a stored event's payload (``Replay.payload``), checked as reads are."""
        try:
            record = self._payload(event_id, DECISION, payload)
            decision: Decision = self._record(event_id, DECISION, str(record.get("decision_id")), payload, record)
            return decision
        except CorruptRecord as exc:
            self._report(exc)
            raise

    def forget_requests(self, older_than: float, limit: int = 1000) -> int:
        """Forget up to ``limit`` request ids recorded before ``older_than`` (epoch seconds);
        returns how many. Write transactions call it with the window's start, at most once a
        second, so ids are remembered for at least ``REQUEST_ID_WINDOW_S``."""
        with self.transaction():
            cur = self._c().execute(
                "DELETE FROM requests WHERE (kind, tag) IN (SELECT kind, tag FROM requests WHERE created < ? LIMIT ?)",
                (float(older_than), int(limit)),
            )
            self._pruned = _time.monotonic()
            return int(cur.rowcount)

    def decision_at(self, event_id: int) -> Decision:
        """The decision of event ``event_id`` (``CorruptRecord`` when it is corrupt)."""
        with self._lock:
            row = (
                self._c()
                .execute(
                    "SELECT subject, payload FROM events WHERE event_id = ? AND kind = ?", (int(event_id), DECISION)
                )
                .fetchone()
            )
        if row is None:
            raise UnknownDecision(f"no decision at event {event_id}")
        try:
            decision: Decision = self._record(event_id, DECISION, row[0], row[1])
            return decision
        except CorruptRecord as exc:
            self._report(exc)
            raise

    # ------------------------------------------------------------------ checked records
    def _payload(self, event_id: int, kind: str, blob: bytes) -> dict[str, Any]:
        try:
            return self._codec.decode(kind, blob)
        except CorruptRecord as exc:
            raise CorruptRecord(f"stored {kind} event {event_id} is corrupt ({exc})", int(event_id), kind) from None

    def _record(
        self, event_id: int, kind: str, subject: str, blob: bytes, payload: dict[str, Any] | None = None
    ) -> Any:
        """The record of one stored event, checked: its payload decodes (and authenticates), the
        record builds from it, and it names the subject it is filed under (a decision or outcome
        its decision id, a parameter set the tag of its content hash, a strategy the tag of its
        name). ``CorruptRecord`` carrying the event id otherwise."""
        if payload is None:
            payload = self._payload(event_id, kind, blob)
        build = _BUILD.get(kind)
        if build is None:
            raise CorruptRecord(f"stored event {event_id} is corrupt (unknown kind {kind[:40]!r})", int(event_id), kind)
        try:
            record, filed_as = build(payload, self._codec)
        except (MemoryStoreError, TypeError, KeyError, ValueError, AttributeError, IndexError) as exc:
            raise CorruptRecord(
                f"stored {kind} event {event_id} is corrupt (its record does not build: {type(exc).__name__})",
                int(event_id),
                kind,
            ) from None
        if filed_as != subject:
            raise CorruptRecord(
                f"stored {kind} event {event_id} is corrupt (its record is filed under another subject)",
                int(event_id),
                kind,
            )
        return record

    def _report(self, exc: CorruptRecord) -> None:
        """Remember and log a corrupt record once (the read that met it leaves it out)."""
        key = exc.event_id if exc.event_id is not None else -1
        if key not in self.corrupt:
            self.corrupt[key] = exc.kind or "?"
            log.error(
                "memory store %s: %s; left out (`mem memory verify` lists every corrupt record)", self.location, exc
            )

    def _pair(
        self, decision_id: str, d_id: int, d: bytes, o_id: int | None, o: bytes | None, o_kind: str | None = None
    ) -> tuple[Decision, Outcome | None]:
        decision = self._record(d_id, DECISION, decision_id, d)
        outcome = self._record(o_id, o_kind or OUTCOME, decision_id, o) if o_id is not None and o is not None else None
        return decision, outcome

    def _pairs(self, rows: Iterable[tuple[Any, ...]]) -> list[tuple[Decision, Outcome | None]]:
        """Decision/outcome pairs of ``rows``; a pair with a corrupt record is left out (reported)."""
        out = []
        for row in rows:
            try:
                out.append(self._pair(*row))
            except CorruptRecord as exc:
                self._report(exc)
        return out

    def _newest_good(self, sql: str, args: tuple[Any, ...], kind: str) -> tuple[int, Any] | None:
        """The newest event of ``sql`` (rows ``event_id, subject, payload`` newest first) whose
        record is sound, with its id; corrupt newer ones are reported and passed over."""
        with self._lock:
            cur = self._c().execute(sql, args)
            try:
                while rows := cur.fetchmany(4):
                    for event_id, subject, blob in rows:
                        try:
                            return int(event_id), self._record(event_id, kind, subject, blob)
                        except CorruptRecord as exc:
                            self._report(exc)
            finally:
                cur.close()
        return None

    # ------------------------------------------------------------------ reads
    def last_event_id(self) -> int:
        """The newest event id (0 for an empty store); cheap (the rowid b-tree's last page)."""
        with self._lock:
            row = self._c().execute("SELECT max(event_id) FROM events").fetchone()
            return int(row[0] or 0)

    def scan_since(self, event_id: int, limit: int = 1000) -> tuple[list[Event], int]:
        """Events with id > ``event_id``, oldest first, from at most ``limit`` rows, and the id of
        the last row read (the cursor to continue from: it moves past a corrupt event, which is
        left out and reported)."""
        with self._lock:
            rows = (
                self._c()
                .execute(
                    "SELECT event_id, kind, subject, payload FROM events WHERE event_id > ? ORDER BY event_id LIMIT ?",
                    (int(event_id), int(limit)),
                )
                .fetchall()
            )
        out = []
        for i, k, s, p in rows:
            try:
                payload = self._payload(i, k, p)
                self._record(i, k, s, p, payload)
            except CorruptRecord as exc:
                self._report(exc)
                continue
            out.append(Event(int(i), k, s, payload))
        return out, int(rows[-1][0]) if rows else int(event_id)

    def events_since(self, event_id: int, limit: int = 1000) -> list[Event]:
        """Events with id > ``event_id``, oldest first, at most ``limit`` (a cursor: pass the last
        id you got to continue). A corrupt event is left out and reported (``scan_since`` also
        gives the cursor past it)."""
        return self.scan_since(event_id, limit)[0]

    def decision_event_ids(self, decision_ids: Sequence[str]) -> dict[str, int]:
        """The event id of each of ``decision_ids`` that is stored (missing ones are absent)."""
        if not decision_ids:
            return {}
        with self._lock:
            rows = (
                self._c()
                .execute(
                    f"SELECT decision_id, event_id FROM decisions WHERE decision_id IN ({','.join('?' * len(decision_ids))})",
                    list(decision_ids),
                )
                .fetchall()
            )
        return {str(d): int(e) for d, e in rows}

    _PAIR_SQL = (
        "SELECT x.decision_id, d.event_id, d.payload, o.event_id, o.payload, o.kind FROM decisions x "
        "JOIN events d ON d.event_id = x.event_id "
        "LEFT JOIN events o ON o.event_id = x.outcome_event_id "
    )

    def get_decision(self, decision_id: str) -> tuple[Decision, Outcome | None]:
        """A decision and its outcome (None while open); ``UnknownDecision`` when absent,
        ``CorruptRecord`` when either record is corrupt."""
        with self._lock:
            row = self._c().execute(self._PAIR_SQL + "WHERE x.decision_id = ?", (decision_id,)).fetchone()
        if row is None:
            raise UnknownDecision(f"no decision with id {decision_id!r} in memory")
        try:
            return self._pair(*row)
        except CorruptRecord as exc:
            self._report(exc)
            raise

    def recent_decisions(self, symbol: str, n: int) -> list[tuple[Decision, Outcome | None]]:
        """The last ``n`` decisions of ``symbol``, newest first, with outcomes."""
        return self._recent_by_tag(self._codec.tag(symbol), n)

    def _recent_by_tag(self, tag: str, n: int) -> list[tuple[Decision, Outcome | None]]:
        with self._lock:
            rows = (
                self._c()
                .execute(self._PAIR_SQL + "WHERE x.symbol_tag = ? ORDER BY x.event_id DESC LIMIT ?", (tag, int(n)))
                .fetchall()
            )
        return self._pairs(rows)

    def recent_by_symbol(self, n: int) -> list[tuple[Decision, Outcome | None]]:
        """The last ``n`` decisions of every symbol (for building the in-process index)."""
        with self._lock:
            tags = [r[0] for r in self._c().execute("SELECT DISTINCT symbol_tag FROM decisions").fetchall()]
        out: list[tuple[Decision, Outcome | None]] = []
        for tag in tags:
            out.extend(reversed(self._recent_by_tag(tag, n)))
        return out

    def closed_trades(self, limit: int, offset: int = 0) -> list[tuple[Decision, Outcome]]:
        """The last ``limit`` closed trades (by close order), oldest first; ``offset`` skips the
        newest ones (for paging back). A trade with a corrupt record is left out."""
        with self._lock:
            rows = (
                self._c()
                .execute(
                    "SELECT x.decision_id, d.event_id, d.payload, o.event_id, o.payload, o.kind FROM decisions x "
                    "JOIN events d ON d.event_id = x.event_id JOIN events o ON o.event_id = x.outcome_event_id "
                    "WHERE x.outcome_event_id IS NOT NULL ORDER BY x.outcome_event_id DESC LIMIT ? OFFSET ?",
                    (int(limit), int(offset)),
                )
                .fetchall()
            )
        pairs = self._pairs(rows)
        pairs.reverse()
        return pairs  # type: ignore[return-value]

    def recent_wins(self, n: int) -> list[bool]:
        """Win flags (``pnl > 0``) of the last ``n`` closed trades, oldest first — what the
        performance monitor needs, from the outcome payloads alone (no decision decoded)."""
        with self._lock:
            rows = (
                self._c()
                .execute(
                    "SELECT event_id, payload FROM events WHERE kind = ? ORDER BY event_id DESC LIMIT ?",
                    (OUTCOME, int(n)),
                )
                .fetchall()
            )
        wins = []
        for event_id, blob in rows:
            try:
                pnl = self._payload(event_id, OUTCOME, blob)["pnl"]
                if isinstance(pnl, bool) or not isinstance(pnl, (int, float)):
                    raise TypeError(type(pnl).__name__)
            except (CorruptRecord, KeyError, TypeError) as exc:
                self._report(
                    exc
                    if isinstance(exc, CorruptRecord)
                    else CorruptRecord(
                        f"stored {OUTCOME} event {event_id} is corrupt (no numeric pnl)", int(event_id), OUTCOME
                    )
                )
                continue
            wins.append(float(pnl) > 0)
        wins.reverse()
        return wins

    def latest_parameters(self) -> tuple[int, Parameters, dict[str, Any]] | None:
        """The current stored parameter set with its event id and rule state (None before the
        first change). A corrupt newest set is reported and the newest sound one is current."""
        found = self._newest_good(
            "SELECT event_id, subject, payload FROM events WHERE kind = ? ORDER BY event_id DESC",
            (PARAMETER_ADJUSTMENT,),
            PARAMETER_ADJUSTMENT,
        )
        if found is None:
            return None
        event_id, (params, _adjustments, state) = found
        return event_id, params, state

    def parameters_by_version(self, version: str) -> Parameters | None:
        """A stored parameter set with this content hash, or None."""
        found = self._newest_good(
            "SELECT event_id, subject, payload FROM events WHERE kind = ? AND subject = ? ORDER BY event_id DESC",
            (PARAMETER_ADJUSTMENT, self._codec.tag(version)),
            PARAMETER_ADJUSTMENT,
        )
        return None if found is None else found[1][0]

    def parameter_history(self) -> list[tuple[int, Parameters, list[ParameterAdjustment]]]:
        """Every parameter change, oldest first (a corrupt one is left out)."""
        with self._lock:
            rows = (
                self._c()
                .execute(
                    "SELECT event_id, subject, payload FROM events WHERE kind = ? ORDER BY event_id",
                    (PARAMETER_ADJUSTMENT,),
                )
                .fetchall()
            )
        out = []
        for event_id, subject, blob in rows:
            try:
                params, adjustments, _state = self._record(event_id, PARAMETER_ADJUSTMENT, subject, blob)
            except CorruptRecord as exc:
                self._report(exc)
                continue
            out.append((int(event_id), params, adjustments))
        return out

    def parameter_changes_after(
        self, event_id: int, limit: int = 10_000
    ) -> list[tuple[int, list[ParameterAdjustment]]]:
        """The parameter changes recorded after event ``event_id`` (oldest first; the newest
        ``limit`` when there are more), each with its event id: what changed since a reader last looked."""
        with self._lock:
            rows = (
                self._c()
                .execute(
                    "SELECT event_id, payload FROM events WHERE kind = ? AND event_id > ? ORDER BY event_id DESC LIMIT ?",
                    (PARAMETER_ADJUSTMENT, int(event_id), int(limit)),
                )
                .fetchall()
            )
        out = [
            (
                int(e),
                [
                    ParameterAdjustment.from_dict(a)
                    for a in self._codec.decode(PARAMETER_ADJUSTMENT, blob)["adjustments"]
                ],
            )
            for e, blob in rows
        ]
        out.reverse()
        return out

    def strategies(self) -> dict[str, StrategySpec]:
        """The newest spec of every learned strategy (deprecated included), by name; a strategy
        whose newest record is corrupt is left out (reported)."""
        with self._lock:
            rows = (
                self._c()
                .execute(
                    "SELECT e.event_id, e.subject, e.payload FROM heads h JOIN events e ON e.event_id = h.event_id WHERE h.kind = ? ORDER BY h.event_id",
                    (STRATEGY_UPSERT,),
                )
                .fetchall()
            )
        specs = []
        for event_id, subject, blob in rows:
            try:
                specs.append(self._record(event_id, STRATEGY_UPSERT, subject, blob))
            except CorruptRecord as exc:
                self._report(exc)
        return {s.name: s for s in specs}

    def strategy(self, name: str) -> StrategySpec | None:
        """The newest spec of ``name`` (None when unknown); ``CorruptRecord`` when it is corrupt."""
        with self._lock:
            row = (
                self._c()
                .execute(
                    "SELECT e.event_id, e.subject, e.payload FROM heads h JOIN events e ON e.event_id = h.event_id WHERE h.kind = ? AND h.subject = ?",
                    (STRATEGY_UPSERT, self._codec.tag(name)),
                )
                .fetchone()
            )
        if row is None:
            return None
        try:
            spec: StrategySpec = self._record(row[0], STRATEGY_UPSERT, row[1], row[2])
            return spec
        except CorruptRecord as exc:
            self._report(exc)
            raise

    def check_events(self, after: int = 0, limit: int = 5000) -> tuple[int, list[CorruptRecord], int]:
        """Check the records of up to ``limit`` events after ``after`` without reporting them:
        (rows read, the corrupt ones, the cursor to continue from). ``mem memory verify``."""
        with self._lock:
            rows = (
                self._c()
                .execute(
                    "SELECT event_id, kind, subject, payload FROM events WHERE event_id > ? ORDER BY event_id LIMIT ?",
                    (int(after), int(limit)),
                )
                .fetchall()
            )
        bad = []
        for i, k, s, p in rows:
            try:
                self._record(i, k, s, p)
            except CorruptRecord as exc:
                bad.append(exc)
        return len(rows), bad, int(rows[-1][0]) if rows else int(after)

    def iter_events(self, kinds: Sequence[str] | None = None, page: int = 5000) -> Iterator[Event]:
        """Every sound event, oldest first, paged (exports)."""
        cursor = 0
        while True:
            batch, after = self.scan_since(cursor, limit=page)
            if after == cursor:
                return
            for e in batch:
                if kinds is None or e.kind in kinds:
                    yield e
            cursor = after

    def outcomes_after(self, event_id: int, cap: int = 1_000_000_000) -> int:
        """How many trade outcomes (shadow outcomes not counted) were recorded after event
        ``event_id`` (counting stops at ``cap``, so "at least 20 since" costs 20 index steps, not
        a scan)."""
        with self._lock:
            row = (
                self._c()
                .execute(
                    "SELECT count(*) FROM (SELECT 1 FROM events WHERE kind = ? AND event_id > ? LIMIT ?) AS t",
                    (OUTCOME, int(event_id), int(cap)),
                )
                .fetchone()
            )
        return int(row[0])

    def counts(self) -> dict[str, int]:
        """Decisions, trade outcomes, and shadow outcomes (of held signals)."""
        with self._lock:
            n, closed = self._c().execute("SELECT count(*), count(outcome_event_id) FROM decisions").fetchone()
            shadows = self._c().execute("SELECT count(*) FROM events WHERE kind = ?", (SHADOW_OUTCOME,)).fetchone()[0]
        return {"decisions": int(n), "outcomes": int(closed) - int(shadows), "shadow_outcomes": int(shadows)}

    # ------------------------------------------------------------------ maintenance
    def integrity_check(self) -> str:
        with self._lock:
            return self.dialect.integrity_check(self._c())

    def checkpoint(self) -> None:
        """Move the WAL into the main file and truncate it."""
        with self._lock:
            self.dialect.checkpoint(self._c())


__all__ = ["MemoryStore", "MemoryKeyError", "PreparedDecision"]
