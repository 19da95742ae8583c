"""A memory store with a planted history, shared by the learning tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from mem_pipelines.resources import MemoryStoreResource

T0 = datetime(2025, 6, 1, tzinfo=UTC)


def _plant(store, n: int = 240, seed: int = 7) -> None:
    """BUY trades: RSI in the low third always wins, elsewhere 30% win; the last 20 trades lose."""
    from mem_memory import Outcome
    from mem_testing import records

    rng = np.random.default_rng(seed)
    decisions, outcomes = [], []
    for i in range(n):
        rsi = float(rng.uniform(0, 100))
        last_block = i >= n - 20
        if last_block:
            rsi = float(rng.uniform(70, 100))
        win = (rsi < 30 or rng.random() < 0.3) and not last_block
        did = uuid.UUID(int=i + 1).hex
        t = T0 + timedelta(minutes=5 * i)
        decisions.append(
            records.decision(
                i,
                decision_id=did,
                time=t,
                strategy="momentum_rsi",
                price=100.0,
                ml_confidence=0.6,
                confidence=0.6,
                reasoning="planted",
                features={"rsi14": rsi, "sma20": float(rng.normal(0, 0.01))},
            )
        )
        pnl = 2.0 if win else -1.0
        outcomes.append(
            Outcome(
                decision_id=did,
                entry_price=100.0,
                exit_price=101.0 if win else 99.5,
                size=0.02,
                pnl=pnl,
                pnl_pct=pnl / 100,
                exit_reason="target" if win else "stop",
                time=t + timedelta(minutes=30),
            )
        )
    store.bulk_append(decisions, outcomes)


@pytest.fixture(params=["sqlite", "postgresql"])
def memory_target(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The memory store the learning assets and sensors run on: a SQLite file, or a database of
    the session's PostgreSQL cluster (sensors, discovery, the monitor and exports work unchanged)."""
    if request.param == "sqlite":
        yield str(tmp_path / "memory" / "memory.db")
        return
    monkeypatch.setenv("MEM_HOME", str(tmp_path))  # the exports of a database store go under MEM_HOME
    cluster = request.getfixturevalue("postgres")
    url = cluster.create_db("learning")
    yield url
    cluster.drop_db(url)


@pytest.fixture
def planted(memory_target: str, monkeypatch: pytest.MonkeyPatch) -> MemoryStoreResource:
    monkeypatch.delenv("MEM_MEMORY_KEY", raising=False)
    resource = MemoryStoreResource(path=memory_target)
    with resource.store() as store:
        _plant(store)
    return resource
