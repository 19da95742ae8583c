"""Reporting: the memory's counts and recent win rate, and the human-readable exports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from mem_memory.types import MemoryStats
from mem_memory.upkeep import IndexUpkeep


class Reporting(IndexUpkeep):
    """The reporting side of ``MemoryEngine``."""

    def stats(self, now: datetime | None = None) -> MemoryStats:
        """Counts, and the win rate of trades closed in the 24 h before ``now``."""
        now = now or datetime.now(UTC)
        since = now - timedelta(hours=24)
        self.refresh(force=False)
        with self._lock:
            specs = list(self._wm.strategies.values())
        with self.store.snapshot():  # the store's reads, without holding the index
            counts = self.store.counts()
            trades = wins = 0
            offset, page = 0, 1000
            while True:
                batch = self.store.closed_trades(page, offset)
                if not batch:
                    break
                older = False
                for _, o in batch:
                    if o.shadow:  # not a trade
                        continue
                    if since <= o.time <= now:
                        trades += 1
                        wins += o.win
                    elif o.time < since:
                        older = True
                if older or not batch:
                    break
                offset += page
        return MemoryStats(
            decisions=counts["decisions"],
            outcomes=counts["outcomes"],
            active_strategies=sum(not s.deprecated for s in specs),
            deprecated_strategies=sum(s.deprecated for s in specs),
            trades_24h=trades,
            win_rate_24h=(wins / trades) if trades else None,
            corrupt_records=len(self.store.corrupt),
        )

    def export_all(self, folder: str | Path) -> dict[str, Path]:
        """Regenerate core_memory_updates.txt, parameter_updates.json and strategy_modules.py in
        ``folder`` from the store; returns the paths by name."""
        from mem_memory.exports import export_all

        with self._lock:
            return export_all(self.store, Path(folder), self.config)
