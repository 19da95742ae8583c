"""The replay's learner: what it learns reaches another process's engine before the next decision
(the server's), its report lists the changes, and a step that changes nothing does not wait."""
from __future__ import annotations

import time
from datetime import UTC, datetime

import pandas as pd

from mem_pipelines.learning.logic import MemoryLearner
from mem_pipelines.resources import MemoryStoreResource


def test_a_learned_strategy_is_used_by_the_servers_next_decision(planted: MemoryStoreResource) -> None:
    from mem_memory import SignalRequest

    now = pd.Timestamp("2025-06-10", tz="UTC")
    # Two engines on one file, as the server's process and the replay's.
    with planted.engine() as server, planted.engine() as mine:
        def decide():
            return server.enhance(SignalRequest(
                symbol="BTCUSDT", action="BUY", base_confidence=0.7, price=100.0, time=datetime(2025, 6, 10, tzinfo=UTC),
                strategy="momentum_rsi", ml_confidence=0.7, ml_direction="bullish", features={"rsi14": 10.0, "sma20": 0.0},
            ))

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
