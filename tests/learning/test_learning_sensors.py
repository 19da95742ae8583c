"""The learning sensors over a real memory store: one run per batch of new outcomes, a cursor that
advances, skips when there is nothing to do, and no reprocessing after a restart."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from mem_pipelines.learning.sensors import pattern_discovery_sensor, performance_monitor_sensor
from mem_pipelines.resources import MemoryStoreResource

T0 = datetime(2025, 6, 1, tzinfo=UTC)


def _decision(i: int):
    from mem_testing.records import decision

    return decision(
        i,
        decision_id=uuid.UUID(int=i + 1).hex,
        time=T0 + timedelta(minutes=5 * i),
        strategy="momentum_rsi",
        price=100.0,
        reasoning="test",
        features={"rsi14": 50.0 + i},
    )


def _outcome(i: int, pnl: float = 1.0):
    from mem_memory.types import Outcome

    return Outcome(
        decision_id=uuid.UUID(int=i + 1).hex,
        entry_price=100.0,
        exit_price=101.0,
        size=0.02,
        pnl=pnl,
        pnl_pct=pnl / 100,
        exit_reason="target",
        time=T0 + timedelta(minutes=5 * i + 30),
    )


@pytest.fixture
def memory(memory_target: str, monkeypatch: pytest.MonkeyPatch) -> MemoryStoreResource:
    monkeypatch.delenv("MEM_MEMORY_KEY", raising=False)
    return MemoryStoreResource(path=memory_target)


def _tick(sensor, instance, cursor, memory):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"memory_store": memory})
    result = sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    return result


@pytest.mark.parametrize("sensor", [pattern_discovery_sensor, performance_monitor_sensor], ids=lambda s: s.name)
def test_cursor_one_run_per_batch_skip_and_restart(sensor, memory: MemoryStoreResource) -> None:
    instance = dg.DagsterInstance.ephemeral()
    with memory.store() as store:
        for i in range(3):
            store.append_decision(_decision(i))
        for i in range(3):
            store.append_outcome(_outcome(i))
        last = store.last_event_id()

    # New outcomes: exactly one run, the cursor moves to the last event read.
    first = _tick(sensor, instance, None, memory)
    assert len(first.run_requests) == 1
    assert first.cursor == str(last)
    assert first.run_requests[0].run_key.endswith(f"-{last}")
    assert first.run_requests[0].tags["mem/new_outcomes"] == "3"

    # Nothing new: skip, cursor unchanged.
    idle = _tick(sensor, instance, first.cursor, memory)
    assert not idle.run_requests and idle.skip_reason is not None
    # the reason names the store it read (a database by its URL without the password)
    from mem_memory.backend import describe

    assert f"in the memory store {describe(memory.db_path())} after event {last}" in idle.skip_reason.skip_message
    assert idle.cursor == first.cursor

    # Only decisions (no trade closed): skip, but the cursor passes them so they are not re-read.
    with memory.store() as store:
        store.append_decision(_decision(3))
        after_decision = store.last_event_id()
    quiet = _tick(sensor, instance, first.cursor, memory)
    assert not quiet.run_requests and "none an outcome" in quiet.skip_reason.skip_message
    assert quiet.cursor == str(after_decision)

    # One more outcome: one more run with a new run key.
    with memory.store() as store:
        store.append_outcome(_outcome(3, pnl=-1.0))
        newest = store.last_event_id()
    second = _tick(sensor, instance, quiet.cursor, memory)
    assert len(second.run_requests) == 1 and second.cursor == str(newest)
    assert second.run_requests[0].run_key != first.run_requests[0].run_key
    assert second.run_requests[0].tags["mem/new_outcomes"] == "1"

    # Restart from the saved cursor (a new instance, a new context): nothing is processed again.
    restarted = _tick(sensor, dg.DagsterInstance.ephemeral(), second.cursor, memory)
    assert not restarted.run_requests and restarted.cursor == second.cursor


def test_a_large_backlog_is_read_in_bounded_pages(memory: MemoryStoreResource) -> None:
    from mem_pipelines.learning.cursor import scan_events

    with memory.store() as store:
        for i in range(30):
            store.append_decision(_decision(i))
            store.append_outcome(_outcome(i))
        step = scan_events(store, 0, page=7, max_pages=3)
        assert (step.events, step.last_event_id) == (21, 21)
        rest = scan_events(store, step.last_event_id, page=7, max_pages=100)
        assert rest.events == 39 and rest.last_event_id == store.last_event_id()
        assert step.outcomes + rest.outcomes == 30
