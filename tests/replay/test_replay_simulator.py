"""The simulator: next-open fills with costs, stop/target/time exits, and no look-ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mem_pipelines.replay.simulator import Candle, Costs, Order, Policy, Simulator, Trade, drive, drive_together

T0 = pd.Timestamp("2025-03-01", tz="UTC")


def _ts(i: int) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=5 * i)


def _frame(rows: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    a = np.asarray(rows, dtype="float64")
    return pd.DataFrame(
        {
            "ts": [_ts(i) for i in range(len(rows))],
            "open": a[:, 0],
            "high": a[:, 1],
            "low": a[:, 2],
            "close": a[:, 3],
            "volume": 1.0,
        }
    )


def _order(side: str = "BUY", decided: int = 0, stop: float = 0.01, target: float = 0.02, bars: int = 5) -> Order:
    return Order("X", side, _ts(decided), size=0.5, stop_pct=stop, target_pct=target, max_bars=bars, confidence=0.6)


COSTS = Costs(10, 5)


def _run(order: Order, frame: pd.DataFrame, costs: Costs = COSTS) -> Trade:
    sim = Simulator(costs, capital=10_000)
    trades: list[Trade] = []
    submitted = False
    for r in frame.itertuples(index=False):
        trades += sim.on_candle("X", Candle(r.ts, r.open, r.high, r.low, r.close))
        if not submitted and r.ts == order.decision_ts:
            sim.submit(order)
            submitted = True
    trades += sim.close_all()
    assert len(trades) == 1
    return trades[0]


def test_fill_on_next_open_with_costs_and_target_exit() -> None:
    frame = _frame([(100, 101, 99, 100), (102, 103, 101, 102), (102, 104.1, 101.5, 104), (104, 105, 103, 104)])
    t = _run(_order(target=0.02), frame)
    assert t.entry_ts == _ts(1)
    assert t.entry_price == pytest.approx(102 * 1.0005)  # next open + 5 bps slippage
    assert t.target_price == pytest.approx(102 * 1.02)
    assert (t.exit_reason, t.exit_ts) == ("target", _ts(2))
    assert t.exit_price == pytest.approx(102 * 1.02 * (1 - 0.0005))
    notional = 5_000.0
    assert t.fees == pytest.approx(notional * 0.001 * (1 + t.exit_price / t.entry_price))
    assert t.pnl == pytest.approx(notional * (t.exit_price / t.entry_price - 1) - t.fees)
    assert t.bars_held == 2


def test_stop_wins_when_both_are_touched_in_one_candle() -> None:
    frame = _frame([(100, 100, 100, 100), (100, 100.5, 99.5, 100), (100, 103, 98, 100)])
    t = _run(_order(stop=0.01, target=0.02), frame)
    assert t.exit_reason == "stop"
    assert t.exit_price == pytest.approx(99 * (1 - 0.0005))
    assert t.pnl < 0


def test_gap_through_the_stop_fills_at_the_open() -> None:
    frame = _frame([(100, 100, 100, 100), (100, 100.5, 99.5, 100), (95, 96, 94, 95)])
    t = _run(_order(stop=0.01), frame, Costs(0, 0))
    assert (t.exit_reason, t.exit_price) == ("stop", 95)


def test_short_side_mirrors() -> None:
    frame = _frame([(100, 100, 100, 100), (100, 100.5, 99.5, 100), (100, 100.2, 97.9, 98)])
    t = _run(_order("SELL", stop=0.01, target=0.02), frame, Costs(0, 0))
    assert (t.exit_reason, t.exit_price) == ("target", pytest.approx(98.0))
    assert t.pnl == pytest.approx(5_000 * 0.02)


def test_time_exit_at_the_close_of_the_last_bar_and_end_of_data() -> None:
    quiet = [(100, 100.1, 99.9, 100 + i / 100) for i in range(10)]
    t = _run(_order(bars=3), _frame(quiet), Costs(0, 0))
    assert (t.exit_reason, t.exit_ts, t.bars_held, t.exit_price) == ("time", _ts(3), 3, quiet[3][3])
    t = _run(_order(bars=50), _frame(quiet), Costs(0, 0))
    assert (t.exit_reason, t.exit_ts) == ("end", _ts(9))


def test_candles_out_of_order_and_double_orders_are_refused() -> None:
    sim = Simulator()
    sim.on_candle("X", Candle(_ts(1), 1, 1, 1, 1))
    with pytest.raises(ValueError):
        sim.on_candle("X", Candle(_ts(1), 1, 1, 1, 1))
    with pytest.raises(ValueError):
        sim.submit(_order(decided=0))  # decided before a candle already seen
    sim.submit(_order(decided=1))
    with pytest.raises(ValueError):
        sim.submit(_order(decided=1))


price = st.floats(min_value=50, max_value=150, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    path=st.lists(st.tuples(price, price, price, price), min_size=8, max_size=40),
    side=st.sampled_from(["BUY", "SELL"]),
    decided=st.integers(min_value=0, max_value=5),
    stop=st.floats(min_value=0.005, max_value=0.3),
    target=st.floats(min_value=0.005, max_value=0.3),
    bars=st.integers(min_value=1, max_value=20),
    junk=st.tuples(price, price, price, price),
)
def test_no_look_ahead_property(path, side, decided, stop, target, bars, junk) -> None:
    """The fill is the next candle's open +/- slippage; changing candles at or before the
    decision, or any candle after the exit, changes nothing about the trade."""
    rows = [(o, max(o, h, lo, c), min(o, h, lo, c), c) for o, h, lo, c in path]
    frame = _frame(rows)
    order = _order(side, decided=decided, stop=stop, target=target, bars=bars)
    costs = Costs(10, 5)
    t = _run(order, frame, costs)
    nxt = rows[decided + 1][0]
    assert t.entry_ts == _ts(decided + 1)
    assert t.entry_price == pytest.approx(nxt * (1.0005 if side == "BUY" else 0.9995))
    assert t.entry_ts <= t.exit_ts and t.decision_ts < t.entry_ts

    o, h, lo, c = junk
    jrow = (o, max(o, h, lo, c), min(o, h, lo, c), c)
    before = rows.copy()
    for i in range(decided + 1):
        before[i] = jrow
    assert _run(order, _frame(before), costs) == t
    exit_i = int((t.exit_ts - T0) / pd.Timedelta(minutes=5))
    if t.exit_reason != "end":
        after = rows[: exit_i + 1] + [jrow] * (len(rows) - exit_i - 1)
        assert _run(order, _frame(after), costs) == t


class _Recorder(Policy):
    def __init__(self, decide_at: set[tuple[str, int]]) -> None:
        self.log: list[tuple[str, object]] = []
        self.decide_at = decide_at

    def decide(self, symbol, index, candles):
        assert len(candles) == index + 1  # the policy never sees a later candle
        self.log.append(("decide", (symbol, candles["ts"].iloc[-1])))
        if (symbol, index) in self.decide_at:
            return Order(symbol, "BUY", candles["ts"].iloc[-1], 0.1, 0.01, 0.01, 2)
        return None

    def on_exit(self, trade):
        self.log.append(("exit", (trade.symbol, trade.exit_ts)))


def test_drive_orders_events_in_time_and_limits_decisions_to_the_window() -> None:
    flat = _frame([(100, 100.1, 99.9, 100)] * 8)
    frames = {"B": flat, "A": flat.iloc[1:].reset_index(drop=True)}
    pol = _Recorder({("A", 1), ("B", 2)})
    res = drive(frames, pol, Simulator(Costs(0, 0)), start=_ts(2), end=_ts(6))
    decided = [x for k, x in pol.log if k == "decide"]
    assert {ts for _, ts in decided} <= {_ts(i) for i in range(2, 6)}
    assert [k for k, _ in pol.log][:2] == ["decide", "decide"]  # A then B at ts 2
    assert decided[0] == ("A", _ts(2)) and decided[1] == ("B", _ts(2))
    # Each order fills at ts 3 and times out after 2 bars at ts 4; exits at ts 4 precede decisions at ts 4.
    i_exit = pol.log.index(("exit", ("A", _ts(4))))
    assert pol.log[i_exit + 1] == ("exit", ("B", _ts(4)))
    assert pol.log[i_exit + 2] == ("decide", ("A", _ts(4)))
    assert [t.symbol for t in res.trades] == ["A", "B"]


def test_policies_driven_together_each_see_what_they_would_alone_and_time_only_moves_forward() -> None:
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.004, 60)))
    rows = [(c, c * 1.004, c * 0.996, c * (1 + rng.normal(0, 0.001))) for c in close]
    rows = [(o, max(o, h, c), min(o, lo, c), c) for o, h, lo, c in rows]
    frames = {"A": _frame(rows), "B": _frame(rows[::-1])}
    plans = [{("A", i) for i in range(5, 60, 3)}, {("B", i) for i in range(4, 60, 5)} | {("A", 7)}]
    alone = [(p := _Recorder(plan), drive(frames, p, Simulator(COSTS), start=_ts(3), end=_ts(50))) for plan in plans]
    calls: list[pd.Timestamp] = []  # every decide of both, in the order they happen

    class _Shared(_Recorder):
        def decide(self, symbol, index, candles):
            calls.append(candles["ts"].iloc[-1])
            return super().decide(symbol, index, candles)

    together = [_Shared(plan) for plan in plans]
    results = drive_together(frames, [(p, Simulator(COSTS)) for p in together], start=_ts(3), end=_ts(50))
    for (pol, res), pol2, res2 in zip(alone, together, results, strict=True):
        assert pol2.log == pol.log and res2.trades == res.trades and res2.asked == res.asked
        assert res.trades  # the plans do trade
    # across the pairs, no decision comes before an earlier one (what they share only moves forward)
    assert len(calls) == sum(r.asked for r in results) and calls == sorted(calls)
