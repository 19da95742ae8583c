"""MemoryEngine on a real SQLite file: enhancement, learning from outcomes, restore, visibility."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mem_memory import (
    DECISION,
    OUTCOME,
    PARAMETER_ADJUSTMENT,
    STRATEGY_UPSERT,
    Condition,
    DuplicateOutcome,
    InvalidRecord,
    MemoryConfig,
    MemoryEngine,
    MemoryStore,
    Outcome,
    SignalRequest,
    StrategySpec,
    StrategyStats,
    UnknownDecision,
    UnknownParameterVersion,
)
from mem_memory.config import DEFAULT_PARAMETERS
from mem_memory.types import Decision, Parameters

from .helpers import FEATURES, T0, make_decision, outcome, request


def plant_history(store: MemoryStore, wins: int, losses: int, action: str = "BUY") -> None:
    decisions = [make_decision(i, action=action, decision_id=f"h{i}") for i in range(wins + losses)]
    outs = [outcome(d, 0.01 if i < wins else -0.01) for i, d in enumerate(decisions)]
    store.bulk_append(decisions, outs)


def test_seed_example_end_to_end(store: MemoryStore) -> None:
    plant_history(store, wins=8, losses=2)  # 10 BUY trades in these very conditions, 8 won
    engine = MemoryEngine(store)
    d = engine.enhance(request(base=0.65, ml=0.78, direction="bullish"))
    assert d.memory_confidence == pytest.approx(0.80)
    assert round(d.confidence, 2) == 0.73
    assert d.action == "BUY"
    assert d.size > 0 and d.stop_loss == pytest.approx(98.0) and d.take_profit == pytest.approx(104.0)
    assert "BUY at 0.73" in d.reasoning and "8/10 similar trades won" in d.reasoning
    stored, out = store.get_decision(d.decision_id)
    assert stored == d and out is None


def test_memory_silent_on_an_empty_store_and_hold_below_minimum(engine: MemoryEngine) -> None:
    d = engine.enhance(request(base=0.65, ml=0.78))
    assert d.memory_confidence is None
    assert d.confidence == pytest.approx((0.4 * 0.65 + 0.3 * 0.78) / 0.7)
    weak = engine.enhance(request(base=0.55, ml=0.78, direction="bearish"))  # ML against BUY: 0.22
    assert weak.action == "HOLD" and weak.base_action == "BUY" and weak.size == 0.0
    assert "below minimum 0.60" in weak.reasoning and "opposes" in weak.reasoning


def test_learned_strategy_adjusts_size_and_feeds_memory(store: MemoryStore) -> None:
    spec = StrategySpec(
        name="learned_buy_rsi14_mid",
        conditions=(Condition("rsi14", ">", 60.0), Condition("rsi14", "<=", 70.0)),
        action="BUY",
        confidence=0.9,
        size=0.03,
        stop_loss_pct=0.015,
        take_profit_pct=0.05,
        stats=StrategyStats(),
        created_at=T0,
        updated_at=T0,
    )
    store.append_strategy(spec)
    engine = MemoryEngine(store)
    d = engine.enhance(request())
    assert d.learned_strategy == spec.name
    assert d.memory_confidence == pytest.approx(0.9)
    assert (d.size, d.stop_loss_pct, d.take_profit_pct) == (0.03, 0.015, 0.05)
    sell = engine.enhance(request(action="SELL", direction="bearish"))
    assert sell.learned_strategy is None
    update = engine.record_outcome(outcome(d, 0.02))
    assert update.win and update.strategy == spec.name and update.strategy_stats.trades == 1
    assert engine.strategies()[0].stats.wins == 1


def test_record_outcome_adjusts_parameters_and_rejects_unknown_and_duplicates(engine: MemoryEngine) -> None:
    d = engine.enhance(request())
    update = engine.record_outcome(outcome(d, -0.01))
    assert not update.win and update.adjustments[0].parameter == "position_size"
    assert update.adjustments[0].to_value == pytest.approx(DEFAULT_PARAMETERS["position_size"] * 0.98)
    assert engine.parameters().version == update.parameters_version
    with pytest.raises(DuplicateOutcome):
        engine.record_outcome(outcome(d, 0.01))
    with pytest.raises(UnknownDecision):
        engine.record_outcome(replace(outcome(d, 0.01), decision_id="no-such-id"))
    kinds = [e.kind for e in engine.store.events_since(0)]
    assert kinds == [DECISION, OUTCOME, PARAMETER_ADJUSTMENT]


def test_monitor_fires_once_per_window_of_20(engine: MemoryEngine) -> None:
    fired = []
    for i in range(40):
        d = engine.enhance(request(time=T0 + timedelta(minutes=i)))
        u = engine.record_outcome(outcome(d, 0.01 if i % 5 == 0 else -0.01))  # 20% wins
        if any(a.trigger == "performance_monitor" for a in u.adjustments):
            fired.append(i)
    assert fired == [19, 39]
    assert engine.parameters()["ml_confidence_min"] == pytest.approx(0.70)
    assert engine.monitor(T0 + timedelta(days=1)) == []  # this window was acted on


def test_monitor_call_from_dagster(store: MemoryStore) -> None:
    plant_history(store, wins=8, losses=12)  # 40% over the last 20
    engine = MemoryEngine(store)
    adj = engine.monitor(T0 + timedelta(hours=1))
    assert {a.parameter for a in adj} == {"position_size", "ml_confidence_min"}
    assert engine.monitor(T0 + timedelta(hours=2)) == []


def test_restore_an_earlier_version_is_a_logged_adjustment(engine: MemoryEngine) -> None:
    v0 = engine.parameters().version
    d = engine.enhance(request())
    engine.record_outcome(outcome(d, 0.01))
    v1 = engine.parameters().version
    assert v1 != v0
    adj = engine.restore_parameters(v0, "undo the win bump", now=T0 + timedelta(hours=2))
    assert engine.parameters().version == v0
    assert adj[0].trigger == f"restore:{v0}" and "undo the win bump" in adj[0].reason
    engine.restore_parameters(v1, "again")
    assert engine.parameters().version == v1
    with pytest.raises(UnknownParameterVersion):
        engine.restore_parameters("0123456789abcdef", "nope")


def test_invalid_requests_name_the_field() -> None:
    with pytest.raises(InvalidRecord) as e:
        request(base=1.5)
    assert e.value.field == "base_confidence"
    with pytest.raises(InvalidRecord, match="time"):
        SignalRequest("X", "BUY", 0.5, 1.0, datetime(2026, 1, 1), "s")
    with pytest.raises(InvalidRecord, match="action"):
        request(action="SHORT")
    with pytest.raises(InvalidRecord, match="ml_direction"):
        request(direction="up")
    with pytest.raises(InvalidRecord, match="features"):
        request(features={"rsi": float("nan")})
    with pytest.raises(InvalidRecord, match="exit_price"):
        Outcome("x", 1.0, -1.0, 1.0, 0.0, 0.0, "r", T0)


def test_other_processes_writes_become_visible(db: Path) -> None:
    cfg = MemoryConfig(refresh_interval_s=0.05)
    a = MemoryEngine(MemoryStore.open(db), cfg)
    b = MemoryEngine(MemoryStore.open(db), cfg)
    d = a.enhance(request(symbol="ETHUSDT"))
    a.record_outcome(outcome(d, 0.01))
    import time

    time.sleep(0.06)
    views = b.recent_decisions("ETHUSDT", 50)
    assert [v.decision.decision_id for v in views] == [d.decision_id]
    assert views[0].outcome is not None
    assert b.parameters().version == a.parameters().version
    assert b.similar("BUY", FEATURES).n == 1


def test_refresh_builds_each_record_once(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process's writes reach the index as the records the store built (and validated)
    reading them: the index does not build them again from the payload."""
    a = MemoryEngine(MemoryStore.open(db))
    b = MemoryEngine(MemoryStore.open(db))
    d = a.enhance(request(symbol="ETHUSDT"))
    a.record_outcome(outcome(d, 0.01))
    events = b.store.events_since(0)
    assert [type(e.record).__name__ for e in events if e.kind in (DECISION, OUTCOME)] == ["Decision", "Outcome"]
    built: list[str] = []
    for cls in (Decision, Outcome, Parameters):
        original = cls.from_dict

        def counted(d: Any, cls: type = cls, original: Any = original) -> Any:
            built.append(cls.__name__)
            return original(d)

        monkeypatch.setattr(cls, "from_dict", staticmethod(counted))
    assert b.refresh() == len(events)
    kinds = [e.kind for e in events]
    assert sorted(built) == sorted(  # the store's one build per event, none by the index
        ["Decision"] * kinds.count(DECISION)
        + ["Outcome"] * kinds.count(OUTCOME)
        + ["Parameters"] * kinds.count(PARAMETER_ADJUSTMENT)
    )
    views = b.recent_decisions("ETHUSDT", 50)
    assert [v.decision for v in views] == [d]
    assert views[0].outcome is not None and views[0].outcome.decision_id == d.decision_id
    assert b.parameters().version == a.parameters().version


