"""A full store (SQLite's page cap standing in for a full disk): writes fail with ``StoreFull`` and
store nothing, the write health turns False and back to True once a write succeeds (the probe
finds the space without any caller), and no acknowledged write is lost."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from mem_memory import MemoryConfig, MemoryEngine, MemoryStore, StoreFull

from .helpers import outcome, request

pytestmark = pytest.mark.sqlite_only  # SQLite's files: the writer process, caps, backups, modes


def _cap_a_few_pages_above_now(store: MemoryStore, pages: int = 6) -> None:
    store.set_max_bytes(0)  # SQLite keeps the cap at the current size at least
    assert store.max_pages is not None
    store.set_max_bytes((store.max_pages + pages) * 4096)


@pytest.mark.parametrize("writer_process", [False, True], ids=["in-process", "writer-process"])
def test_a_full_store_refuses_writes_loses_nothing_and_recovers(db: Path, writer_process: bool) -> None:
    store = MemoryStore.open(db)
    engine = MemoryEngine(store, MemoryConfig(write_probe_s=0.05), writer_process=writer_process)
    changes: list[bool] = []
    engine.write_health.subscribe(changes.append)

    async def decide(i: int):
        if writer_process:
            return await engine.enhance_async(request(price=100.0 + i))
        return engine.enhance(request(price=100.0 + i))

    async def scenario() -> tuple[list[str], list[str]]:
        decisions = [await decide(i) for i in range(5)]
        closed = [d.decision_id for d in decisions[:2] if engine.record_outcome(outcome(d, 0.01))]
        _cap_a_few_pages_above_now(store)
        acknowledged = [d.decision_id for d in decisions]
        for i in range(5, 2000):
            try:
                acknowledged.append((await decide(i)).decision_id)
            except StoreFull as exc:
                assert "is full" in str(exc) and "nothing was stored" in str(exc)
                break
        else:
            pytest.fail("the cap was never reached")
        assert not engine.write_health.ok and changes == [True, False]
        with pytest.raises(StoreFull):
            await decide(10_000)
        before = store.counts()
        for d_id in acknowledged[2:]:  # outcomes fail too once no page is left
            try:
                engine.record_outcome(outcome(store.get_decision(d_id)[0], 0.01))
                closed.append(d_id)
            except StoreFull:
                break
        else:
            pytest.fail("no outcome was refused")
        assert store.counts()["decisions"] == before["decisions"]

        store.set_max_bytes(None)  # space is freed; no caller writes, the probe notices
        deadline = time.monotonic() + 10
        while not engine.write_health.ok and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert engine.write_health.ok and changes == [True, False, True]
        acknowledged.append((await decide(20_000)).decision_id)
        return acknowledged, closed

    acknowledged, closed = asyncio.run(scenario())
    engine.close()
    store.close()

    again = MemoryStore.open(db)
    try:
        assert set(again.decision_event_ids(acknowledged)) == set(acknowledged)  # 0 acknowledged writes lost
        assert again.counts() == {
            "decisions": len(acknowledged),
            "outcomes": len(closed),
            "shadow_outcomes": 0,
        }  # and nothing else
        assert all(again.get_decision(d)[1] is not None for d in closed)
        assert again.integrity_check() == "ok"
    finally:
        again.close()
