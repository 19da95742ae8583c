"""Shadow outcomes: what a held signal would have done. Discovery and the similar-trades memory
learn from them; no risk rule counts them (no size step, no monitor, no strategy stats); only a
HOLD decision can have one."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from mem_memory import SHADOW_OUTCOME, InvalidRecord, MemoryEngine, MemoryStore
from mem_memory.types import Outcome
from tests.memory.helpers import FEATURES, T0, outcome, request


def _held(engine: MemoryEngine, i: int, **kw):
    """A BUY signal the memory holds (confidence far below the minimum)."""
    d = engine.enhance(request(base=0.1, ml=0.1, time=T0 + timedelta(minutes=5 * i), **kw))
    assert d.action == "HOLD" and d.base_action == "BUY"
    return d


def shadow(d, pnl_pct: float) -> Outcome:
    return replace(outcome(d, pnl_pct), shadow=True)


def test_a_shadow_outcome_is_stored_and_learned_from_but_moves_no_risk_rule(engine: MemoryEngine) -> None:
    before = engine.parameters()
    updates = [engine.record_outcome(shadow(_held(engine, i), -0.01)) for i in range(25)]  # 25 losing signals
    assert all(u.shadow and u.adjustments == () and u.strategy is None for u in updates)
    assert "shadow outcome of a held BUY signal" in updates[0].summary
    assert engine.parameters() == before  # no x0.98, no monitor although 25 "trades" lost
    assert engine.store.counts() == {"decisions": 25, "outcomes": 0, "shadow_outcomes": 25}
    assert [e.kind for e in engine.store.events_since(0, 100)].count(SHADOW_OUTCOME) == 25
    closed = engine.store.closed_trades(100)
    assert len(closed) == 25 and all(o.shadow for _, o in closed)
    # The similar-trades memory counts them on the signal's side, also after a restart.
    assert engine.similar("BUY", FEATURES).n == 20 and engine.similar("BUY", FEATURES).wins == 0
    assert MemoryEngine(engine.store).similar("BUY", FEATURES).n == 20
    d = engine.enhance(request(time=T0 + timedelta(hours=5)))
    assert d.memory_confidence == 0.0 and "0/20 similar trades won" in d.reasoning
    assert engine.stats(now=T0 + timedelta(hours=6)).trades_24h == 0  # not trades


def test_the_monitor_counts_trades_only(engine: MemoryEngine) -> None:
    for i in range(30):
        engine.record_outcome(shadow(_held(engine, i), -0.01))
    fired = []
    for i in range(20):  # 20 real trades, 20% wins: the monitor fires on the 20th, not before
        d = engine.enhance(request(base=0.95, ml=0.95, time=T0 + timedelta(hours=3, minutes=5 * i)))
        assert d.action == "BUY"
        u = engine.record_outcome(outcome(d, 0.01 if i % 5 == 0 else -0.01))
        if any(a.trigger == "performance_monitor" for a in u.adjustments):
            fired.append(i)
    assert fired == [19]


def test_only_a_hold_has_a_shadow_outcome(store: MemoryStore) -> None:
    engine = MemoryEngine(store)
    d = engine.enhance(request(base=0.95, ml=0.95))
    assert d.action == "BUY"
    with pytest.raises(InvalidRecord, match="shadow"):
        engine.record_outcome(shadow(d, 0.01))
    assert store.counts() == {"decisions": 1, "outcomes": 0, "shadow_outcomes": 0}
    engine.record_outcome(outcome(d, 0.01))  # its real trade is still accepted


def test_discovery_learns_from_held_signals(engine: MemoryEngine) -> None:
    """Held BUY signals that would have won 90% of the time between 12:00 and 18:00 UTC and lost
    otherwise: discovery finds the window from the shadows alone, for the BUY side."""
    for i in range(240):
        d = _held(engine, i * 7)  # every 35 minutes: all hours of the day, over ~6 days
        hour = d.time.hour
        engine.record_outcome(shadow(d, 0.01 if 12 <= hour < 18 and i % 10 else -0.01))
    result = engine.discover(T0 + timedelta(days=7))
    assert result.window_trades == 240
    assert [(s.name, s.action) for s in result.created] == [("learned_buy_utc_hour_12_18h", "BUY")]
