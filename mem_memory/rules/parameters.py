"""Parameter memory rules: hard limits, per-decision sizing, the bounded adjustment after an
outcome, the performance monitor, and restoring an earlier version. Pure: each returns the
adjustments (with reason and trigger) and the engine stores them with the new parameter set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from mem_memory.config import MemoryConfig
from mem_memory.rules.adapter import Adaptation
from mem_memory.types import Outcome, ParameterAdjustment, Parameters, StrategySpec


def clamp(name: str, value: float, cfg: MemoryConfig = MemoryConfig()) -> float:
    lo, hi = cfg.limits.get(name, (float("-inf"), float("inf")))
    return min(hi, max(lo, value))


def _changes(
    params: Parameters, proposed: Mapping[str, float], reason: str, trigger: str, at: datetime, cfg: MemoryConfig
) -> list[ParameterAdjustment]:
    out = []
    for name, value in proposed.items():
        new = round(clamp(name, value, cfg), 10)
        old = params.values.get(name)
        if old is None or abs(new - old) > 1e-12:
            out.append(ParameterAdjustment(name, float(old if old is not None else 0.0), new, reason, trigger, at))
    return out


def apply(params: Parameters, adjustments: Sequence[ParameterAdjustment], at: datetime) -> Parameters:
    return params.with_values({a.parameter: a.to_value for a in adjustments}, at)


@dataclass(frozen=True)
class Sizing:
    size: float
    stop_loss_pct: float
    take_profit_pct: float
    note: str


def sizing(
    params: Parameters, spec: StrategySpec | None, adaptation: Adaptation, cfg: MemoryConfig = MemoryConfig()
) -> Sizing:
    """Size, stop and target of a decision: parameter memory, replaced by a matching learned
    strategy's values, times the regime's multipliers, then clamped to the hard limits and to
    ``size x stop <= risk_per_trade``."""
    size, stop, target = params["position_size"], params["stop_loss_pct"], params["take_profit_pct"]
    if spec is not None:
        size, stop, target = spec.size, spec.stop_loss_pct, spec.take_profit_pct
    size = clamp("position_size", size * adaptation.size, cfg)
    stop = clamp("stop_loss_pct", stop * adaptation.stop, cfg)
    target = clamp("take_profit_pct", target * adaptation.target, cfg)
    risk = clamp("risk_per_trade", params.values.get("risk_per_trade", cfg.limits["risk_per_trade"][1]), cfg)
    note = ""
    if size * stop > risk:
        size = risk / stop
        note = f"size capped by risk_per_trade {risk:g}"
    return Sizing(size, stop, target, note)


def adjust_after_outcome(
    params: Parameters, outcome: Outcome, at: datetime, cfg: MemoryConfig = MemoryConfig()
) -> list[ParameterAdjustment]:
    """After a win, position size x1.02; after a loss x0.98 — within the hard limits (no
    adjustment is logged at a limit). Trigger ``outcome:<decision id>``."""
    win = outcome.win
    step = cfg.win_size_step if win else cfg.loss_size_step
    reason = f"{'win' if win else 'loss'} of {outcome.pnl_pct:+.2%} ({outcome.exit_reason or 'closed'}): position size x{step:g}"
    return _changes(
        params, {"position_size": params["position_size"] * step}, reason, f"outcome:{outcome.decision_id}", at, cfg
    )


def performance_monitor(
    params: Parameters, recent_wins: Sequence[bool], at: datetime, cfg: MemoryConfig = MemoryConfig()
) -> list[ParameterAdjustment]:
    """Over the last ``monitor_window`` (20) closed trades, a win rate strictly below 45% ->
    position size x0.7 and ml_confidence_min raised to 0.70 (never lowered). Needs a full window;
    the caller ensures a window is acted on once (20 new trades between two firings)."""
    window = list(recent_wins)[-cfg.monitor_window :]
    if len(window) < cfg.monitor_window:
        return []
    wins = sum(bool(w) for w in window)
    rate = wins / len(window)
    if rate >= cfg.monitor_min_win_rate:
        return []
    reason = f"win rate {wins}/{len(window)} = {rate:.0%} < {cfg.monitor_min_win_rate:.0%} over the last {len(window)} trades"
    proposed = {
        "position_size": params["position_size"] * cfg.monitor_size_factor,
        "ml_confidence_min": max(params["ml_confidence_min"], cfg.monitor_confidence_min),
    }
    return _changes(params, proposed, reason, "performance_monitor", at, cfg)


def restore(
    params: Parameters, target: Parameters, reason: str, at: datetime, cfg: MemoryConfig = MemoryConfig()
) -> list[ParameterAdjustment]:
    """Adjustments that bring ``params`` back to ``target`` (trigger ``restore:<version>``)."""
    why = f"restore version {target.version}: {reason}" if reason else f"restore version {target.version}"
    return _changes(params, dict(target.values), why, f"restore:{target.version}", at, cfg)
