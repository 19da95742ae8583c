"""Record factories: a stored-form ``Decision`` with every field filled, any of them overridden by
keyword (bulk loads, discovery histories, sensors' inputs), without the engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mem_memory import Decision

#: The time of decision 0.
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def decision(i: int = 0, **fields: Any) -> Decision:
    """Decision number ``i`` (id ``d<i>``, one minute after the previous, a momentum BUY at a
    price near 100 with a 2% stop and a 4% target); ``fields`` replace any of these."""
    values: dict[str, Any] = {
        "decision_id": f"d{i:08d}",
        "time": T0 + timedelta(minutes=i),
        "symbol": "BTCUSDT",
        "strategy": "momentum",
        "action": "BUY",
        "base_action": fields.get("action", "BUY"),
        "price": 100.0 + i % 7,
        "base_confidence": 0.6,
        "ml_confidence": 0.7,
        "memory_confidence": None,
        "confidence": 0.64,
        "size": 0.02,
        "stop_loss": 98.0,
        "take_profit": 104.0,
        "stop_loss_pct": 0.02,
        "take_profit_pct": 0.04,
        "reasoning": "bulk",
        "features": {},
    }
    return Decision(**{**values, **fields})
