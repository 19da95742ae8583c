"""Pattern discovery: a planted winning pattern is found; pure noise of the same size yields no
strategy (fixed seeds)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from mem_memory import MemoryEngine, MemoryStore, Parameters
from mem_memory.config import DEFAULT_PARAMETERS
from mem_memory.rules.discovery import discover, find_patterns
from mem_memory.types import Decision, Outcome

from .helpers import FEATURES, T0, make_decision, outcome, request

NAMES = sorted(FEATURES)


def history(seed: int, planted: bool, n: int = 500) -> list[tuple[Decision, Outcome]]:
    """``n`` closed trades with 12 random features and random actions. Planted: BUY with
    rsi14 < 33 wins 95% of the time (else 45%); noise: every trade wins with probability 1/2."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        feats = {k: float(rng.normal()) for k in NAMES}
        feats["rsi14"] = float(rng.uniform(0, 100))
        action = "BUY" if rng.random() < 0.5 else "SELL"
        p = 0.5
        if planted:
            p = 0.95 if (action == "BUY" and feats["rsi14"] < 33) else 0.45
        win = rng.random() < p
        d = make_decision(i, action=action, features=feats, decision_id=f"{'p' if planted else 'n'}{seed}-{i}")
        out.append((d, outcome(d, 0.01 if win else -0.01)))
    return out


PARAMS = Parameters(dict(DEFAULT_PARAMETERS), T0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_planted_pattern_is_found(seed: int) -> None:
    result = discover(history(seed, planted=True), {}, PARAMS, T0)
    names = [s.name for s in result.created]
    assert "learned_buy_rsi14_low" in names, (names, result)
    spec = next(s for s in result.created if s.name == "learned_buy_rsi14_low")
    assert spec.action == "BUY" and spec.conditions[0].feature == "rsi14" and spec.conditions[0].op == "<="
    assert 25 < spec.conditions[0].threshold < 42
    assert spec.stats.win_rate >= 0.7 and spec.stats.trades >= 5
    assert "Wilson lower bound" in spec.evidence
    assert len(result.created) <= 2  # no flood of sub-patterns and lucky neighbours


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pure_noise_of_the_same_size_gives_no_strategy(seed: int) -> None:
    trades = history(seed, planted=False)
    result = discover(trades, {}, PARAMS, T0)
    assert result.created == ()
    assert result.window_trades == 500 and result.candidates > 1000
    # without the guard the seed's thresholds alone would have accepted lucky patterns
    assert result.rejected_by_guard > 0


def test_discovery_through_the_engine_and_then_matching(tmp_path) -> None:
    store = MemoryStore.open(tmp_path / "m.db")
    trades = history(7, planted=True)
    store.bulk_append([d for d, _ in trades], [o for _, o in trades])
    engine = MemoryEngine(store)
    result = engine.discover(T0 + timedelta(days=1))
    assert "learned_buy_rsi14_low" in [s.name for s in result.created]
    assert "learned_buy_rsi14_low" in [s.name for s in engine.strategies()]
    again = engine.discover(T0 + timedelta(days=2))  # same window: nothing new, nothing moved
    assert again.created == () and again.updated == ()
    d = engine.enhance(request(features={**FEATURES, "rsi14": 10.0}))
    assert d.learned_strategy is not None and d.learned_strategy.startswith("learned_buy_rsi14_low")
    assert "learned strategy" in d.reasoning
    store.close()


def test_deprecated_strategies_are_swept_and_not_revived(tmp_path) -> None:
    store = MemoryStore.open(tmp_path / "m.db")
    trades = history(7, planted=True)
    store.bulk_append([d for d, _ in trades], [o for _, o in trades])
    engine = MemoryEngine(store)
    spec = engine.discover(T0).created[0]
    from mem_memory import StrategyStats

    bad = StrategyStats()
    for i in range(101):
        bad = bad.add(1.0 if i < 50 else -1.0, 0.01 if i < 50 else -0.01)
    store.append_strategy(spec.evolve(stats=bad))
    result = engine.discover(T0 + timedelta(days=1))
    assert [s.name for s in result.deprecated] == [spec.name]
    assert spec.name not in [s.name for s in engine.strategies()]
    assert spec.name in [s.name for s in engine.strategies(include_deprecated=True)]
    assert spec.name not in [s.name for s in engine.discover(T0 + timedelta(days=2)).created]
    store.close()


def test_guard_counts_candidates() -> None:
    accepted, tested, guarded = find_patterns(history(5, planted=False))
    assert accepted == [] and tested > 1000 and guarded >= 1
