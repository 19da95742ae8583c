"""Memory key rotation: every record re-encrypted and labelled with its key id, lookups re-tagged,
the key check following the new key; a SIGKILL in the middle leaves a store that opens with both
keys and loses nothing; refused while the store is in use; stores from before key ids rotate too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mem_memory import (
    MemoryEngine,
    MemoryKeyError,
    MemoryStore,
    MissingMemoryKey,
    StoreInUse,
    UnencryptedStoreKeyError,
    WrongMemoryKey,
    crypto,
    key_id,
)
from mem_memory.rekey import rekey
from tests.memory._history import CONFIG, SYMBOLS, events, key_ids_in, populate, views
from tests.memory.helpers import b64, raw_connect, request, sibling

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_worker.py")


def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mem_cli.main", "memory", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def _state(db: Path, key: bytes, previous: tuple[bytes, ...] = ()) -> tuple[list, dict]:
    store = MemoryStore.open(db, key, previous_keys=previous)
    try:
        assert store.integrity_check() == "ok"
        return events(store), views(MemoryEngine(store, CONFIG))
    finally:
        store.close()


def _meta(db: Path) -> dict[str, object]:
    conn = raw_connect(db)
    try:
        return {
            k: v.decode() if isinstance(v, bytes) and k in ("key_id", "rekey_to") else v
            for k, v in conn.execute("SELECT k, v FROM meta").fetchall()
        }
    finally:
        conn.close()


def test_rekey_reencrypts_every_record_and_the_key_check_follows(db: Path) -> None:
    old, new = os.urandom(32), os.urandom(32)
    populate(db, old, bulk=600)
    before_events, before_views = _state(db, old)
    assert key_ids_in(db) == {key_id(old): len(before_events)}
    report = rekey(db, new, [old], batch=64)
    assert (report.from_key_id, report.to_key_id) == (key_id(old), key_id(new))
    assert report.resealed == report.events == len(before_events) and report.already == 0
    assert report.retagged >= len(SYMBOLS) + 1  # three symbol tags, the strategy, the parameter versions
    assert key_ids_in(db) == {key_id(new): len(before_events)}
    assert _meta(db)["key_id"] == key_id(new) and "rekey_to" not in _meta(db)
    after_events, after_views = _state(db, new)  # the new key alone opens it
    assert after_events == before_events
    assert after_views == before_views  # symbol, strategy and parameter lookups work through the new tags
    with pytest.raises(WrongMemoryKey):
        MemoryStore.open(db, old)  # the key check follows the new key
    with pytest.raises(WrongMemoryKey):
        MemoryStore.open(db, old, previous_keys=[new])  # nor is a rotation back started by a plain open
    again = rekey(db, new, [old])
    assert again.from_key_id is None and again.resealed == 0  # nothing left to do
    store = MemoryStore.open(db, new)
    try:
        assert store.strategy("learned_buy_rsi14_low") is not None
        assert store.recent_decisions("S1", 5) and store.parameters_by_version(store.latest_parameters()[1].version)
    finally:
        store.close()


def test_sigkill_in_the_middle_of_a_rekey_leaves_a_store_both_keys_open(db: Path) -> None:
    old, new = os.urandom(32), os.urandom(32)
    populate(db, old, bulk=6000)
    before_events, before_views = _state(db, old)
    env = {"MEM_MEMORY_KEY": b64(new), "MEM_MEMORY_KEY_PREVIOUS": b64(old), "MEM_MEMORY_DB": str(db)}
    proc = _cli("rekey", "--batch", "10", env=env)
    assert proc.stderr is not None
    progress = [proc.stderr.readline() for _ in range(3)]
    proc.send_signal(signal.SIGKILL)  # a real process, killed between or inside its batch transactions
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL and all(line.startswith("rekey: ") for line in progress), progress
    labelled = key_ids_in(db)
    assert set(labelled) == {key_id(old), key_id(new)}, labelled  # killed in the middle: both keys hold records
    assert labelled[key_id(new)] >= 30 and labelled[key_id(old)] > 0
    assert sum(labelled.values()) == len(before_events)
    with pytest.raises(MissingMemoryKey, match="MEM_MEMORY_KEY_PREVIOUS"):
        MemoryStore.open(db, new)  # the new key alone: the old one is still needed
    with pytest.raises(MissingMemoryKey, match="unfinished rekey"):
        MemoryStore.open(db, old)  # the old key alone: records under the new one
    mid_events, mid_views = _state(db, new, (old,))
    assert mid_events == before_events and mid_views == before_views  # nothing lost, everything readable
    store = MemoryStore.open(db, new, previous_keys=[old])  # usable in between: new records go under the new key
    try:
        decided = MemoryEngine(store, CONFIG).enhance(request(symbol="S0"))
        row = store._c().execute("SELECT payload FROM events WHERE subject = ?", (decided.decision_id,)).fetchone()
        assert crypto.payload_key_id(row[0]) == key_id(new)
    finally:
        store.close()
    finish = _cli("rekey", "--batch", "500", env=env)
    out, err = finish.communicate(timeout=300)
    assert finish.returncode == 0, err
    assert '"already"' in out and key_ids_in(db) == {key_id(new): len(before_events) + 1}
    after_events, _ = _state(db, new)
    assert after_events[:-1] == before_events and after_events[-1][2]["decision_id"] == decided.decision_id
    store = MemoryStore.open(db, new)
    try:
        assert [d.decision_id for d, _ in store.recent_decisions("S0", 1)] == [decided.decision_id]
    finally:
        store.close()
    with pytest.raises(WrongMemoryKey):
        MemoryStore.open(db, old)


def test_rekey_is_refused_while_the_store_is_in_use(db: Path) -> None:
    old, new = os.urandom(32), os.urandom(32)
    populate(db, old, bulk=10)
    env = {"MEM_MEMORY_KEY": b64(old)}
    holder = subprocess.Popen(
        [sys.executable, str(WORKER), "write", str(db), "HOLD", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().startswith(
            "D "
        )  # an engine has it open and writes
        cli = _cli(
            "rekey", env={"MEM_MEMORY_KEY": b64(new), "MEM_MEMORY_KEY_PREVIOUS": b64(old), "MEM_MEMORY_DB": str(db)}
        )
        _, err = cli.communicate(timeout=60)
        assert cli.returncode == 1
        assert f"in use by pid {holder.pid}" in err and "Traceback" not in err
        with pytest.raises(StoreInUse):
            rekey(db, new, [old])
    finally:
        holder.kill()
        holder.communicate(timeout=30)
    assert key_ids_in(db) == {key_id(old): sum(key_ids_in(db).values())}  # nothing was touched
    assert "rekey_to" not in _meta(db)
    store = MemoryStore.open(db, old, exclusive=True)  # as a rekey holds it
    try:  # nothing else opens it meanwhile
        with pytest.raises(StoreInUse, match="being rekeyed or restored"):
            MemoryStore.open(db, old)
    finally:
        store.close()


def test_a_store_from_before_key_ids_rotates(db: Path) -> None:
    old, new = os.urandom(32), os.urandom(32)
    populate(db, old, bulk=200)
    before_events, before_views = _state(db, old)
    _make_legacy(db, old)
    assert key_ids_in(db) == {None: len(before_events)} and "key_id" not in _meta(db)
    assert _state(db, old) == (before_events, before_views)  # the old format still reads
    assert _meta(db)["key_id"] == key_id(old)
    rekey(db, new, [old], batch=50)
    assert key_ids_in(db) == {key_id(new): len(before_events)}
    assert _state(db, new) == (before_events, before_views)


def test_rekey_needs_an_encrypted_store_and_its_key(db: Path) -> None:
    populate(db, None, bulk=10)
    with pytest.raises(UnencryptedStoreKeyError):
        rekey(db, os.urandom(32), [])
    other = sibling(db, "other.db")
    old, new, wrong = os.urandom(32), os.urandom(32), os.urandom(32)
    populate(other, old, bulk=10)
    with pytest.raises(MemoryKeyError):
        rekey(other, new, [wrong])  # the store's key is not among those given
    assert "rekey_to" not in _meta(other)


def _make_legacy(db: Path, key: bytes) -> None:
    """Rewrite a store into the format before key ids: ``nonce || ciphertext`` payloads, no
    ``key_id`` in meta (what a store created by an earlier MEM holds)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    codec = crypto.Codec(key)
    aead = AESGCM(crypto._derive(key, b"payload"))
    conn = raw_connect(db)
    try:
        rows = conn.execute("SELECT event_id, kind, payload FROM events").fetchall()
        updates = []
        for event_id, kind, payload in rows:
            plain = codec._open(kind, payload)
            nonce = os.urandom(12)
            updates.append((nonce + aead.encrypt(nonce, plain, kind.encode()), event_id))
        conn.executemany("UPDATE events SET payload = ? WHERE event_id = ?", updates)
        conn.execute("DELETE FROM meta WHERE k = 'key_id'")
        conn.commit()
    finally:
        conn.close()
