"""Times from the future are refused (docs/serving.md, "Times from the future"): a client's bug
that would poison the history, QuestDB and the freshness metrics. Pure: the caller passes the clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

#: The candles' interval: a candle opening up to one interval after now is the next one.
CANDLE_INTERVAL_S = 300.0
#: Clock skew between a client and the server allowed by default (``MEM_SERVING_MAX_CLOCK_SKEW_S``).
DEFAULT_MAX_CLOCK_SKEW_S = 120.0


@dataclass(frozen=True)
class FutureLimit:
    """How far ahead of ``clock()`` (Unix seconds) a time may lie: one candle interval plus
    ``max_clock_skew_s``."""

    max_clock_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S
    clock: Callable[[], float] = field(default=time.time, compare=False, repr=False)

    def latest_ms(self) -> int:
        """The newest time accepted now, in Unix milliseconds."""
        return int((self.clock() + CANDLE_INTERVAL_S + self.max_clock_skew_s) * 1000)

    def problem(self, when: datetime) -> str | None:
        """Why ``when`` (aware) is refused, or None."""
        latest = self.latest_ms()
        return self._message(latest) if when.astimezone(UTC).timestamp() * 1000 > latest else None

    def first_ahead(self, ts_ms: np.ndarray) -> tuple[int, str] | None:
        """(index, why) of the first of ``ts_ms`` (ascending, Unix ms) that is refused, or None."""
        latest = self.latest_ms()
        if len(ts_ms) == 0 or ts_ms[-1] <= latest:  # ascending: the newest decides (the hot path: one comparison)
            return None
        return int(np.searchsorted(ts_ms, latest, side="right")), self._message(latest)

    def _message(self, latest_ms: int) -> str:
        try:
            latest = f"{datetime.fromtimestamp(latest_ms / 1000, UTC):%Y-%m-%dT%H:%M:%SZ}"
        except (OverflowError, ValueError, OSError):  # a skew past year 9999
            latest = f"{latest_ms / 1000:.0f} s after the epoch"
        return (
            f"lies in the future: after {latest}, the server's clock plus one candle interval "
            f"({CANDLE_INTERVAL_S:.0f} s) and the allowed clock skew ({self.max_clock_skew_s:g} s, "
            "MEM_SERVING_MAX_CLOCK_SKEW_S)"
        )