def test_working_memory_is_capped_and_rebuilt_on_open(db: Path) -> None:
    cfg = MemoryConfig(recent_per_symbol=5, max_symbols=2, closed_window=8)
    e = MemoryEngine(MemoryStore.open(db), cfg)
    ids = []
    for i in range(12):
        d = e.enhance(request(time=T0 + timedelta(minutes=i)))
        e.record_outcome(outcome(d, 0.01))
        ids.append(d.decision_id)
    for s in ("A", "B"):
        e.enhance(request(symbol=s))
    assert e.recent_decisions("BTCUSDT", 50) == []  # least recently used symbol evicted
    reopened = MemoryEngine(MemoryStore.open(db), cfg)
    assert [v.decision.decision_id for v in reopened.recent_decisions("BTCUSDT", 50)] == ids[::-1][:5]
    assert reopened.similar("BUY", FEATURES, k=20).n == 8


def test_stats_counts_and_24h_win_rate(engine: MemoryEngine) -> None:
    for i, pnl in enumerate([0.01, -0.01, 0.02]):
        d = engine.enhance(request(time=T0 + timedelta(hours=i)))
        engine.record_outcome(outcome(d, pnl, time=T0 + timedelta(hours=i, minutes=30)))
    engine.enhance(request())
    s = engine.stats(now=T0 + timedelta(hours=25))  # the first close (00:30) is older than 24h
    assert (s.decisions, s.outcomes, s.trades_24h) == (4, 3, 2)
    assert s.win_rate_24h == pytest.approx(0.5)


