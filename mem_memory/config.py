"""Every threshold of the memory and its learning rules, in one frozen, hashable config.

Defaults are the seed's values (DESIGN §6) where the seed gives one; the rest are documented in
docs/memory.md. Pass a modified copy (``dataclasses.replace``) to ``MemoryEngine``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

#: The seed's parameter memory, as the memory starts.
DEFAULT_PARAMETERS: Mapping[str, float] = MappingProxyType(
    {
        "momentum_threshold": 0.005,
        "position_size": 0.02,  # fraction of capital per trade
        "risk_per_trade": 0.01,  # fraction of capital lost when the stop is hit (size x stop)
        "ml_confidence_min": 0.60,  # below this final confidence the action becomes HOLD
        "stop_loss_pct": 0.02,
        "take_profit_pct": 0.04,
    }
)

#: Hard risk limits: no rule, strategy, regime or restore can leave these ranges.
PARAMETER_LIMITS: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "momentum_threshold": (0.0005, 0.05),
        "position_size": (0.001, 0.10),
        "risk_per_trade": (0.001, 0.02),
        "ml_confidence_min": (0.50, 0.95),
        "stop_loss_pct": (0.002, 0.10),
        "take_profit_pct": (0.002, 0.30),
    }
)


@dataclass(frozen=True)
class MemoryConfig:
    # combine (DESIGN §6)
    weight_base: float = 0.4
    weight_ml: float = 0.3
    weight_memory: float = 0.3
    # memory confidence from similar past decisions
    neighbours: int = 20  # k nearest closed trades of the same action
    min_similar: int = 5  # fewer neighbours within the radius -> memory is silent
    similar_radius: float = 1.5  # RMS distance per feature in standardised units
    # working memory caps (the hot path reads only these)
    recent_per_symbol: int = 100
    max_symbols: int = 5000
    closed_window: int = 10_000  # closed trades per action kept for similarity search
    max_active_strategies: int = 50
    refresh_interval_s: float = 1.0  # other processes' writes become visible within this
    write_probe_s: float = 1.0  # while the store is full, a small write is tried this often
    # parameter adjustment after each outcome (bounded by PARAMETER_LIMITS)
    win_size_step: float = 1.02
    loss_size_step: float = 0.98
    # performance monitor
    monitor_window: int = 20
    monitor_min_win_rate: float = 0.45
    monitor_size_factor: float = 0.7
    monitor_confidence_min: float = 0.70
    # deprecation
    deprecate_min_trades: int = 100  # deprecated when trades > this ...
    deprecate_win_rate: float = 0.50  # ... and win rate < this
    # parameter adapter regimes (on the decision-time feature snapshot, see rules.adapter)
    high_vol_hl_range: float = 0.02
    uptrend_sma20: float = 0.01
    uptrend_sma50: float = 0.02
    choppy_abs_sma20: float = 0.003
    choppy_rsi: tuple[float, float] = (40.0, 60.0)
    high_vol_stop: float = 1.5
    high_vol_size: float = 0.8
    high_vol_target: float = 1.3
    uptrend_momentum_size: float = 1.2
    choppy_stop: float = 0.8
    choppy_reversion_size: float = 1.2
    # pattern discovery
    discovery_window: int = 500
    discovery_min_occurrences: int = 5
    discovery_min_win_rate: float = 0.70
    discovery_alpha: float = 0.05  # family-wise, Bonferroni-split over the candidates tested
    discovery_max_conditions: int = 2
    parameters: Mapping[str, float] = field(default_factory=lambda: DEFAULT_PARAMETERS)
    limits: Mapping[str, tuple[float, float]] = field(default_factory=lambda: PARAMETER_LIMITS)

    def __post_init__(self) -> None:
        if min(self.weight_base, self.weight_ml, self.weight_memory) < 0 or self.weight_base <= 0:
            raise ValueError("weights must be >= 0 and the base weight > 0")
