"""The store file: permissions, encryption at rest, keys, integrity, audit trail."""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path

import pytest

from mem_memory import (
    MalformedMemoryKey,
    MemoryEngine,
    MemoryKeyError,
    MemoryStore,
    MemoryUnavailable,
    MissingMemoryKey,
    StoreClosed,
    StoreInUse,
    UnencryptedStoreKeyError,
    WrongMemoryKey,
    key_from_env,
)
from tests.memory.helpers import raw_connect, sibling, stored_bytes

from .helpers import b64, make_decision, outcome, request

REASONING_MARK = "zebra-quokka-7731"
PRICE = 12345.6789


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.sqlite_only
def test_files_are_created_0600_even_with_a_loose_umask(db: Path) -> None:
    old = os.umask(0o022)
    try:
        store = MemoryStore.open(db)
        MemoryEngine(store).enhance(request())
        files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
        assert all(p.exists() for p in files)
        assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
        store.close()
    finally:
        os.umask(old)


def _write_marked(store: MemoryStore) -> str:
    engine = MemoryEngine(store)
    d = engine.enhance(request(price=PRICE, strategy=REASONING_MARK))
    engine.record_outcome(outcome(d, 0.0123))
    return d.decision_id


def _needles(decision_id: str) -> list[bytes]:
    return [
        REASONING_MARK.encode(),
        repr(PRICE).encode(),
        b"12345.67",
        b"BTCUSDT",
        b"momentum",
        b"take_profit",
        b"rsi14",
    ]


def test_with_a_key_no_decision_text_or_number_is_in_the_file(db: Path, key: bytes, backend: str) -> None:
    store = MemoryStore.open(db, key=key)
    did = _write_marked(store)
    if backend == "sqlite":
        wal = Path(f"{db}-wal").read_bytes()
        assert wal  # the writes are in the WAL now ...
        for needle in _needles(did):
            assert needle not in wal, needle
    store.checkpoint()  # ... and in the main file after a checkpoint
    store.close()
    data = stored_bytes(db)  # PostgreSQL: every relation file of the database, after a CHECKPOINT
    for needle in _needles(did):
        assert needle not in data, needle
    again = MemoryStore.open(db, key=key)  # and it reads back
    d, o = again.get_decision(did)
    assert d.price == PRICE and d.strategy == REASONING_MARK and o is not None
    again.close()


def test_control_without_a_key_the_text_is_visible(db: Path) -> None:
    store = MemoryStore.open(db)
    _write_marked(store)
    store.checkpoint()
    store.close()
    assert REASONING_MARK.encode() in stored_bytes(db)  # so the encrypted test above is meaningful


def test_wrong_missing_and_unexpected_keys_are_clear_errors(db: Path, key: bytes) -> None:
    MemoryStore.open(db, key=key).close()
    with pytest.raises(WrongMemoryKey, match="not the key"):
        MemoryStore.open(db, key=os.urandom(32))
    with pytest.raises(MissingMemoryKey, match="encrypted; set MEM_MEMORY_KEY"):
        MemoryStore.open(db)
    plain = sibling(db, "plain.db")
    MemoryStore.open(plain).close()
    with pytest.raises(UnencryptedStoreKeyError):
        MemoryStore.open(plain, key=key)
    assert issubclass(WrongMemoryKey, MemoryKeyError)


def test_key_from_env(key: bytes) -> None:
    assert key_from_env({}) is None
    assert key_from_env({"MEM_MEMORY_KEY": "  "}) is None
    assert key_from_env({"MEM_MEMORY_KEY": b64(key)}) == key
    secret = b64(os.urandom(16))
    with pytest.raises(MalformedMemoryKey, match="16 bytes") as e:
        key_from_env({"MEM_MEMORY_KEY": secret})
    assert secret not in str(e.value)
    with pytest.raises(MalformedMemoryKey, match="base64"):
        key_from_env({"MEM_MEMORY_KEY": "not base64!!"})