def test_engine_is_safe_across_threads(engine: MemoryEngine) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(25):
                d = engine.enhance(request(symbol=f"S{n}", time=T0 + timedelta(seconds=i)))
                engine.record_outcome(outcome(d, 0.01 if i % 2 else -0.01))
                engine.parameters()
                engine.recent_decisions(f"S{n}")
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert engine.store.counts() == {"decisions": 100, "outcomes": 100, "shadow_outcomes": 0}
    assert all(len(engine.recent_decisions(f"S{n}")) == 25 for n in range(4))


def test_events_since_is_a_cursor(engine: MemoryEngine) -> None:
    for _ in range(5):
        engine.enhance(request())
    first = engine.store.events_since(0, limit=3)
    rest = engine.store.events_since(first[-1].event_id, limit=100)
    assert [e.event_id for e in first + rest] == list(range(1, 6))
    assert engine.store.last_event_id() == 5
    assert rest[-1].kind == DECISION and rest[-1].payload["symbol"] == "BTCUSDT"
    assert STRATEGY_UPSERT == "strategy_upsert"


def test_memory_is_silent_on_an_empty_snapshot(store: MemoryStore) -> None:
    plant_history(store, wins=8, losses=2)
    engine = MemoryEngine(store)
    assert engine.similar("BUY", {}).n == 0
    d = engine.enhance(request(features={}))
    assert d.memory_confidence is None and "memory silent" in d.reasoning
