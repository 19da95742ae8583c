"""Learned-strategy statistics after an outcome, and deprecation."""

from __future__ import annotations

from datetime import datetime

from mem_memory.config import MemoryConfig
from mem_memory.types import Outcome, StrategySpec, StrategyStats


def should_deprecate(stats: StrategyStats, cfg: MemoryConfig = MemoryConfig()) -> bool:
    """More than 100 trades (strictly) and a win rate strictly below 50%."""
    return stats.trades > cfg.deprecate_min_trades and stats.win_rate < cfg.deprecate_win_rate


def deprecation_reason(stats: StrategyStats, cfg: MemoryConfig = MemoryConfig()) -> str:
    return (
        f"win rate {stats.wins}/{stats.trades} = {stats.win_rate:.1%} < {cfg.deprecate_win_rate:.0%} "
        f"after more than {cfg.deprecate_min_trades} trades"
    )


def update_strategy(
    spec: StrategySpec, outcome: Outcome, at: datetime, cfg: MemoryConfig = MemoryConfig()
) -> tuple[StrategySpec, bool]:
    """The spec with the outcome counted; the flag says it was deprecated by this outcome."""
    stats = spec.stats.add(outcome.pnl, outcome.pnl_pct)
    if not spec.deprecated and should_deprecate(stats, cfg):
        return spec.evolve(
            stats=stats, updated_at=at, deprecated=True, deprecated_reason=deprecation_reason(stats, cfg)
        ), True
    return spec.evolve(stats=stats, updated_at=at), False
