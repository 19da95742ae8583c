"""How sure the replay's comparisons are: per-trade P&L differences with bootstrap CIs, and the
full system's P&L difference split into fewer trades, smaller sizes and different selection.
Pure (no I/O); deterministic for a given ``seed``.

**Per-trade P&L** is a trade's after-cost P&L as a fraction of its notional (``Trade.pnl_pct``):
what a trade earned per unit of money put in, whatever its size, so variants whose sizes differ
compare fairly (sizes have their own part in the decomposition). The difference of two variants
is ``mean(pnl_pct of a) - mean(pnl_pct of b)``.

**Confidence intervals: a paired day-block bootstrap over the days of entry.** Trades of the same
UTC day share the market's moves (and both variants trade the same days), so resampling trades
one by one would make the intervals too narrow. Every resample draws whole days with replacement
from the days on which either variant entered a trade, the same draw for both variants; a
variant's mean is then the ratio of its summed P&L to its summed trade count over the drawn days.
The 95% interval is the 2.5th-97.5th percentile of ``DEFAULT_RESAMPLES`` resamples. With few
days the interval is too narrow rather than too wide (a percentile bootstrap with n blocks), so a
window of a few days gives weak evidence even when the interval excludes 0.

A difference is called **better** or **worse** only when its interval excludes 0; otherwise
**not significant**. With fewer than ``MIN_TRADES`` trades on either side there is no verdict.

**Decomposition** (full system ``f`` against base + ML ``m``): with ``N`` trades, mean notional
``s`` and return per unit of notional ``r = sum(pnl) / sum(notional)``, the total P&L difference
splits exactly into

* fewer trades:        ``(N_f - N_m) * s_m * r_m`` — base + ML's average trade, N_f times;
* smaller sizes:       ``N_f * (s_f - s_m) * r_m``  — the full system's sizes at base + ML's return;
* different selection: ``N_f * s_f * (r_f - r_m)``  — what its own trades earned beyond that;

the three add up to ``total_f - total_m``. Each part gets a CI from the same day-block resamples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mem_pipelines.lib.skill import Interval
from mem_pipelines.replay.simulator import Trade

DEFAULT_RESAMPLES = 2000
MIN_TRADES = 5
LEVEL = 0.95

BETTER, WORSE, NOT_SIGNIFICANT, TOO_FEW = "better", "worse", "not significant", "too few trades"


@dataclass(frozen=True)
class Difference:
    """Per-trade P&L (fraction of notional) of variant ``a`` minus variant ``b``."""

    a: str
    b: str
    trades_a: int
    trades_b: int
    mean_a: float
    mean_b: float
    difference: float
    interval: Interval
    days: int
    verdict: str


@dataclass(frozen=True)
class Part:
    name: str
    value: float
    interval: Interval


@dataclass(frozen=True)
class Decomposition:
    """``total_a - total_b`` = fewer trades + smaller sizes + different selection (module docstring)."""

    a: str
    b: str
    total_difference: Part
    parts: tuple[Part, ...]
    shared_trades: int  # trades of ``a`` that ``b`` also took (same symbol, side and decision candle)
    trades_a: int
    trades_b: int

    @property
    def explained_by_count_and_size(self) -> float:
        """Share of the total difference that fewer and smaller trades at ``b``'s return explain."""
        total = self.total_difference.value
        if total == 0 or not math.isfinite(total):
            return math.nan
        return (self.parts[0].value + self.parts[1].value) / total


def _verdict(n_a: int, n_b: int, interval: Interval, min_trades: int) -> str:
    if min(n_a, n_b) < min_trades or not (math.isfinite(interval.low) and math.isfinite(interval.high)):
        return TOO_FEW
    if interval.low > 0:
        return BETTER
    if interval.high < 0:
        return WORSE
    return NOT_SIGNIFICANT


def _day_weights(days: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, days): how often each day is drawn in each resample."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, days, size=(resamples, days))
    weights = np.zeros((resamples, days))
    np.add.at(weights, (np.repeat(np.arange(resamples), days), draws.ravel()), 1.0)
    return weights


