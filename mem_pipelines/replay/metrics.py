"""Performance of a list of closed trades on a fixed capital. Pure (no I/O).

Definitions (docs/closed_loop.md):

- P&L is realised at the exit, after fees and slippage (``Trade.pnl``); positions are sized as a
  fraction of a fixed capital (no compounding), so variants with different sizes compare in the
  same currency.
- ``win_rate`` = trades with ``pnl > 0`` / trades.
- Equity curve: capital + cumulative realised P&L, stepped on the replay's candle grid
  (``grid``: the union of the window's candle timestamps).
- ``sharpe``: mean / standard deviation of the per-candle realised P&L (as a fraction of
  capital; zero on candles without an exit), annualised with sqrt(288 * 365) for 5-minute candles
  of a market that trades every day. NaN (shown as "n/a") when there is no trade or no variance —
  never a made-up zero.
- ``max_drawdown``: largest fall of the equity curve from its running peak, in currency and as a
  fraction of that peak.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mem_pipelines.replay.simulator import Trade

BARS_PER_YEAR_5M = 288 * 365


@dataclass(frozen=True)
class ReplayMetrics:
    """Performance of one replay variant's closed trades (definitions above)."""

    trades: int
    wins: int
    win_rate: float
    total_pnl: float
    avg_pnl: float
    avg_pnl_pct: float
    return_pct: float
    fees: float
    sharpe: float
    max_drawdown: float
    max_drawdown_pct: float


def equity_curve(trades: Sequence[Trade], capital: float, grid: pd.DatetimeIndex) -> pd.Series:
    """Capital plus realised P&L at every grid timestamp (P&L booked at each trade's exit candle;
    exits after the grid's end are booked on its last point)."""
    if len(grid) == 0:
        raise ValueError("empty grid")
    pnl = pd.Series(0.0, index=grid)
    if trades:
        exits = pd.DatetimeIndex([t.exit_ts for t in trades])
        pos = grid.searchsorted(exits, side="right") - 1
        pos = np.clip(pos, 0, len(grid) - 1)
        np.add.at(pnl.values, pos, np.array([t.pnl for t in trades], dtype="float64"))
    return capital + pnl.cumsum()


def compute_metrics(
    trades: Sequence[Trade], capital: float, grid: pd.DatetimeIndex, bars_per_year: int = BARS_PER_YEAR_5M
) -> ReplayMetrics:
    n = len(trades)
    pnls = np.array([t.pnl for t in trades], dtype="float64")
    wins = int((pnls > 0).sum())
    equity = equity_curve(trades, capital, grid)
    per_bar = equity.diff().fillna(equity.iloc[0] - capital).to_numpy() / capital
    std = float(per_bar.std(ddof=1)) if len(per_bar) > 1 else math.nan
    sharpe = float(per_bar.mean() / std * math.sqrt(bars_per_year)) if n and std > 0 else math.nan
    peak = np.maximum.accumulate(np.concatenate([[capital], equity.to_numpy()]))
    values = np.concatenate([[capital], equity.to_numpy()])
    drawdown = peak - values
    k = int(drawdown.argmax())
    return ReplayMetrics(
        trades=n,
        wins=wins,
        win_rate=wins / n if n else math.nan,
        total_pnl=float(pnls.sum()),
        avg_pnl=float(pnls.mean()) if n else math.nan,
        avg_pnl_pct=float(np.mean([t.pnl_pct for t in trades])) if n else math.nan,
        return_pct=float(pnls.sum()) / capital,
        fees=float(sum(t.fees for t in trades)),
        sharpe=sharpe,
        max_drawdown=float(drawdown[k]),
        max_drawdown_pct=float(drawdown[k] / peak[k]),
    )
