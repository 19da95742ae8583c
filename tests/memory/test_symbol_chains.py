"""A symbol's recent decisions come from its chain (``mem_memory.chains``): the same as filtering
every decision by symbol, newest first, whatever the interleaving of symbols (repeats within one
batch included) and however they were written (batches, one by one, bulk loads); after a
migration from the ``decisions_symbol`` index (revision 2) and after a key rotation too."""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from mem_memory import Decision, MemoryStore, migrations
from mem_memory.backend import INTEGRITY_ERRORS
from mem_memory.crypto import Codec
from mem_memory.lock import StoreLock
from mem_memory.rekey import rekey
from mem_memory.types import DECISION, SYMBOL_HEAD
from tests.memory.helpers import make_decision, outcome, raw_connect

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT")


def _write_randomly(store: MemoryStore, rng: random.Random, start: int, batches: int) -> int:
    """Batches of random symbols (a symbol often twice in one), some one by one, some bulk
    loaded; outcomes for some. Returns the next decision number."""
    i = start
    for _ in range(batches):
        size = rng.choice((1, 2, 5, 12))
        ds = [make_decision(i + k, symbol=rng.choice(SYMBOLS[: rng.randint(1, len(SYMBOLS))])) for k in range(size)]
        i += size
        how = rng.random()
        if how < 0.6:
            with store.group_transaction():
                store.append_prepared_checked(store.prepare_decisions(ds, [""] * size, [""] * size))
        elif how < 0.8:
            for d in ds:
                store.append_decision(d)
        else:
            store.bulk_append(ds, [outcome(ds[0], 0.01)])
        if rng.random() < 0.3:
            d = ds[-1]
            try:
                store.append_outcome(outcome(d, -0.01))
            except Exception:  # already closed by the bulk load
                pass
    return i


def _reference(store: MemoryStore) -> dict[str, list[str]]:
    """Every symbol's decision ids, newest first, from the whole log."""
    by_symbol: dict[str, list[str]] = {}
    for e in store.iter_events([DECISION]):
        d: Decision = e.record
        by_symbol.setdefault(d.symbol, []).insert(0, d.decision_id)
    return by_symbol


def _answers(store: MemoryStore, n: int) -> tuple[dict[str, list[tuple[str, str | None]]], list[str]]:
    recent = {
        s: [(d.decision_id, None if o is None else o.decision_id) for d, o in store.recent_decisions(s, n)]
        for s in SYMBOLS
    }
    return recent, [d.decision_id for d, _ in store.recent_by_symbol(n)]


def _check(store: MemoryStore) -> None:
    ref = _reference(store)
    closed = {d.decision_id for d, _ in store.closed_trades(10_000)}
    for n in (1, 3, 7, 1000):
        recent, everyone = _answers(store, n)
        for s in SYMBOLS:
            assert [d for d, _ in recent[s]] == ref.get(s, [])[:n], (s, n)
            assert [o is not None for _, o in recent[s]] == [d in closed for d, _ in recent[s]]
        want = [d for s in sorted(ref, key=store._codec.tag) for d in reversed(ref[s][:n])]
        assert everyone == want, n
    assert store.recent_decisions("NOPE", 5) == [] and store.recent_decisions(SYMBOLS[0], 0) == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_recent_decisions_are_every_decision_of_the_symbol_newest_first(db: Path | str, seed: int) -> None:
    rng = random.Random(seed)
    with MemoryStore.open(db) as store:
        _check(store)  # empty
        i = _write_randomly(store, rng, 0, 25)
        _check(store)
        _write_randomly(store, rng, i, 15)
        _check(store)


def test_a_repeated_decision_id_in_a_batch_leaves_no_head_behind(db: Path | str) -> None:
    with MemoryStore.open(db) as store:
        store.append_decision(make_decision(0, symbol="BTCUSDT"))
        again = [make_decision(1, symbol="BTCUSDT"), make_decision(0, symbol="BTCUSDT")]
        with pytest.raises(INTEGRITY_ERRORS):
            with store.group_transaction():
                store.append_prepared_many(store.prepare_decisions(again, ["", ""], ["", ""]))
        assert [d.decision_id for d, _ in store.recent_decisions("BTCUSDT", 5)] == ["d00000000"]
        store.append_decision(make_decision(2, symbol="BTCUSDT"))
        assert [d.decision_id for d, _ in store.recent_decisions("BTCUSDT", 5)] == ["d00000002", "d00000000"]


def _as_revision_2(db: Path | str) -> None:
    """Give a store the shape revision 2 wrote: no chain column, no symbol heads, the index."""
    conn = raw_connect(db)
    try:
        conn.execute("DELETE FROM heads WHERE kind = ?", (SYMBOL_HEAD,))
        conn.execute("ALTER TABLE decisions DROP COLUMN prev_event_id")
        conn.execute("CREATE INDEX decisions_symbol ON decisions(symbol_tag, event_id)")
        conn.execute("UPDATE meta SET v = ? WHERE k = 'format'", (b"2",))
        if isinstance(conn, sqlite3.Connection):
            conn.commit()
    finally:
        conn.close()