def test_the_key_never_shows_in_repr_or_logs(db: Path, key: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    store = MemoryStore.open(db, key=key)
    engine = MemoryEngine(store)
    engine.enhance(request())
    texts = [repr(store), str(store), repr(engine), repr(store._codec), caplog.text]
    for t in texts:
        assert b64(key) not in t and key.hex() not in t
    assert "encrypted=True" in repr(store)
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(store)


def test_store_reopens_with_integrity_and_is_append_only(db: Path) -> None:
    store = MemoryStore.open(db)
    _write_marked(store)
    n = store.last_event_id()
    store.close()
    with pytest.raises(StoreClosed):
        store.last_event_id()
    again = MemoryStore.open(db)
    assert again.integrity_check() == "ok"
    assert again.last_event_id() == n
    assert [e.event_id for e in again.events_since(0)] == list(range(1, n + 1))
    again.close()


def test_a_tampered_payload_is_left_out_of_scans_and_fails_its_own_read(db: Path, key: bytes) -> None:
    from mem_memory import CorruptRecord

    store = MemoryStore.open(db, key=key)
    d = MemoryEngine(store).enhance(request())
    store.close()
    conn = raw_connect(db)
    blob = bytearray(conn.execute("SELECT payload FROM events WHERE event_id = 1").fetchone()[0])
    blob[-1] ^= 1
    conn.execute("UPDATE events SET payload = ? WHERE event_id = 1", (bytes(blob),))
    conn.commit()
    conn.close()
    again = MemoryStore.open(db, key=key)
    try:
        assert again.events_since(0) == [] and again.scan_since(0) == ([], 1)  # the cursor moves past it
        with pytest.raises(CorruptRecord) as err:
            again.get_decision(d.decision_id)
        assert err.value.event_id == 1 and err.value.kind == "decision"
        assert again.corrupt == {1: "decision"}
    finally:
        again.close()


@pytest.mark.postgresql_only
def test_a_lost_postgresql_connection_loses_nothing_acknowledged_and_the_store_reconnects(db: str) -> None:
    """The server ends the store's session (a restart, a failover, an administrator): the write
    in flight fails and is not stored, nothing acknowledged is lost, and the next call reconnects
    (with the store's open lock taken again)."""
    import psycopg

    store = MemoryStore.open(db)
    engine = MemoryEngine(store)
    first = engine.enhance(request())
    pid = store._c().raw.info.backend_pid  # type: ignore[union-attr]
    with psycopg.connect(db, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.2)
    second = engine.enhance(request())  # a new transaction: reconnects
    assert store._c().raw.info.backend_pid != pid  # type: ignore[union-attr]
    assert [e.payload["decision_id"] for e in store.events_since(0)] == [first.decision_id, second.decision_id]
    with pytest.raises(StoreInUse):
        MemoryStore.open(db, exclusive=True)  # the reconnected session holds the open lock again
    # a transaction whose connection is lost halfway commits nothing and says so
    with pytest.raises(MemoryUnavailable):
        with store.transaction():
            store.append_decision(make_decision(1, decision_id="lost-1"))
            with psycopg.connect(db, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (store._c().raw.info.backend_pid,))  # type: ignore[union-attr]
            time.sleep(0.2)
            store.append_decision(make_decision(2, decision_id="lost-2"))
    assert store.decision_event_ids(["lost-1", "lost-2"]) == {}
    assert store.last_event_id() == 2
    # a group commit whose connection is lost after one unit succeeded (as the group committer runs
    # units: each in a savepoint, a unit's error caught) must fail as a whole, not report that unit
    with pytest.raises(MemoryUnavailable):
        with store.group_transaction():
            with store.savepoint():
                store.append_decision(make_decision(3, decision_id="group-1"))
            with psycopg.connect(db, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (store._c().raw.info.backend_pid,))  # type: ignore[union-attr]
            time.sleep(0.2)
            try:
                with store.savepoint():
                    store.append_decision(make_decision(4, decision_id="group-2"))
            except Exception:  # noqa: BLE001  # as GroupCommitter._write: this unit's error only
                pass
    assert store.decision_event_ids(["group-1", "group-2"]) == {}
    assert engine.enhance(request()) and store.last_event_id() == 3  # and it carries on
    store.close()


@pytest.mark.postgresql_only
def test_a_role_that_may_only_read_and_write_uses_an_existing_postgresql_store(db: str, key: bytes) -> None:
    """Replicas can run with a role that has no CREATE right (docs/deploy.md): the tables are made
    once by an owner, then opening, deciding, learning and the audit trail need only DML rights."""
    import psycopg

    owner = MemoryStore.open(db, key=key)
    MemoryEngine(owner).enhance(request())
    owner.close()
    role = f"mem_rw_{os.getpid()}"
    with psycopg.connect(db, autocommit=True) as admin:
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
        admin.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}")
        assert not admin.execute("SELECT has_schema_privilege(%s, 'public', 'CREATE')", (role,)).fetchone()[0]
    url = db.replace("postgresql://postgres@", f"postgresql://{role}@")
    try:
        store = MemoryStore.open(url, key=key, command="replica")
        engine = MemoryEngine(store)
        d = engine.enhance(request())
        engine.record_outcome(outcome(d, 0.01))
        assert store.counts() == {"decisions": 2, "outcomes": 1, "shadow_outcomes": 0}
        store.close()
    finally:
        with psycopg.connect(db, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


@pytest.mark.postgresql_only
def test_backup_and_restore_of_a_postgresql_store_point_at_postgresql_tools(db: str, tmp_path: Path) -> None:
    from mem_memory import MemoryStoreError
    from mem_memory.backup import backup, restore

    with pytest.raises(MemoryStoreError, match="pg_dump"):
        backup(db, tmp_path / "backups")
    with pytest.raises(MemoryStoreError, match="SQLite-only"):
        restore(tmp_path / "memory-x.db", db, None)
