"""The replay's statistics: per-trade P&L differences with paired day-block bootstrap CIs and
verdicts, and the exact decomposition of the full system's total P&L difference."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mem_pipelines.replay.simulator import Trade
from mem_pipelines.replay.stats import BETTER, NOT_SIGNIFICANT, TOO_FEW, WORSE, after, decompose, per_trade_difference

DAY0 = pd.Timestamp("2025-06-01T10:00", tz="UTC")


def trade(day: int, pnl_pct: float, notional: float = 200.0, symbol: str = "X", minute: int = 0) -> Trade:
    ts = DAY0 + pd.Timedelta(days=day, minutes=5 * minute)
    entry = ts + pd.Timedelta(minutes=5)
    return Trade(
        symbol,
        "BUY",
        ts,
        entry,
        100.0,
        entry + pd.Timedelta(hours=1),
        101.0,
        "time",
        notional / 10_000,
        notional,
        98.0,
        104.0,
        12,
        0.3,
        pnl_pct * notional,
        pnl_pct,
    )


def noisy(seed: int, mean: float, days: int = 30, per_day: int = 6, notional: float = 200.0) -> list[Trade]:
    rng = np.random.default_rng(seed)
    return [
        trade(d, float(mean + rng.normal(0, 0.01)), notional, minute=k) for d in range(days) for k in range(per_day)
    ]


def test_a_clear_difference_is_better_and_its_mirror_worse() -> None:
    good, bad = noisy(1, 0.004), noisy(2, -0.003)
    d = per_trade_difference("full", good, "base_ml", bad)
    assert d.verdict == BETTER and d.interval.low > 0 and d.days == 30
    assert d.difference == pytest.approx(d.mean_a - d.mean_b) and d.interval.low < d.difference < d.interval.high
    assert per_trade_difference("base_ml", bad, "full", good).verdict == WORSE


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_no_real_difference_is_not_significant(seed: int) -> None:
    d = per_trade_difference("full", noisy(seed, -0.003), "base_ml", noisy(seed + 100, -0.003))
    assert d.verdict == NOT_SIGNIFICANT and d.interval.low < 0 < d.interval.high


def test_days_are_the_blocks_so_one_lucky_day_does_not_decide() -> None:
    """A variant whose gain is all on one busy day: resampled trade by trade it looks significant;
    resampled by whole days (trades of a day move together) it is not."""
    base = noisy(6, -0.002, days=20, per_day=5)
    lucky = noisy(7, -0.002, days=20, per_day=5) + [trade(0, 0.02 + 0.002 * (k % 3), minute=10 + k) for k in range(40)]
    d = per_trade_difference("full", lucky, "base_ml", base)
    assert d.difference > 0 and d.verdict == NOT_SIGNIFICANT
    rng = np.random.default_rng(0)
    a, b = np.array([t.pnl_pct for t in lucky]), np.array([t.pnl_pct for t in base])
    iid = [rng.choice(a, a.size).mean() - rng.choice(b, b.size).mean() for _ in range(2000)]
    assert np.percentile(iid, 2.5) > 0  # what resampling single trades would have claimed


def test_too_few_trades_gives_no_verdict() -> None:
    assert per_trade_difference("full", noisy(1, 0.01)[:3], "base_ml", noisy(2, 0.0)).verdict == TOO_FEW
    empty = per_trade_difference("full", [], "base_ml", noisy(2, 0.0))
    assert empty.verdict == TOO_FEW and math.isnan(empty.difference)


def test_the_decomposition_adds_up_and_separates_count_size_and_selection() -> None:
    ml = noisy(8, -0.003, notional=200.0)
    # Same trades as base + ML on every other day, at a quarter of the size: no selection effect.
    smaller = [
        trade(t.entry_ts.day - 1, t.pnl_pct, 50.0, minute=i % 6)
        for i, t in enumerate(ml)
        if (t.entry_ts.day - 1) % 2 == 0
    ]
    dec = decompose("full", smaller, "base_ml", ml)
    assert dec is not None
    count, size, selection = (p.value for p in dec.parts)
    total = sum(t.pnl for t in smaller) - sum(t.pnl for t in ml)
    assert dec.total_difference.value == pytest.approx(total)
    assert count + size + selection == pytest.approx(total)
    r_ml = sum(t.pnl for t in ml) / sum(t.notional for t in ml)
    assert count == pytest.approx((len(smaller) - len(ml)) * 200.0 * r_ml)
    assert size == pytest.approx(len(smaller) * (50.0 - 200.0) * r_ml)
    assert dec.shared_trades == len(smaller) and dec.trades_a == len(smaller)
    for p in (*dec.parts, dec.total_difference):
        assert p.interval.low <= p.value <= p.interval.high or p.name == "different selection"
    assert 0.5 < dec.explained_by_count_and_size < 1.5
    assert decompose("full", [], "base_ml", ml) is None


def test_second_half_selects_by_decision_time() -> None:
    trades = noisy(9, 0.0, days=10, per_day=2)
    half = DAY0 + pd.Timedelta(days=5)
    assert all(t.decision_ts >= half for t in after(trades, half)) and len(after(trades, half)) == 10
