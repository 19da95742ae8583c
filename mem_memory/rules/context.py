"""What a learned strategy's conditions may look at: the decision-time feature snapshot, plus the
decision's time of day.

``utc_hour`` is the decision time's hour of the day in UTC with minutes as a fraction
(``13:30`` -> 13.5), in ``[0, 24)``. It is derived from the decision's own time, never stored in
the snapshot, so the similarity search over features is unchanged and any snapshot (the seed's 12
features or a richer set with volatility-regime features) gets the same time-of-day conditions.
Pattern discovery evaluates its candidates, and the engine its learned strategies, on this same
mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

UTC_HOUR = "utc_hour"


def utc_hour(time: datetime) -> float:
    """Hour of the day of ``time`` in UTC, minutes and seconds as a fraction (naive = UTC)."""
    t = time.astimezone(UTC) if time.tzinfo is not None else time
    return t.hour + t.minute / 60.0 + t.second / 3600.0


def decision_context(features: Mapping[str, float], time: datetime) -> dict[str, float]:
    """The snapshot plus ``utc_hour`` of the decision time (a snapshot value of that name is replaced)."""
    return {**features, UTC_HOUR: utc_hour(time)}
