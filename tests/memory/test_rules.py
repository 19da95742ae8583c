"""The learning rules of DESIGN §6, each at and around its edge (pure functions)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from mem_memory import MemoryConfig, Parameters, StrategySpec, StrategyStats
from mem_memory.config import DEFAULT_PARAMETERS, PARAMETER_LIMITS
from mem_memory.rules import parameters as prules
from mem_memory.rules.adapter import adapt, classify_regime, strategy_family
from mem_memory.rules.combine import combine, hold_rule, memory_confidence, ml_support
from mem_memory.rules.discovery import wilson_lower
from mem_memory.rules.strategy_stats import should_deprecate, update_strategy
from mem_memory.types import Condition

from .helpers import FEATURES, T0, make_decision, outcome

CFG = MemoryConfig()


def params(**over: float) -> Parameters:
    return Parameters({**DEFAULT_PARAMETERS, **over}, T0)


# ---------------------------------------------------------------- combine and HOLD
def test_seed_example_gives_073_and_buy() -> None:
    final = combine(0.65, 0.78, 0.80, CFG)
    assert final == pytest.approx(0.4 * 0.65 + 0.3 * 0.78 + 0.3 * 0.80)
    assert round(final, 2) == 0.73
    assert hold_rule("BUY", final, DEFAULT_PARAMETERS["ml_confidence_min"]) == "BUY"


def test_silent_memory_renormalises_over_the_rest() -> None:
    assert combine(0.65, 0.78, None, CFG) == pytest.approx((0.4 * 0.65 + 0.3 * 0.78) / 0.7)
    assert combine(0.65, None, None, CFG) == pytest.approx(0.65)
    assert combine(0.65, None, 0.80, CFG) == pytest.approx((0.4 * 0.65 + 0.3 * 0.80) / 0.7)


def test_weights_are_configurable() -> None:
    cfg = replace(CFG, weight_base=0.5, weight_ml=0.5, weight_memory=0.0)
    assert combine(0.6, 0.8, 0.1, cfg) == pytest.approx(0.7)


@pytest.mark.parametrize(
    "action, direction, expected",
    [
        ("BUY", "bullish", 0.78),
        ("SELL", "bearish", 0.78),
        ("BUY", "bearish", 0.22),
        ("SELL", "bullish", 0.22),
        ("BUY", None, 0.78),
    ],
)
def test_ml_support_follows_the_reversal_direction(action: str, direction: str | None, expected: float) -> None:
    assert ml_support(action, 0.78, direction) == pytest.approx(expected)
    assert ml_support(action, None, direction) is None


@pytest.mark.parametrize("final, expected", [(0.5999, "HOLD"), (0.60, "BUY"), (0.6001, "BUY")])
def test_hold_rule_edge(final: float, expected: str) -> None:
    assert hold_rule("BUY", final, 0.60) == expected


def test_memory_confidence_needs_enough_similar_trades_or_a_strategy() -> None:
    assert memory_confidence(4, 4, None, 5)[0] is None
    assert memory_confidence(4, 5, None, 5)[0] == pytest.approx(0.8)
    assert memory_confidence(0, 0, 0.7, 5)[0] == pytest.approx(0.7)
    assert memory_confidence(8, 10, 0.6, 5)[0] == pytest.approx(0.7)


# ---------------------------------------------------------------- performance monitor
@pytest.mark.parametrize("wins, fires", [(8, True), (9, False), (10, False)])
def test_monitor_edge_at_45_percent(wins: int, fires: bool) -> None:
    window = [True] * wins + [False] * (20 - wins)
    adj = prules.performance_monitor(params(), window, T0, CFG)
    if not fires:
        assert adj == []
        return
    by = {a.parameter: a for a in adj}
    assert by["position_size"].to_value == pytest.approx(DEFAULT_PARAMETERS["position_size"] * 0.7)
    assert by["ml_confidence_min"].to_value == pytest.approx(0.70)
    assert all(a.trigger == "performance_monitor" and "8/20" in a.reason for a in adj)


def test_monitor_needs_a_full_window_and_never_lowers_the_minimum() -> None:
    assert prules.performance_monitor(params(), [False] * 19, T0, CFG) == []
    adj = prules.performance_monitor(params(ml_confidence_min=0.8), [False] * 20, T0, CFG)
    assert [a.parameter for a in adj] == ["position_size"]


# ---------------------------------------------------------------- adapter
@pytest.mark.parametrize("hl, regime", [(0.0199, "normal"), (0.02, "high_volatility"), (0.03, "high_volatility")])
def test_high_volatility_edge(hl: float, regime: str) -> None:
    f = {**FEATURES, "hl_range": hl, "sma20": 0.005, "rsi14": 70.0}
    assert classify_regime(f, CFG)[0] == regime
    a = adapt(f, "momentum", CFG)
    if regime == "high_volatility":
        assert (a.stop, a.size, a.target) == (1.5, 0.8, 1.3)
    else:
        assert (a.stop, a.size, a.target) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    "sma20, sma50, hist, regime",
    [
        (0.01, 0.02, 1e-5, "strong_uptrend"),
        (0.0099, 0.02, 1e-5, "normal"),
        (0.01, 0.0199, 1e-5, "normal"),
        (0.01, 0.02, 0.0, "normal"),
    ],
)
def test_strong_uptrend_edge(sma20: float, sma50: float, hist: float, regime: str) -> None:
    f = {**FEATURES, "sma20": sma20, "sma50": sma50, "macd_hist": hist, "rsi14": 65.0}
    assert classify_regime(f, CFG)[0] == regime
    if regime == "strong_uptrend":
        assert adapt(f, "momentum_breakout", CFG).size == 1.2
        assert adapt(f, "mean_reversion", CFG).size == 1.0


@pytest.mark.parametrize(
    "sma20, rsi, regime",
    [
        (0.0029, 50.0, "choppy"),
        (-0.0029, 40.0, "choppy"),
        (0.003, 50.0, "normal"),
        (0.001, 60.0, "choppy"),
        (0.001, 60.01, "normal"),
        (0.001, 39.99, "normal"),
    ],
)
def test_choppy_edge(sma20: float, rsi: float, regime: str) -> None:
    f = {**FEATURES, "sma20": sma20, "rsi14": rsi}
    assert classify_regime(f, CFG)[0] == regime
    if regime == "choppy":
        a = adapt(f, "rsi_mean_reversion", CFG)
        assert (a.stop, a.size) == (0.8, 1.2)
        assert adapt(f, "momentum", CFG).size == 1.0


def test_missing_features_mean_normal_regime_and_families() -> None:
    assert classify_regime({}, CFG) == ("normal", "")
    assert strategy_family("Momentum_v2") == "momentum"
    assert strategy_family("bollinger_reversion") == "mean_reversion"
    assert strategy_family("seed") == "other"


# ---------------------------------------------------------------- strategies and deprecation
def _stats(trades: int, wins: int) -> StrategyStats:
    s = StrategyStats()
    for i in range(trades):
        win = i < wins
        s = s.add(1.0 if win else -1.0, 0.01 if win else -0.01)
    return s


@pytest.mark.parametrize(
    "trades, wins, deprecated",
    [(100, 40, False), (101, 50, True), (101, 51, False), (102, 51, False), (102, 50, True), (150, 74, True)],
)
def test_deprecation_edge(trades: int, wins: int, deprecated: bool) -> None:
    assert should_deprecate(_stats(trades, wins), CFG) is deprecated


def _spec(stats: StrategyStats) -> StrategySpec:
    return StrategySpec(
        name="learned_buy_rsi14_low",
        conditions=(Condition("rsi14", "<=", 30.0),),
        action="BUY",
        confidence=0.7,
        size=0.02,
        stop_loss_pct=0.02,
        take_profit_pct=0.04,
        stats=stats,
        created_at=T0,
        updated_at=T0,
    )


def test_the_101st_trade_deprecates_with_a_reason() -> None:
    spec = _spec(_stats(100, 50))  # 50% after 100: stays
    assert not should_deprecate(spec.stats, CFG)
    d = make_decision(1)
    after, now_deprecated = update_strategy(spec, outcome(d, -0.01), T0, CFG)  # 50/101 < 50%
    assert now_deprecated and after.deprecated and after.stats.trades == 101
    assert "50/101" in (after.deprecated_reason or "")
    won, dep = update_strategy(spec, outcome(d, 0.01), T0, CFG)  # 51/101
    assert not dep and not won.deprecated


def test_stats_track_wins_losses_average_and_sharpe() -> None:
    s = StrategyStats().add(2.0, 0.02).add(-1.0, -0.01).add(1.0, 0.01)
    assert (s.trades, s.wins, s.losses) == (3, 2, 1)
    assert s.avg_gain == pytest.approx(0.02 / 3)
    import statistics

    assert s.sharpe == pytest.approx(statistics.mean([0.02, -0.01, 0.01]) / statistics.stdev([0.02, -0.01, 0.01]))


# ---------------------------------------------------------------- parameters: bounds and versions
def test_adjustment_after_outcome_is_bounded_and_logged() -> None:
    d = make_decision(1)
    p = params()
    adj = prules.adjust_after_outcome(p, outcome(d, 0.01), T0, CFG)
    assert adj[0].to_value == pytest.approx(0.0204) and adj[0].trigger == f"outcome:{d.decision_id}"
    assert "win" in adj[0].reason
    top = params(position_size=PARAMETER_LIMITS["position_size"][1])
    assert prules.adjust_after_outcome(top, outcome(d, 0.01), T0, CFG) == []  # at the limit: no change
    bottom = params(position_size=PARAMETER_LIMITS["position_size"][0])
    assert prules.adjust_after_outcome(bottom, outcome(d, -0.01), T0, CFG) == []
    for _ in range(500):
        p = prules.apply(p, prules.adjust_after_outcome(p, outcome(d, 0.01), T0, CFG), T0)
    assert p["position_size"] == PARAMETER_LIMITS["position_size"][1]


def test_sizing_respects_risk_per_trade_and_hard_limits() -> None:
    from mem_memory.rules.adapter import Adaptation

    p = params(position_size=0.10, stop_loss_pct=0.10, risk_per_trade=0.005)
    sz = prules.sizing(p, None, Adaptation("high_volatility", "", size=0.8, stop=1.5, target=1.3), CFG)
    assert sz.stop_loss_pct == PARAMETER_LIMITS["stop_loss_pct"][1]  # 0.15 clamped to 0.10
    assert sz.size * sz.stop_loss_pct == pytest.approx(0.005)
    assert "risk_per_trade" in sz.note


def test_versions_are_content_hashes() -> None:
    a = params()
    b = Parameters(dict(DEFAULT_PARAMETERS), T0 + timedelta(days=3))
    assert a.version == b.version and len(a.version) == 16
    assert params(position_size=0.0201).version != a.version


def test_wilson_lower_bound() -> None:
    assert wilson_lower(0, 0, 1.96) == 0.0
    assert wilson_lower(10, 10, 1.96) == pytest.approx(0.7225, abs=1e-3)
    assert wilson_lower(50, 100, 1.96) == pytest.approx(0.4038, abs=1e-3)
