"""Metrics on known trades, and the report's table, files and determinism."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from mem_pipelines.replay.metrics import compute_metrics, equity_curve
from mem_pipelines.replay.report import EvolutionPoint, LearningEvent, ReplayReport, VariantResult
from mem_pipelines.replay.simulator import Trade

T0 = pd.Timestamp("2025-03-01", tz="UTC")
GRID = pd.date_range(T0, periods=10, freq="5min")


def _trade(i_exit: int, pnl: float) -> Trade:
    ts = GRID[i_exit]
    return Trade("X", "BUY", ts, ts, 100.0, ts, 101.0, "target", 0.1, 1000.0, 99.0, 102.0, 1, 1.0, pnl, pnl / 1000.0)


def test_metrics_on_known_trades() -> None:
    trades = [_trade(1, 100.0), _trade(3, -300.0), _trade(3, 50.0), _trade(7, 200.0)]
    m = compute_metrics(trades, 10_000.0, GRID)
    assert (m.trades, m.wins) == (4, 3)
    assert m.win_rate == 0.75
    assert m.total_pnl == pytest.approx(50.0)
    assert m.avg_pnl == pytest.approx(12.5)
    assert m.return_pct == pytest.approx(0.005)
    eq = equity_curve(trades, 10_000.0, GRID)
    assert list(eq) == [10_000, 10_100, 10_100, 9_850, 9_850, 9_850, 9_850, 10_050, 10_050, 10_050]
    assert m.max_drawdown == pytest.approx(250.0)
    assert m.max_drawdown_pct == pytest.approx(250.0 / 10_100)
    per_bar = eq.diff().fillna(0.0) / 10_000
    assert m.sharpe == pytest.approx(per_bar.mean() / per_bar.std() * math.sqrt(288 * 365))


def test_no_trades_gives_not_available_not_zero() -> None:
    m = compute_metrics([], 10_000.0, GRID)
    assert m.trades == 0 and math.isnan(m.win_rate) and math.isnan(m.sharpe)
    assert m.max_drawdown == 0.0


def _report() -> ReplayReport:
    variants = []
    for name, pnls in {"base": [100.0, -300.0], "base_ml": [100.0], "full": [100.0, 50.0]}.items():
        trades = tuple(_trade(2 + i, p) for i, p in enumerate(pnls))
        variants.append(
            VariantResult(name, trades, compute_metrics(trades, 10_000.0, GRID), equity_curve(trades, 10_000.0, GRID))
        )
    return ReplayReport(
        symbols=("X",),
        start=GRID[0],
        end=GRID[-1],
        fee_bps=10,
        slippage_bps=5,
        capital=10_000.0,
        model_version="3",
        model_data_end="2025-02-28T23:55:00+00:00",
        variants=variants,
        evolution=[EvolutionPoint(GRID[3], 2, 1, 0, {"position_size": 0.1, "ml_confidence_min": 0.6})],
        events=[LearningEvent(GRID[3], "strategy_created", "learned_1", "rsi14 in [30, 40): 6 trades, 83% wins")],
    )


def test_report_table_and_files(tmp_path: Path) -> None:
    rep = _report()
    table = rep.table_markdown()
    rows = table.strip().splitlines()
    assert len(rows) == 5
    assert "Base strategy alone" in rows[2] and "Base + ML filter" in rows[3] and "full system" in rows[4]
    assert "| 2 | 50.0% | -200.00 |" in rows[2]
    assert "Memory helped in this window" in rep.markdown() and "Per trade it was" in rep.markdown()
    paths = rep.write(tmp_path / "a")
    assert set(paths) == {"markdown", "comparison", "trades", "evolution", "events", "equity_png"}
    assert all(p.exists() and p.stat().st_size > 0 for p in paths.values())
    assert paths["equity_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cmp = pd.read_csv(paths["comparison"])
    assert list(cmp["trades"]) == [2, 1, 2]
    # Same report, same bytes.
    again = _report().write(tmp_path / "b")
    for name in paths:
        assert paths[name].read_bytes() == again[name].read_bytes(), name
