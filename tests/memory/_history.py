"""A store with every kind of record, and the comparisons the rekey and backup tests make
(imported by them; not collected)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from mem_memory import (
    Condition,
    MemoryConfig,
    MemoryEngine,
    MemoryStore,
    StrategySpec,
    StrategyStats,
)
from mem_memory.crypto import payload_key_id
from tests.memory.helpers import FEATURES, T0, make_decision, outcome, raw_connect, request

SYMBOLS = ("S0", "S1", "S2")
MARKER = "history-marker-7Q"  # in every bulk decision's reasoning: must never appear in encrypted bytes
#: Big enough that the rebuilt and the incrementally kept working memory hold the same records.
CONFIG = MemoryConfig(refresh_interval_s=1e9)


def populate(db: Path, key: bytes | None, bulk: int = 3000) -> None:
    """Bulk history over three symbols (every other decision closed), a learned strategy, and
    engine-made decisions, outcomes and parameter adjustments."""
    store = MemoryStore.open(db, key)
    try:
        decisions = []
        for i in range(bulk):
            d = make_decision(
                i,
                symbol=SYMBOLS[i % 3],
                action="BUY" if i % 2 else "SELL",
                features={**FEATURES, "rsi14": 20.0 + i % 60, "sma20": 0.001 * (i % 7 - 3)},
            )
            decisions.append(replace(d, reasoning=f"{MARKER} {i}"))
        outcomes = [outcome(d, 0.01 if i % 3 else -0.01) for i, d in enumerate(decisions) if i % 2 == 0]
        store.bulk_append(decisions, outcomes)
        store.append_strategy(
            StrategySpec(
                name="learned_buy_rsi14_low",
                conditions=(Condition("rsi14", "<=", 35.0),),
                action="BUY",
                confidence=0.72,
                size=0.025,
                stop_loss_pct=0.02,
                take_profit_pct=0.04,
                stats=StrategyStats().add(1.0, 0.01),
                created_at=T0,
                updated_at=T0,
                evidence="12/15 wins",
            )
        )
        engine = MemoryEngine(store, CONFIG)
        for i in range(40):
            d = engine.enhance(
                request(
                    symbol=SYMBOLS[i % 3],
                    features={**FEATURES, "rsi14": 25.0 + i},
                    time=T0 + timedelta(days=30, minutes=i),
                )
            )
            if i % 2:
                engine.record_outcome(outcome(d, 0.02 if i % 4 == 1 else -0.01))
    finally:
        store.close()


def events(store: MemoryStore, through: int | None = None) -> list[tuple[int, str, dict[str, Any]]]:
    """Every event (id, kind, decoded payload), oldest first, up to ``through``."""
    out = [(e.event_id, e.kind, e.payload) for e in store.iter_events()]
    return out if through is None else [e for e in out if e[0] <= through]


def views(engine: MemoryEngine, symbols: tuple[str, ...] = SYMBOLS) -> dict[str, Any]:
    """What the working memory answers: recent decisions per symbol with outcomes, parameters,
    strategies, and similar-conditions queries for both actions."""
    probe = {**FEATURES, "rsi14": 30.0}
    out: dict[str, Any] = {
        "parameters": engine.parameters().to_dict(),
        "strategies": [s.to_dict() for s in engine.strategies(include_deprecated=True)],
        "similar": {a: engine.similar(a, probe) for a in ("BUY", "SELL")},
    }
    for s in symbols:
        out[s] = [
            (v.decision.to_dict(), v.outcome.to_dict() if v.outcome else None) for v in engine.recent_decisions(s, 100)
        ]
    return out


def key_ids_in(db: Path) -> dict[str | None, int]:
    """How many payloads name each key id (None: unlabelled or clear)."""
    conn = raw_connect(db)
    try:
        counts: dict[str | None, int] = {}
        for (payload,) in conn.execute("SELECT payload FROM events"):
            kid = payload_key_id(payload)
            counts[kid] = counts.get(kid, 0) + 1
        return counts
    finally:
        conn.close()