def _per_day(groups: Sequence[Sequence[Trade]]) -> np.ndarray:
    """(days, 4 * len(groups)) sums per UTC day of entry: trades, pnl_pct, pnl, notional."""
    days = sorted({t.entry_ts.floor("D") for g in groups for t in g})
    index = {d: i for i, d in enumerate(days)}
    out = np.zeros((len(days), 4 * len(groups)))
    for k, g in enumerate(groups):
        for t in g:
            row = out[index[t.entry_ts.floor("D")]]
            row[4 * k : 4 * k + 4] += (1.0, t.pnl_pct, t.pnl, t.notional)
    return out


def _interval(values: np.ndarray) -> Interval:
    finite = values[np.isfinite(values)]
    if finite.size < 0.9 * values.size or finite.size == 0:
        return Interval(math.nan, math.nan)
    tail = 100 * (1 - LEVEL) / 2
    return Interval(float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail)))


def per_trade_difference(
    a: str,
    trades_a: Sequence[Trade],
    b: str,
    trades_b: Sequence[Trade],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    min_trades: int = MIN_TRADES,
) -> Difference:
    """Mean per-trade P&L (fraction of notional) of ``a`` minus ``b`` with its 95% paired
    day-block bootstrap interval and the verdict (module docstring)."""
    n_a, n_b = len(trades_a), len(trades_b)
    mean_a = float(np.mean([t.pnl_pct for t in trades_a])) if n_a else math.nan
    mean_b = float(np.mean([t.pnl_pct for t in trades_b])) if n_b else math.nan
    if not n_a or not n_b:
        nan = Interval(math.nan, math.nan)
        return Difference(a, b, n_a, n_b, mean_a, mean_b, math.nan, nan, 0, TOO_FEW)
    sums = _per_day([trades_a, trades_b])
    boot = _day_weights(len(sums), resamples, seed) @ sums
    with np.errstate(divide="ignore", invalid="ignore"):
        diffs = boot[:, 1] / boot[:, 0] - boot[:, 5] / boot[:, 4]
    interval = _interval(diffs)
    return Difference(
        a, b, n_a, n_b, mean_a, mean_b, mean_a - mean_b, interval, len(sums), _verdict(n_a, n_b, interval, min_trades)
    )


def _parts(s: np.ndarray) -> np.ndarray:
    """(k, 4) fewer trades, smaller sizes, selection, total from (k, 8) day sums of a then b."""
    n_a, pnl_a, not_a = s[:, 0], s[:, 2], s[:, 3]
    n_b, pnl_b, not_b = s[:, 4], s[:, 6], s[:, 7]
    with np.errstate(divide="ignore", invalid="ignore"):
        size_a, size_b = not_a / n_a, not_b / n_b
        r_a, r_b = pnl_a / not_a, pnl_b / not_b
        count = (n_a - n_b) * size_b * r_b
        size = n_a * (size_a - size_b) * r_b
        selection = n_a * size_a * (r_a - r_b)
    return np.column_stack([count, size, selection, pnl_a - pnl_b])


def decompose(
    a: str,
    trades_a: Sequence[Trade],
    b: str,
    trades_b: Sequence[Trade],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Decomposition | None:
    """Total P&L of ``a`` minus ``b`` split into fewer trades, smaller sizes and different
    selection, each with a 95% day-block interval; None when either variant has no trade."""
    if not trades_a or not trades_b:
        return None
    sums = _per_day([trades_a, trades_b])
    point = _parts(sums.sum(0, keepdims=True))[0]
    boot = _parts(_day_weights(len(sums), resamples, seed) @ sums)
    names = ("fewer trades", "smaller sizes", "different selection")
    parts = tuple(Part(n, float(point[i]), _interval(boot[:, i])) for i, n in enumerate(names))
    keys_b = {(t.symbol, t.side, t.decision_ts) for t in trades_b}
    shared = sum(1 for t in trades_a if (t.symbol, t.side, t.decision_ts) in keys_b)
    total = Part("total difference", float(point[3]), _interval(boot[:, 3]))
    return Decomposition(a, b, total, parts, shared, len(trades_a), len(trades_b))


def after(trades: Sequence[Trade], start: pd.Timestamp) -> list[Trade]:
    """The trades decided at or after ``start``."""
    return [t for t in trades if t.decision_ts >= start]
