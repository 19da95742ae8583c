"""Client request ids: a retry with the same id gets the original answer and writes nothing, also
after a restart and when the retry races the original; ids are forgotten after the window."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from mem_memory import InvalidRecord, MemoryEngine, MemoryStore
from mem_memory.requests import REQUEST_ID_WINDOW_S
from tests.memory.helpers import stored_bytes

from .helpers import outcome, request


def test_a_repeated_id_gets_the_original_answer_and_writes_nothing(db: Path, key: bytes) -> None:
    store = MemoryStore.open(db, key=key)
    engine = MemoryEngine(store)
    first = engine.enhance(replace(request(), request_id="engine-42/enhance"))
    events = store.last_event_id()
    again = engine.enhance(replace(request(price=999.0), request_id="engine-42/enhance"))  # even with other values
    assert again == first and store.last_event_id() == events
    other = engine.enhance(replace(request(), request_id="engine-42/enhance-2"))
    assert other.decision_id != first.decision_id

    learned = engine.record_outcome(outcome(first, 0.01), request_id="engine-42/outcome")
    events, params = store.last_event_id(), engine.parameters()
    repeat = engine.record_outcome(outcome(first, 0.01), request_id="engine-42/outcome")
    assert repeat.replayed and not learned.replayed and replace(repeat, replayed=False) == learned
    assert store.last_event_id() == events and engine.parameters() == params
    store.close()

    raw = stored_bytes(db)
    assert b"engine-42" not in raw  # encrypted store: ids are kept as keyed tags

    reopened = MemoryStore.open(db, key=key)  # a restart: the ids are durable
    try:
        engine = MemoryEngine(reopened)
        assert engine.enhance(replace(request(), request_id="engine-42/enhance")) == first
        assert (
            replace(engine.record_outcome(outcome(first, 0.01), request_id="engine-42/outcome"), replayed=False)
            == learned
        )
        assert reopened.counts() == {"decisions": 2, "outcomes": 1, "shadow_outcomes": 0}
    finally:
        reopened.close()


def test_ids_are_forgotten_after_the_window(engine: MemoryEngine, store: MemoryStore) -> None:
    first = engine.enhance(replace(request(), request_id="old"))
    assert store.forget_requests(time.time() - REQUEST_ID_WINDOW_S) == 0  # inside the window: kept
    assert engine.enhance(replace(request(), request_id="old")) == first
    assert store.forget_requests(time.time() + 1) == 1  # as if the window had passed
    assert engine.enhance(replace(request(), request_id="old")).decision_id != first.decision_id


def test_bad_ids_are_refused_naming_the_field(engine: MemoryEngine) -> None:
    for bad, problem in (("a b", "without spaces"), ("x" * 129, "longer than 128"), ("tab\t", "without spaces")):
        with pytest.raises(InvalidRecord, match=f"request_id: .*{problem}"):
            replace(request(), request_id=bad)
        with pytest.raises(InvalidRecord, match=f"request_id: .*{problem}"):
            engine.record_outcome(outcome(engine.enhance(request()), 0.01), request_id=bad)


def test_a_retry_racing_the_original_writes_one_decision(db: Path) -> None:
    store = MemoryStore.open(db)
    threaded = MemoryEngine(store)
    answers: list[str] = []
    barrier = threading.Barrier(8)

    def call() -> None:
        barrier.wait()
        answers.append(threaded.enhance(replace(request(), request_id="raced")).decision_id)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(answers)) == 1 and store.counts()["decisions"] == 1

    engine = MemoryEngine(store, writer_process=True)  # the writer process: a batch with the same id twice

    async def together() -> list[str]:
        return [
            d.decision_id
            for d in await asyncio.gather(
                *(engine.enhance_async(replace(request(), request_id="raced-async")) for _ in range(8))
            )
        ]

    try:
        ids = asyncio.run(together())
    finally:
        engine.close()
    assert len(set(ids)) == 1 and store.counts()["decisions"] == 2
    store.close()


def test_an_id_reused_for_another_call_is_refused_not_answered(engine: MemoryEngine, store: MemoryStore) -> None:
    first = engine.enhance(replace(request(symbol="BTCUSDT", action="BUY"), request_id="reused"))
    for other in (request(symbol="ETHUSDT", action="BUY"), request(symbol="BTCUSDT", action="SELL")):
        with pytest.raises(
            InvalidRecord,
            match=f"request_id: already used for a BUY call about BTCUSDT \\(decision {first.decision_id}\\)",
        ):
            engine.enhance(replace(other, request_id="reused"))
    second = engine.enhance(request())
    engine.record_outcome(outcome(first, 0.01), request_id="close")
    events = store.last_event_id()
    with pytest.raises(
        InvalidRecord, match=f"request_id: already used for the outcome of another decision \\({first.decision_id}\\)"
    ):
        engine.record_outcome(outcome(second, 0.01), request_id="close")
    assert store.last_event_id() == events and store.counts() == {"decisions": 2, "outcomes": 1, "shadow_outcomes": 0}
