"""The replay's learner: what it learns reaches another process's engine before the next decision
(the server's), its report lists the changes (in the terms of the memory's config), and a step
that changes nothing does not wait."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from mem_memory import MemoryConfig, MemoryEngine, MemoryStore, Outcome, SignalRequest
from mem_pipelines.replay.learner import MemoryLearner
from mem_pipelines.resources import MemoryStoreResource


def test_a_learned_strategy_is_used_by_the_servers_next_decision(planted: MemoryStoreResource) -> None:
    now = pd.Timestamp("2025-06-10", tz="UTC")
    # Two engines on one file, as the server's process and the replay's.
    with planted.engine() as server, planted.engine() as mine:

        def decide():
            return server.enhance(
                SignalRequest(
                    symbol="BTCUSDT",
                    action="BUY",
                    base_confidence=0.7,
                    price=100.0,
                    time=datetime(2025, 6, 10, tzinfo=UTC),
                    strategy="momentum_rsi",
                    ml_confidence=0.7,
                    ml_direction="bullish",
                    features={"rsi14": 10.0, "sma20": 0.0},
                )
            )

        assert decide().learned_strategy is None
        learner = MemoryLearner(mine)
        started = time.monotonic()
        events = learner.step(now)
        assert learner.waits == 1 and time.monotonic() - started >= mine.config.refresh_interval_s
        assert ("strategy_created", "learned_buy_rsi14_low") in {(e.kind, e.subject) for e in events}
        assert decide().learned_strategy == "learned_buy_rsi14_low"  # seen right away, every time

        # Nothing new to learn: no change reported, no wait.
        started = time.monotonic()
        assert learner.step(now) == [] and learner.waits == 1
        assert time.monotonic() - started < mine.config.refresh_interval_s
        snap = learner.snapshot(now, outcomes=240)
        assert (snap.active_strategies, snap.deprecated_strategies) == (1, 0)
        assert snap.parameters["ml_confidence_min"] == 0.7  # the monitor fired on the losing streak
        assert [r["name"] for r in learner.final_strategies()] == ["learned_buy_rsi14_low"]


@pytest.mark.parametrize(
    ("config", "why"),
    [
        (MemoryConfig(), "2 outcomes (1 wins x1.02, 1 losses x0.98)"),
        (MemoryConfig(win_size_step=1.05, loss_size_step=0.9), "2 outcomes (1 wins x1.05, 1 losses x0.9)"),
    ],
    ids=["default", "custom"],
)
def test_outcome_rows_state_the_configured_size_steps(tmp_path: Path, config: MemoryConfig, why: str) -> None:
    store = MemoryStore.open(tmp_path / "memory.db")
    engine = MemoryEngine(store, config)
    try:
        learner = MemoryLearner(engine, settle_s=0)
        for i, pnl in enumerate((2.0, -1.0)):
            decision = engine.enhance(
                SignalRequest(
                    symbol="BTCUSDT",
                    action="BUY",
                    base_confidence=0.7,
                    price=100.0,
                    time=datetime(2025, 6, 10, i, tzinfo=UTC),
                    strategy="momentum_rsi",
                    ml_confidence=0.7,
                    ml_direction="bullish",
                    features={"rsi14": 50.0},
                )
            )
            engine.record_outcome(
                Outcome(
                    decision_id=decision.decision_id,
                    entry_price=100.0,
                    exit_price=100.0 + pnl,
                    size=decision.size,
                    pnl=pnl,
                    pnl_pct=pnl / 100,
                    exit_reason="target" if pnl > 0 else "stop",
                    time=datetime(2025, 6, 10, i, 30, tzinfo=UTC),
                )
            )
        size = config.parameters["position_size"]
        [row] = learner.changes_since_last_step(pd.Timestamp("2025-06-10T02:00", tz="UTC"))
        assert (row.kind, row.subject) == ("parameter_outcome", "position_size")
        assert row.detail == f"{size:.4g} -> {size * config.win_size_step * config.loss_size_step:.4g}: {why}"
    finally:
        engine.close()
        store.close()
