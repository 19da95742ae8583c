"""Group commit: concurrent writers share one transaction and one fsync, each writer's error
stays its own, event ids stay consecutive, and the index applied from the records in hand equals
the index rebuilt from the log."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest

from mem_memory import (
    DuplicateDecision,
    DuplicateOutcome,
    MemoryEngine,
    MemoryStore,
    StoreClosed,
    UnknownDecision,
)
from mem_memory.group import GroupCommitter
from tests.memory.helpers import stored_bytes

from .helpers import T0, make_decision, outcome, request


def _held_open(gc: GroupCommitter) -> tuple[threading.Event, threading.Event, threading.Thread]:
    """A first writer that becomes leader and holds its transaction open until released, so that
    the writers submitted meanwhile queue up and form the next group."""
    inside, release = threading.Event(), threading.Event()

    def slow(store: MemoryStore) -> int:
        inside.set()
        release.wait(10)
        return store.append_decision(make_decision(0, decision_id="first"))

    t = threading.Thread(target=gc.submit, args=(slow,))
    t.start()
    assert inside.wait(10)
    return inside, release, t


def _queued(gc: GroupCommitter, n: int) -> None:
    for _ in range(500):
        with gc._cond:
            if len(gc._queue) >= n:
                return
        threading.Event().wait(0.01)
    raise AssertionError("writers did not queue")


def test_queued_writers_share_one_transaction_and_keep_their_own_errors(store: MemoryStore) -> None:
    store.append_decision(make_decision(1, decision_id="taken"))
    applied: list[tuple[int, int, int]] = []
    gc = GroupCommitter(store, lambda before, after, units: applied.append((before, after, len(units))))
    _, release, first = _held_open(gc)
    results: dict[str, object] = {}

    def write(name: str, decision_id: str) -> None:
        try:
            results[name] = gc.submit_decision(store.prepare_decision(make_decision(2, decision_id=decision_id)))
        except Exception as exc:  # noqa: BLE001 - the test looks at which writer got what
            results[name] = exc

    def unknown_outcome() -> None:
        try:
            results["outcome"] = gc.submit(
                lambda s: s.append_outcome(outcome(make_decision(3, decision_id="nope"), 0.01))
            )
        except Exception as exc:  # noqa: BLE001
            results["outcome"] = exc

    writers = [threading.Thread(target=write, args=(f"w{i}", f"new{i}")) for i in range(3)]
    writers.append(threading.Thread(target=write, args=("dup", "taken")))
    writers.append(threading.Thread(target=unknown_outcome))
    for w in writers:
        w.start()
    _queued(gc, len(writers))
    release.set()
    first.join(10)
    for w in writers:
        w.join(10)
    assert isinstance(results["dup"], DuplicateDecision)
    assert isinstance(results["outcome"], UnknownDecision)
    ids = sorted(results[f"w{i}"] for i in range(3))  # type: ignore[type-var]
    assert gc.stats.commits == 2 and gc.stats.largest == 5  # the first writer's group, then all five
    # every event id is there once: 1 (taken), 2 (first), 3..5 (the three new ones)
    events = store.events_since(0)
    assert [e.event_id for e in events] == [1, 2, 3, 4, 5]
    assert ids == [3, 4, 5]
    assert {e.subject for e in events} == {"taken", "first", "new0", "new1", "new2"}
    assert applied == [(1, 2, 1), (2, 5, 3)]
    assert store.integrity_check() == "ok"


def test_a_failed_commit_fails_every_writer_of_the_group(store: MemoryStore) -> None:
    gc = GroupCommitter(store)
    store.close()
    with pytest.raises(StoreClosed):
        gc.submit_decision(store.prepare_decision(make_decision(1)))


def test_concurrent_enhance_and_outcomes_keep_the_log_and_index_exact(db: Path) -> None:
    store = MemoryStore.open(db)
    engine = MemoryEngine(store)
    n_threads, per = 8, 40
    barrier = threading.Barrier(n_threads)
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            barrier.wait()
            for i in range(per):
                d = engine.enhance(request(symbol=f"S{k}", time=T0 + timedelta(minutes=i), price=100.0 + i))
                if i % 2 == 0:
                    engine.record_outcome(outcome(d, 0.01 if i % 4 else -0.01))
                    with pytest.raises(DuplicateOutcome):
                        engine.record_outcome(outcome(d, 0.02))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    ids = [e.event_id for e in store.events_since(0, limit=1_000_000)]
    assert ids == list(range(1, len(ids) + 1))
    assert store.counts() == {"decisions": n_threads * per, "outcomes": n_threads * per // 2, "shadow_outcomes": 0}
    # the index built from the records in hand equals the one rebuilt from the log
    fresh = MemoryEngine(MemoryStore.open(db))
    for k in range(n_threads):
        mine = [(v.decision, v.outcome) for v in engine.recent_decisions(f"S{k}", 100)]
        theirs = [(v.decision, v.outcome) for v in fresh.recent_decisions(f"S{k}", 100)]
        assert mine == theirs and len(mine) == per
    assert engine.parameters() == fresh.parameters()
    for action in ("BUY", "SELL"):
        a, b = engine._wm.rings[action], fresh._wm.rings[action]
        assert a.n == b.n and sorted(a.ids[: a.n]) == sorted(b.ids[: b.n])
    assert engine._last_seen == ids[-1]
    stats = engine.group_stats
    assert stats["units"] == n_threads * per * 3 // 2  # decisions + outcomes (failed units not counted)
    fresh.store.close()
    store.close()


def test_another_writer_in_between_is_caught_up_from_the_log(db: Path) -> None:
    mine = MemoryEngine(MemoryStore.open(db))
    other = MemoryStore.open(db)  # another process, as far as the engine can tell
    first = mine.enhance(request(symbol="A"))
    foreign = make_decision(1, symbol="A", decision_id="foreign", time=T0 + timedelta(minutes=1))
    other.append_decision(foreign)
    second = mine.enhance(request(symbol="A", time=T0 + timedelta(minutes=2)))
    assert [v.decision.decision_id for v in mine.recent_decisions("A", 10)] == [
        second.decision_id,
        "foreign",
        first.decision_id,
    ]
    assert mine._last_seen == other.last_event_id() == 3
    other.close()
    mine.store.close()


def test_market_context_is_stored_encrypted(db: Path, key: bytes) -> None:
    engine = MemoryEngine(MemoryStore.open(db, key=key))
    req = request()
    context = {"venue": "binance-zq81", "note": "FOMC-minutes-7731"}
    d = engine.enhance(type(req)(**{**{f: getattr(req, f) for f in req.__slots__}, "market_context": context}))
    assert dict(engine.store.get_decision(d.decision_id)[0].market_context) == context
    if not isinstance(db, str):
        wal = Path(f"{db}-wal").read_bytes()
        assert b"zq81" not in wal and b"FOMC-minutes-7731" not in wal
    engine.store.close()  # checkpoints into the main file
    data = stored_bytes(db)
    assert b"zq81" not in data and b"FOMC-minutes-7731" not in data


def test_recent_wins_are_the_closed_trades_win_flags(store: MemoryStore) -> None:
    decisions = [make_decision(i, decision_id=f"r{i}") for i in range(30)]
    store.bulk_append(decisions, [outcome(d, 0.01 if i % 3 else -0.01) for i, d in enumerate(decisions[:25])])
    assert store.recent_wins(20) == [o.win for _, o in store.closed_trades(20)]
    assert store.recent_wins(100) == [o.win for _, o in store.closed_trades(100)] and len(store.recent_wins(100)) == 25
