"""A store holding every kind of record (decisions with request ids, outcomes, shadow outcomes,
parameter versions and a restore of one, learned and deprecated strategies, audit rows), and a
snapshot of everything in it to compare two stores by content (imported by tests; not collected)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from mem_memory import MemoryEngine, MemoryStore, Outcome, SignalRequest
from tests.memory._history import CONFIG, SYMBOLS, events, populate, views
from tests.memory.helpers import T0, outcome, raw_connect, request


def build(db: Path, key: bytes | None, bulk: int = 300) -> None:
    """``populate`` plus what it lacks: request ids, a shadow outcome, a deprecated strategy and
    a restored parameter version."""
    populate(db, key, bulk=bulk)
    store = MemoryStore.open(db, key)
    try:
        engine = MemoryEngine(store, CONFIG)
        later = T0 + timedelta(days=40)
        traded = engine.enhance(replace(request(symbol="S1", time=later), request_id="drill-decision-1"))
        engine.record_outcome(outcome(traded, 0.015), request_id="drill-outcome-1")
        held = engine.enhance(
            SignalRequest(
                symbol="S2",
                action="BUY",
                base_confidence=0.1,
                price=100.0,
                time=later + timedelta(minutes=1),
                strategy="momentum",
                features=dict(request().features),
            )
        )
        assert held.action == "HOLD"
        engine.record_outcome(
            Outcome(
                decision_id=held.decision_id,
                entry_price=100.0,
                exit_price=101.0,
                size=0.01,
                pnl=1.0,
                pnl_pct=0.01,
                exit_reason="take_profit",
                time=later + timedelta(minutes=30),
                shadow=True,
            )
        )
        spec = next(iter(store.strategies().values()))
        store.append_strategy(replace(spec, deprecated=True, deprecated_reason="drill", updated_at=later))
        first = store.parameter_history()[0][1].version
        engine.restore_parameters(first, "drill: back to the first version", later + timedelta(hours=1))
    finally:
        store.close()


def content(db: Path, key: bytes | None) -> dict[str, Any]:
    """Everything a store holds, decoded: events, lookup rows, request ids, meta, the audit rows,
    parameter versions, strategies and the rebuilt working memory."""
    store = MemoryStore.open(db, key)
    try:
        out: dict[str, Any] = {
            "events": events(store),
            "counts": store.counts(),
            "store_id": store.store_id,
            "parameters": [(e, p.to_dict(), [a.to_dict() for a in adj]) for e, p, adj in store.parameter_history()],
            "strategies": {k: v.to_dict() for k, v in store.strategies().items()},
            "views": views(MemoryEngine(store, CONFIG), (*SYMBOLS, "S1", "S2")),
        }
    finally:
        store.close()
    conn = raw_connect(db)
    try:
        for table, order in (
            ("decisions", "decision_id"),
            ("heads", "kind, subject"),
            ("requests", "kind, tag"),
            ("meta", "k"),
            ("audit", "audit_id"),
        ):
            out[table] = [tuple(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY {order}")]  # noqa: S608
    finally:
        conn.close()
    return out
