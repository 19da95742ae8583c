"""One flipped bit in one stored record, clear and encrypted: the memory still opens, reports the
record (event id, ``store.corrupt``, ``verify``), leaves it out of the working memory, refuses
only the calls that need it, and keeps learning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mem_memory import (
    DECISION,
    OUTCOME,
    PARAMETER_ADJUSTMENT,
    CorruptRecord,
    MemoryEngine,
    MemoryStore,
)
from mem_memory.verify import verify

from .helpers import flip_stored_bit, outcome, request


def _history(db: Path, key: bytes | None) -> dict[str, object]:
    """Six decisions on two symbols, three closed (each close adjusts the parameters); the event
    ids of an open decision, an outcome and the newest parameter set."""
    store = MemoryStore.open(db, key=key)
    engine = MemoryEngine(store)
    ds = [engine.enhance(request(symbol="BTCUSDT" if i % 2 else "ETHUSDT", price=100.0 + i)) for i in range(6)]
    for d in ds[:3]:
        engine.record_outcome(outcome(d, 0.01))
    events = {e.event_id: e for e in store.events_since(0)}
    by_kind = lambda kind: [i for i, e in events.items() if e.kind == kind]  # noqa: E731
    history = store.parameter_history()
    plan = {
        "decisions": ds,
        "open_decision": ds[3],
        "decision_event": next(i for i in by_kind(DECISION) if events[i].subject == ds[3].decision_id),
        "closed_decision": ds[1],
        "outcome_event": next(i for i in by_kind(OUTCOME) if events[i].subject == ds[1].decision_id),
        "parameter_event": history[-1][0],
        "previous_parameters": history[-2][1].version,
    }
    store.checkpoint()
    store.close()
    return plan


@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "encrypted"])
def test_one_flipped_bit_is_contained(db: Path, key: bytes, encrypted: bool, caplog: pytest.LogCaptureFixture) -> None:
    key_ = key if encrypted else None
    plan = _history(db, key_)
    # clear: a key name that no longer builds its record (TypeError before), a digit of a parameter
    # value (the content hash no longer matches); encrypted: any byte fails authentication
    flip_stored_bit(db, plan["decision_event"], None if encrypted else b'"decision_i')
    flip_stored_bit(db, plan["outcome_event"], None if encrypted else b'"exit_reaso')
    flip_stored_bit(db, plan["parameter_event"], None if encrypted else b'"position_size":0.0')
    corrupt = {
        plan["decision_event"]: DECISION,
        plan["outcome_event"]: OUTCOME,
        plan["parameter_event"]: PARAMETER_ADJUSTMENT,
    }

    store = MemoryStore.open(db, key=key_)
    try:
        with caplog.at_level(logging.ERROR, logger="mem_memory.store"):
            engine = MemoryEngine(store)  # starts: the working memory is rebuilt without the three
        assert store.corrupt == corrupt
        for event_id in corrupt:
            assert any(f"event {event_id} is corrupt" in r.getMessage() for r in caplog.records), event_id

        open_d, closed_d = plan["open_decision"], plan["closed_decision"]
        recent = {v.decision.decision_id for s in ("BTCUSDT", "ETHUSDT") for v in engine.recent_decisions(s, 50)}
        assert open_d.decision_id not in recent and closed_d.decision_id not in recent
        assert recent == {d.decision_id for d in plan["decisions"]} - {open_d.decision_id, closed_d.decision_id}
        assert engine.parameters().version == plan["previous_parameters"]  # the newest sound set is current

        # the calls that need a corrupt record fail with it; nothing is written
        before = store.last_event_id()
        with pytest.raises(CorruptRecord) as err:
            engine.record_outcome(outcome(open_d, 0.01))
        assert err.value.event_id == plan["decision_event"]
        with pytest.raises(CorruptRecord) as err:
            engine.record_outcome(outcome(closed_d, 0.01))
        assert err.value.event_id == plan["outcome_event"]
        assert store.last_event_id() == before

        # everything else works, and learning goes on from the newest sound parameters
        good = plan["decisions"][4]
        update = engine.record_outcome(outcome(good, -0.01))
        assert not update.win and update.adjustments
        fresh = engine.enhance(request(symbol="BTCUSDT", price=200.0))
        assert store.get_decision(fresh.decision_id)[0] == fresh
        assert engine.stats().corrupt_records == 3

        report = verify(store)
        assert not report.ok and report.integrity == "ok"
        assert {c.event_id: c.kind for c in report.corrupt} == corrupt
        assert report.events == store.last_event_id()
        assert report.lines()[-1] == f"{db}: {report.events} events checked, 3 corrupt"
    finally:
        store.close()


def test_a_sound_store_verifies(store: MemoryStore) -> None:
    engine = MemoryEngine(store)
    engine.record_outcome(outcome(engine.enhance(request()), 0.01))
    report = verify(store)
    assert report.ok and report.events == store.last_event_id() == 3 and report.corrupt == ()
