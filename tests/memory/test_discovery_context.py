"""Discovery's regime and time-of-day candidates: a planted hour-of-day window and a planted
volatility regime (a feature of a richer snapshot) are found; noise over every hour gives nothing,
with the time windows counted by the chance guard; the engine matches time-of-day strategies on
the decision's own time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from mem_memory import MemoryEngine, MemoryStore, Parameters
from mem_memory.config import DEFAULT_PARAMETERS, MemoryConfig
from mem_memory.rules.context import decision_context, utc_hour
from mem_memory.rules.discovery import discover, hour_windows
from mem_memory.types import Decision, Outcome
from tests.memory.helpers import FEATURES, T0, make_decision, outcome, request

NAMES = sorted(FEATURES)
PARAMS = Parameters(dict(DEFAULT_PARAMETERS), T0)


def spread_history(
    seed: int, plant: str | None, n: int = 500, extra: tuple[str, ...] = ()
) -> list[tuple[Decision, Outcome]]:
    """``n`` trades at random times of day over ~3 weeks, 12 random features (+ ``extra``).
    ``plant``: "hour" — BUY decided in [12:00, 18:00) UTC wins 92%, other trades 45%;
    "regime" — BUY with ``rv_ratio_12`` above 1.14 (a volatile third of the time) wins 95%, others 45%;
    None — every trade wins with probability 1/2."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        feats = {k: float(rng.normal()) for k in (*NAMES, *extra)}
        if "rv_ratio_12" in feats:
            feats["rv_ratio_12"] = float(rng.lognormal(0.0, 0.3))
        when = T0.replace(hour=0, minute=0) + timedelta(minutes=int(rng.integers(0, 21 * 24 * 60)))
        action = "BUY" if rng.random() < 0.5 else "SELL"
        p = 0.5
        if plant == "hour":
            p = 0.92 if action == "BUY" and 12 <= when.hour < 18 else 0.45
        elif plant == "regime":
            p = 0.95 if action == "BUY" and feats["rv_ratio_12"] > 1.14 else 0.45
        win = rng.random() < p
        d = make_decision(i, action=action, features=feats, time=when, decision_id=f"{plant}{seed}-{i}")
        out.append((d, outcome(d, 0.01 if win else -0.01)))
    out.sort(key=lambda t: t[0].time)
    return out


def test_windows_and_the_hour_of_a_decision() -> None:
    assert hour_windows() == [(0, 6), (3, 9), (6, 12), (9, 15), (12, 18), (15, 21), (18, 24)]
    assert hour_windows(MemoryConfig(discovery_hour_window=0)) == []
    assert utc_hour(datetime(2025, 6, 1, 13, 30, tzinfo=UTC)) == 13.5
    tz = datetime(2025, 6, 1, 15, 30).astimezone().tzinfo  # any zone: the hour is taken in UTC
    local = datetime(2025, 6, 1, 13, 30, tzinfo=UTC).astimezone(tz)
    assert decision_context({"rsi14": 40.0}, local) == {"rsi14": 40.0, "utc_hour": 13.5}
    with pytest.raises(ValueError):
        MemoryConfig(discovery_hour_window=30)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_planted_hour_window_is_found(seed: int) -> None:
    result = discover(spread_history(seed, "hour"), {}, PARAMS, T0)
    names = [s.name for s in result.created]
    assert "learned_buy_utc_hour_12_18h" in names, names
    spec = next(s for s in result.created if s.name == "learned_buy_utc_hour_12_18h")
    assert [(c.feature, c.op, c.threshold) for c in spec.conditions] == [
        ("utc_hour", ">=", 12.0),
        ("utc_hour", "<", 18.0),
    ]
    assert spec.action == "BUY" and spec.stats.win_rate >= 0.8
    assert len(result.created) <= 2


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_planted_volatility_regime_of_a_richer_snapshot_is_found(seed: int) -> None:
    result = discover(spread_history(seed, "regime", extra=("rv_ratio_12",)), {}, PARAMS, T0)
    names = [s.name for s in result.created]
    assert "learned_buy_rv_ratio_12_high" in names, names
    spec = next(s for s in result.created if s.name == "learned_buy_rv_ratio_12_high")
    assert spec.conditions[0].feature == "rv_ratio_12" and spec.conditions[0].op == ">"
    assert 1.0 < spec.conditions[0].threshold < 1.3  # the top tercile of a lognormal(0, 0.3)
    assert len(result.created) <= 2


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_noise_over_every_hour_gives_nothing_and_the_windows_are_counted(seed: int) -> None:
    result = discover(spread_history(seed, None), {}, PARAMS, T0)
    assert result.created == ()
    # 12 feature terciles, 7 hour windows and their pairs; a rare pair can fall below 5 trades
    assert 1700 < result.candidates <= 2 * (36 + 7 + 594 + 36 * 7)
    assert result.rejected_by_guard > 0


def test_the_engine_matches_a_time_of_day_strategy_on_the_decision_time(tmp_path) -> None:
    trades = spread_history(1, "hour")
    with MemoryStore.open(tmp_path / "m.db") as store:
        store.bulk_append([d for d, _ in trades], [o for _, o in trades])
        engine = MemoryEngine(store)
        assert "learned_buy_utc_hour_12_18h" in [s.name for s in engine.discover(T0 + timedelta(days=30)).created]
        day = T0 + timedelta(days=31)
        inside = engine.enhance(request(time=day.replace(hour=13, minute=5)))
        outside = engine.enhance(request(time=day.replace(hour=19, minute=5)))
        assert inside.learned_strategy == "learned_buy_utc_hour_12_18h" and "learned strategy" in inside.reasoning
        assert outside.learned_strategy != "learned_buy_utc_hour_12_18h"
        assert [s.name for s in engine.matching_strategies("BUY", FEATURES, day.replace(hour=17, minute=55))][:1] == [
            "learned_buy_utc_hour_12_18h"
        ]
