"""The parameter adapter: market regime from the decision-time features -> multipliers.

Regimes (features of mem_core.features, scale-free), checked in this order:

- ``high_volatility``: ``hl_range >= 0.02`` (the bar's high-low range is at least 2% of close)
  -> stops x1.5, size x0.8, targets x1.3.
- ``strong_uptrend``: ``sma20 >= 0.01`` and ``sma50 >= 0.02`` and ``macd_hist > 0`` (close 1%
  above its 20-bar and 2% above its 50-bar mean, MACD above its signal) -> favour momentum:
  size x1.2 for momentum-family strategies, others unchanged.
- ``choppy``: ``|sma20| < 0.003`` and ``40 <= rsi14 <= 60`` (price hugging its mean, RSI
  neutral) -> favour mean reversion: stops x0.8 for all, size x1.2 for mean-reversion-family
  strategies (the mirror of the uptrend rule).
- ``normal`` otherwise (also when a needed feature is missing): no change.

Strategy family comes from the base strategy's name: momentum / trend / breakout -> momentum;
reversion / reversal / mean / revert / fade -> mean reversion.

The multipliers apply to the one decision (recorded in it with the regime), not to the stored
parameters, so they never compound.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mem_memory.config import MemoryConfig

MOMENTUM_WORDS = ("momentum", "trend", "breakout")
REVERSION_WORDS = ("reversion", "reversal", "mean", "revert", "fade")


@dataclass(frozen=True)
class Adaptation:
    regime: str
    trigger: str  # the feature values that put the snapshot in the regime
    size: float = 1.0
    stop: float = 1.0
    target: float = 1.0
    favoured: str | None = None  # "momentum" | "mean_reversion"


def strategy_family(strategy: str) -> str:
    s = strategy.lower()
    if any(w in s for w in MOMENTUM_WORDS):
        return "momentum"
    if any(w in s for w in REVERSION_WORDS):
        return "mean_reversion"
    return "other"


def regime_of(features: Mapping[str, float], cfg: MemoryConfig = MemoryConfig()) -> str:
    """The regime name (precise definitions in the module docstring)."""
    return regime_rule(cfg)(features)


def regime_rule(cfg: MemoryConfig = MemoryConfig()) -> Callable[[Mapping[str, float]], str]:
    """``regime_of`` with ``cfg``'s thresholds read once (a batch classifies many snapshots)."""
    hl_min, sma20_min, sma50_min = cfg.high_vol_hl_range, cfg.uptrend_sma20, cfg.uptrend_sma50
    choppy_sma20, (lo, hi) = cfg.choppy_abs_sma20, cfg.choppy_rsi

    def regime(features: Mapping[str, float]) -> str:
        get = features.get
        hl = get("hl_range")
        if hl is not None and hl >= hl_min:
            return "high_volatility"
        s20, s50, mh = get("sma20"), get("sma50"), get("macd_hist")
        if s20 is not None and s50 is not None and mh is not None and s20 >= sma20_min and s50 >= sma50_min and mh > 0:
            return "strong_uptrend"
        rsi = get("rsi14")
        if s20 is not None and rsi is not None and abs(s20) < choppy_sma20 and lo <= rsi <= hi:
            return "choppy"
        return "normal"

    return regime


def classify_regime(features: Mapping[str, float], cfg: MemoryConfig = MemoryConfig()) -> tuple[str, str]:
    """The regime name (``regime_of``) and the trigger text: the feature values that put the
    snapshot in it."""
    regime = regime_of(features, cfg)
    f = features
    if regime == "high_volatility":
        return regime, f"hl_range={f['hl_range']:.4g} >= {cfg.high_vol_hl_range:g}"
    if regime == "strong_uptrend":
        return (
            regime,
            f"sma20={f['sma20']:.4g} >= {cfg.uptrend_sma20:g}, sma50={f['sma50']:.4g} >= {cfg.uptrend_sma50:g}, "
            f"macd_hist={f['macd_hist']:.3g} > 0",
        )
    if regime == "choppy":
        lo, hi = cfg.choppy_rsi
        return (
            regime,
            f"|sma20|={abs(f['sma20']):.4g} < {cfg.choppy_abs_sma20:g}, rsi14={f['rsi14']:.4g} in [{lo:g}, {hi:g}]",
        )
    return regime, ""


def adapt(features: Mapping[str, float], strategy: str, cfg: MemoryConfig = MemoryConfig()) -> Adaptation:
    regime, trigger = classify_regime(features, cfg)
    if regime == "high_volatility":
        return Adaptation(regime, trigger, size=cfg.high_vol_size, stop=cfg.high_vol_stop, target=cfg.high_vol_target)
    if regime == "strong_uptrend":
        size = cfg.uptrend_momentum_size if strategy_family(strategy) == "momentum" else 1.0
        return Adaptation(regime, trigger, size=size, favoured="momentum")
    if regime == "choppy":
        size = cfg.choppy_reversion_size if strategy_family(strategy) == "mean_reversion" else 1.0
        return Adaptation(regime, trigger, size=size, stop=cfg.choppy_stop, favoured="mean_reversion")
    return Adaptation(regime, trigger)
