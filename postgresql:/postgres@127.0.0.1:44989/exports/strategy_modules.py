"""Learned strategies, rendered from the MEM memory store by a fixed template.

A view for review: the store is the source of truth. MEM never imports or executes this file.
Generated 2026-11-30T00:22:41Z; 1 active, 0 deprecated.
"""
from __future__ import annotations


def _holds(value, op, threshold):
    if value is None:
        return False
    if op == "<":
        return value < threshold
    if op == "<=":
        return value <= threshold
    if op == ">":
        return value > threshold
    return value >= threshold


class LearnedBuyRsi14Low:
    """Learned strategy learned_buy_rsi14_low.

    Action: BUY
    Conditions: rsi14 <= 38.5283
    Confidence: 0.74
    Size: 2.74% of capital; stop loss 2.00%; take profit 4.00%
    Performance: 80 trades, 67 wins, 13 losses, win rate 83.8%, average gain +1.51%, Sharpe 1.36
    Created: 2026-11-30T00:22:41Z; updated: 2026-11-30T00:22:41Z
    Status: active
    """

    NAME = 'learned_buy_rsi14_low'
    ACTION = 'BUY'
    CONDITIONS = (('rsi14', '<=', 38.5283),)
    CONFIDENCE = 0.7416
    SIZE = 0.027375
    STOP_LOSS_PCT = 0.02
    TAKE_PROFIT_PCT = 0.04
    CREATED = '2026-11-30T00:22:41Z'
    UPDATED = '2026-11-30T00:22:41Z'
    DEPRECATED = False
    DEPRECATED_REASON = None
    EVIDENCE = '67/80 wins (84%) in the last 240 trades; Wilson lower bound 0.63 > base BUY win rate 0.47 (Bonferroni over 48 candidates); held on the newest trades: 19/22 wins'

    def __init__(self):
        self.trades = 80
        self.wins = 67
        self.losses = 13
        self.total_pnl = 121.0
        self.avg_pnl_pct = 0.015125000000000003

    def should_enter(self, features):
        """True when the strategy is active and every condition holds on the decision's context:
        the feature snapshot plus utc_hour, the decision time's hour of day in UTC."""
        return not self.DEPRECATED and all(_holds(features.get(f), op, t) for f, op, t in self.CONDITIONS)

    def update_performance(self, pnl, pnl_pct):
        """Count one closed trade (the store does this for real; kept for review and tests)."""
        self.trades += 1
        if pnl > 0:
            self.wins += 1
        else:
            self.losses += 1
        self.total_pnl += pnl
        self.avg_pnl_pct += (pnl_pct - self.avg_pnl_pct) / self.trades
        return self.wins / self.trades