def _old_code_decision(db: Path | str, codec: Codec, d: Decision) -> None:
    """Append ``d`` as revision 2's code did: events and decisions rows, no chain, no head."""
    conn = raw_connect(db)
    try:
        payload = codec.encode(DECISION, d.to_dict())
        event_id = int(conn.execute("SELECT max(event_id) FROM events").fetchone()[0]) + 1
        conn.execute(
            "INSERT INTO events(event_id, kind, subject, payload) VALUES (?, ?, ?, ?)",
            (event_id, DECISION, d.decision_id, payload),
        )
        conn.execute(
            "INSERT INTO decisions(decision_id, symbol_tag, event_id) VALUES (?, ?, ?)",
            (d.decision_id, codec.tag(d.symbol), event_id),
        )
        if isinstance(conn, sqlite3.Connection):
            conn.commit()
    finally:
        conn.close()


def _format(conn: Any) -> str:
    v = conn.execute("SELECT v FROM meta WHERE k = 'format'").fetchone()[0]
    return v if isinstance(v, str) else bytes(v).decode()


def _indexes(db: Path | str) -> list[str]:
    conn = raw_connect(db)
    try:
        if isinstance(conn, sqlite3.Connection):
            return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")]
        return [r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'decisions'").fetchall()]
    finally:
        conn.close()


def test_a_migrated_store_answers_as_before(db: Path | str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    with MemoryStore.open(db) as store:
        _write_randomly(store, rng, 0, 30)
        before = _answers(store, 4), _answers(store, 1000)
    _as_revision_2(db)
    assert "decisions_symbol" in _indexes(db)
    monkeypatch.setattr(migrations, "CHAIN_CHUNK", 7)  # several chunks, whole symbols each
    with MemoryStore.open(db) as store:  # migrated at open
        assert (_answers(store, 4), _answers(store, 1000)) == before
        _check(store)
    assert "decisions_symbol" not in _indexes(db)
    conn = raw_connect(db)
    try:
        assert _format(conn) == "3"
        assert conn.execute("SELECT count(*) FROM meta WHERE k LIKE 'revision_3%'").fetchone()[0] == 0
    finally:
        conn.close()


def test_the_migration_resumes_and_chains_what_was_written_between_its_chunks(
    db: Path | str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(11)
    with MemoryStore.open(db) as store:
        i = _write_randomly(store, rng, 0, 20)
    _as_revision_2(db)
    monkeypatch.setattr(migrations, "CHAIN_CHUNK", 5)
    step = migrations.STEPS[-1]
    assert step.revision == 3
    real = step.run
    calls: list[bool] = []

    def stops_after_two_chunks(conn: object, codec: object) -> bool:
        if len(calls) == 2:
            raise KeyboardInterrupt("stopped inside the third chunk")
        calls.append(real(conn, codec))  # type: ignore[arg-type]
        return calls[-1]

    monkeypatch.setattr(
        migrations, "STEPS", [*migrations.STEPS[:-1], migrations.Step(3, step.what, True, stops_after_two_chunks)]
    )
    with pytest.raises(KeyboardInterrupt):
        MemoryStore.open(db)
    assert calls == [False, False]
    monkeypatch.setattr(migrations, "STEPS", [*migrations.STEPS[:-1], step])
    conn = raw_connect(db)
    try:
        assert _format(conn) == "2"
        assert conn.execute("SELECT count(*) FROM heads WHERE kind = ?", (SYMBOL_HEAD,)).fetchone()[0] >= 2
    finally:
        conn.close()
    for k, s in enumerate(SYMBOLS):  # a server of revision 2 writes meanwhile
        _old_code_decision(db, Codec(None), make_decision(i + k, symbol=s))
    with MemoryStore.open(db) as store:  # the rest of the migration at open
        _check(store)
    assert "decisions_symbol" not in _indexes(db)


def test_a_rekeyed_store_answers_as_before(db: Path | str) -> None:
    old, new = os.urandom(32), os.urandom(32)
    rng = random.Random(5)
    with MemoryStore.open(db, old) as store:
        _write_randomly(store, rng, 0, 30)
        before = _answers(store, 4), _answers(store, 1000)
        old_tags = {s: store._codec.tag(s) for s in SYMBOLS}
    rekey(db, new, [old], batch=17)
    with MemoryStore.open(db, new) as store:
        assert _answers(store, 4)[0] == before[0][0] and _answers(store, 1000)[0] == before[1][0]
        _check(store)
        heads = {r[0] for r in store._c().execute("SELECT subject FROM heads WHERE kind = ?", (SYMBOL_HEAD,))}
        assert heads == {store._codec.tag(s) for s in SYMBOLS if before[1][0][s]}
        assert not heads & set(old_tags.values())
        i = 10_000
        for s in SYMBOLS:  # and it keeps chaining under the new tags
            store.append_decision(make_decision(i, symbol=s))
            i += 1
        _check(store)


@pytest.mark.sqlite_only
def test_a_store_opened_read_only_before_its_migration_answers_from_its_index(db: Path) -> None:
    """A full disk at the first open after the upgrade: the store opens read-only at revision 2
    (not migrated) and answers from its ``decisions_symbol`` index; once writable, migrated."""
    with MemoryStore.open(db) as store:
        _write_randomly(store, random.Random(3), 0, 20)
        before = _answers(store, 4), _answers(store, 1000)
    _as_revision_2(db)
    store = MemoryStore._open_read_only(db, Codec(None), StoreLock.acquire(db, False), "test", OSError("full"))
    try:
        assert not store.writable
        assert (_answers(store, 4), _answers(store, 1000)) == before
        store._reopen_writable()  # space again: migrated
        assert store.writable and "decisions_symbol" not in _indexes(db)
        assert (_answers(store, 4), _answers(store, 1000)) == before
        _check(store)
    finally:
        store.close()
