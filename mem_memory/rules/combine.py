"""Combining confidences and the HOLD rule."""

from __future__ import annotations

from mem_memory.config import MemoryConfig


def ml_support(action: str, ml_confidence: float | None, ml_direction: str | None) -> float | None:
    """How much the ML prediction supports ``action``.

    The model predicts a reversal and its direction. A bullish reversal supports BUY, a bearish
    one SELL: then the support is ``ml_confidence``. When the direction contradicts the action
    the support is ``1 - ml_confidence`` (a confident reversal against the trade is strong
    evidence against it). Without a direction, or for HOLD, the confidence is used as given.
    None when there is no ML confidence (the ML is silent).
    """
    if ml_confidence is None:
        return None
    if ml_direction is None or action == "HOLD":
        return ml_confidence
    agrees = (ml_direction == "bullish") == (action == "BUY")
    return ml_confidence if agrees else 1.0 - ml_confidence


def combine(base: float, ml: float | None, memory: float | None, cfg: MemoryConfig = MemoryConfig()) -> float:
    """``0.4·base + 0.3·ML + 0.3·memory`` (weights from ``cfg``), renormalised over the
    components present: with memory silent it is ``(0.4·base + 0.3·ML) / 0.7``."""
    total = cfg.weight_base * base
    weight = cfg.weight_base
    if ml is not None:
        total += cfg.weight_ml * ml
        weight += cfg.weight_ml
    if memory is not None:
        total += cfg.weight_memory * memory
        weight += cfg.weight_memory
    return min(1.0, max(0.0, total / weight))


def hold_rule(action: str, final_confidence: float, ml_confidence_min: float) -> str:
    """The action after the HOLD rule: below ``ml_confidence_min`` (strictly) it is HOLD."""
    return "HOLD" if final_confidence < ml_confidence_min else action


def memory_confidence(
    neighbour_wins: int, neighbours: int, strategy_confidence: float | None, min_similar: int
) -> tuple[float | None, str]:
    """Memory's view of a signal: the win rate of similar past trades of the same action (when
    at least ``min_similar`` are close enough) averaged with the confidence of a matching learned
    strategy; None (silent) when it has neither. Returns the value and what it rested on."""
    parts: list[float] = []
    said: list[str] = []
    if neighbours >= min_similar:
        parts.append(neighbour_wins / neighbours)
        said.append(f"{neighbour_wins}/{neighbours} similar trades won")
    if strategy_confidence is not None:
        parts.append(strategy_confidence)
        said.append("a learned strategy matched")
    if not parts:
        return None, "memory silent"
    return sum(parts) / len(parts), "; ".join(said)
