"""The per-symbol candle history (mem_serving.candles): its one merge rule, unit by unit, and a
property test against a plain reference model (a dict from open time to candle per symbol).

The property: after any interleaving of calls (appends, revisions of the newest candle, late and
repeated calls, gaps, a caller restarting from an older point, candles with holes, several
symbols), what the server answers from (the newest contiguous run, at most SERVING_HISTORY
candles) is the reference's newest contiguous run, and the features serving computes on it are
the reference's; or both agree that the run is too short (no features).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mem_core.feature_sets import SEED
from mem_core.features import MIN_HISTORY, SERVING_HISTORY
from mem_serving.candles import BAR_MS, CAPACITY, CandleHistory, ShortHistory
from mem_serving.handlers import UNLIMITED, Handlers
from mem_serving.model_provider import ModelProvider
from mem_serving.settings import ServingSettings
from mem_serving.types import CandleBlock

T0 = 1_700_000_000_000
SYMBOLS = ("A", "B", "C")


def _row(symbol: str, slot: int, version: int = 0) -> tuple[float, float, float, float, float]:
    """A valid candle, different per symbol, slot and version (a revision has other values)."""
    k = SYMBOLS.index(symbol) if symbol in SYMBOLS else 0
    close = 100.0 * math.exp(0.02 * math.sin(slot * 0.37 + k) + 0.01 * math.cos(slot * 1.31)) + 0.07 * version
    open_ = close * (1 + 0.001 * math.sin(slot * 2.1 + version))
    high = max(open_, close) * 1.002
    low = min(open_, close) * 0.998
    return (open_, high, low, close, 10.0 + 5 * (1 + math.sin(slot * 0.9)) + version)


def _block(symbol: str, slots, version: int = 0) -> CandleBlock:
    slots = list(slots)
    ts = np.array([T0 + s * BAR_MS for s in slots], dtype=np.int64)
    return CandleBlock(ts, np.array([_row(symbol, s, version) for s in slots], dtype=np.float64).reshape(-1, 5))


def _slots(block: CandleBlock) -> list[int]:
    return [int((t - T0) // BAR_MS) for t in block.ts_ms]


class Reference:
    """The rule in its plainest form: every candle ever given, per symbol, in a dict."""

    def __init__(self) -> None:
        self.candles: dict[str, dict[int, tuple[float, ...]]] = {}

    def merge(self, symbol: str, block: CandleBlock) -> None:
        held = self.candles.setdefault(symbol, {})
        newest = max(held) if held else None  # the newest before the call: the call is merged as a whole
        for t, row in zip(block.ts_ms.tolist(), map(tuple, block.ohlcv.tolist()), strict=True):
            if newest is None or t >= newest or t not in held:
                held[t] = row

    def run(self, symbol: str, view: int = SERVING_HISTORY) -> CandleBlock:
        held = self.candles.get(symbol, {})
        if not held:
            return CandleBlock.empty()
        t, ts = max(held), []
        while t in held and len(ts) < view:
            ts.append(t)
            t -= BAR_MS
        ts.reverse()
        return CandleBlock(np.array(ts, dtype=np.int64), np.array([held[t] for t in ts], dtype=np.float64))


def _same(a: CandleBlock, b: CandleBlock) -> bool:
    return np.array_equal(a.ts_ms, b.ts_ms) and np.array_equal(a.ohlcv, b.ohlcv)


# ---- the rule, unit by unit ---------------------------------------------------------------------


def test_appends_extend_the_run_and_the_run_is_capped_at_the_view() -> None:
    h = CandleHistory(capacity=12, view=10)
    assert _slots(h.merge("A", _block("A", range(0, 8)))) == list(range(8))
    assert _slots(h.merge("A", _block("A", [8]))) == list(range(9))
    assert _slots(h.merge("A", _block("A", range(9, 15)))) == list(range(5, 15))  # the newest 10
    assert _slots(h.held("A")) == list(range(3, 15))  # 12 held


def test_a_revision_of_the_newest_candle_replaces_it() -> None:
    h = CandleHistory(capacity=10)
    h.merge("A", _block("A", range(5)))
    run = h.merge("A", _block("A", [4], version=1))
    assert _slots(run) == list(range(5)) and np.array_equal(run.ohlcv[-1], _block("A", [4], 1).ohlcv[0])
    run = h.merge("A", _block("A", [4, 5], version=2))  # the newest again, revised, with the next one
    assert _slots(run) == list(range(6)) and np.array_equal(run.ohlcv[-2:], _block("A", [4, 5], 2).ohlcv)


def test_an_older_candle_fills_a_hole_or_is_ignored_and_never_truncates_newer_ones() -> None:
    h = CandleHistory(capacity=20)
    h.merge("A", _block("A", range(10)))
    assert _slots(h.merge("A", _block("A", [13, 14]))) == [13, 14]  # a gap: the newest run is short
    late = h.merge("A", _block("A", [10, 11, 12], version=3))  # the missing candles arrive late
    assert _slots(late) == list(range(15))  # they fill the hole: the run is whole again
    assert _slots(h.held("A")) == list(range(15))  # nothing newer was dropped
    again = h.merge("A", _block("A", range(0, 8), version=5))  # a restart from an older point, other values
    assert _same(again, late)  # held open times keep their values; the newest run is unchanged


def test_a_restart_far_back_changes_nothing_newer() -> None:
    h = CandleHistory(capacity=50, view=40)
    newest = h.merge("A", _block("A", range(500, 560)))
    assert _same(h.merge("A", _block("A", range(0, 60))), newest)  # older than the 50 held: ignored
    assert _slots(h.held("A")) == list(range(510, 560))


def test_symbols_are_independent_and_the_oldest_symbol_is_evicted() -> None:
    h = CandleHistory(capacity=10, view=10, max_symbols=2)
    h.merge("A", _block("A", range(3)))
    h.merge("B", _block("B", range(5)))
    assert len(h.run("A")) == 3 and len(h.run("B")) == 5
    h.merge("C", _block("C", range(1)))
    assert len(h) == 2 and len(h.run("A")) == 0 and len(h.run("B")) == 5


def test_a_batch_never_evicts_its_own_symbols() -> None:
    h, ref = CandleHistory(capacity=10, view=10, max_symbols=2), Reference()
    for symbol in ("A", "B"):
        h.merge(symbol, _block(symbol, range(3)))
        ref.merge(symbol, _block(symbol, range(3)))
    batch = [("B", _block("B", [3])), ("C", _block("C", range(4))), ("B", _block("B", [4]))]
    h.merge_many([s for s, _ in batch], [b for _, b in batch])  # C takes A's slot, not B's
    for symbol, block in batch:
        ref.merge(symbol, block)
    assert len(h) == 2 and len(h.run("A")) == 0
    assert _same(h.run("B"), ref.run("B")) and _same(h.run("C"), ref.run("C"))


def test_merging_the_same_candles_again_changes_nothing_and_reports_no_change() -> None:
    changes: list[tuple[str, list[int]]] = []
    h = CandleHistory(capacity=30, on_change=lambda s, rows: changes.append((s, _slots(rows))))
    first = h.merge("A", _block("A", range(20)))
    assert _same(h.merge("A", _block("A", range(20))), first) and _same(h.merge("A", _block("A", [19])), first)
    h.merge("A", _block("A", [19, 20], version=1))  # the newest revised and a new one
    h.merge("A", _block("A", [3], version=9))  # an older value for a held time: ignored, not reported
    assert changes == [("A", list(range(20))), ("A", [19, 20])]


def test_fill_never_replaces_a_held_candle_and_is_bounded_by_the_newest() -> None:
    h = CandleHistory(capacity=40, view=30)
    h.merge("A", _block("A", range(20, 25), version=1))
    reads: list[tuple[int, int | None]] = []

    def source(symbol: str, n: int, until_ms: int | None) -> CandleBlock:  # a QuestDB holding later candles too
        reads.append((n, until_ms))
        return _block(symbol, [s for s in range(0, 100) if until_ms is None or T0 + s * BAR_MS <= until_ms][-n:])

    run = h.fill_from("A", source)
    assert reads == [(40, T0 + 24 * BAR_MS)]
    assert _slots(run) == list(range(0, 25))[-30:]  # filled back, nothing after the newest held
    assert np.array_equal(run.ohlcv[-5:], _block("A", range(20, 25), 1).ohlcv)  # the calls' values kept
    assert _slots(h.fill("A", _block("A", range(25, 27)))) == list(range(0, 27))[-30:]  # a fill may extend


def test_short_history_names_the_counts() -> None:
    err = ShortHistory("ETHUSDT", 57, 289)
    assert err.reason == "57 of 289 contiguous candles of ETHUSDT held"
    assert str(err).startswith("candles: 57 of 289 contiguous candles")


# ---- the property ---------------------------------------------------------------------------------

OPS = st.lists(
    st.tuples(
        st.sampled_from(("append", "append", "gap", "revise", "late", "restart", "holes")),
        st.sampled_from(SYMBOLS),
        st.integers(0, 10_000),
        st.integers(0, 10_000),
        st.integers(0, 3),
    ),
    min_size=1,
    max_size=25,
)


def _handlers() -> Handlers:
    return Handlers(ServingSettings(), models=ModelProvider(None, poll_s=0), engine=None)  # type: ignore[arg-type]


def _call(op: tuple, newest: dict[str, int], calls: list[tuple[str, CandleBlock]]) -> tuple[str, CandleBlock]:
    """The candles of one call, chosen relative to what the symbol has seen so far."""
    kind, symbol, a, b, version = op
    top = newest.get(symbol)
    if kind == "late" and calls:
        return calls[a % len(calls)]  # a call repeated, late (a retry, or overtaken)
    if top is None or kind == "append":
        start = 0 if top is None else top + 1
        return symbol, _block(symbol, range(start, start + 1 + (a % 3 == 0) * (b % 420)), version)
    if kind == "gap":
        start = top + 2 + a % 60
        return symbol, _block(symbol, range(start, start + 1 + b % 140), version)
    if kind == "revise":
        return symbol, _block(symbol, [top], version or 1)
    if kind == "restart":  # the caller starts again from an older point, maybe with other values
        start = max(0, top - a % 700)
        return symbol, _block(symbol, range(start, start + 1 + b % 450), version)
    start = max(0, top - a % 80)  # candles with holes, around the newest
    step = 2 + b % 3
    return symbol, _block(symbol, [s for s in range(start, start + 120) if s % step], version)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_the_server_answers_from_the_references_newest_contiguous_run(ops: list[tuple]) -> None:
    handlers, ref = _handlers(), Reference()
    assert handlers.history.capacity == CAPACITY >= SERVING_HISTORY
    newest: dict[str, int] = {}
    calls: list[tuple[str, CandleBlock]] = []
    for op in ops:
        symbol, block = _call(op, newest, calls)
        calls.append((symbol, block))
        ref.merge(symbol, block)
        newest[symbol] = max(newest.get(symbol, -1), _slots(block)[-1])
        want = ref.run(symbol)
        (got,) = handlers._snapshots([(symbol, block)], UNLIMITED)  # merged, features read from the ring
        assert _same(handlers.history.run(symbol), want), op
        if len(want) < SEED.min_history:
            assert got == {}, op
        else:
            assert got == SEED.newest(want.ohlcv, want.newest_ts_ms), op
    for symbol in SYMBOLS:  # every symbol's history, not only the last one called
        assert _same(handlers.history.run(symbol), ref.run(symbol))
    # the same calls in batches of 4 (one merge_many per round): each item's features as if alone
    batched, ref = _handlers(), Reference()
    for start in range(0, len(calls), 4):
        chunk = calls[start : start + 4]
        wanted = []
        for symbol, block in chunk:
            ref.merge(symbol, block)
            want = ref.run(symbol)
            wanted.append(SEED.newest(want.ohlcv, want.newest_ts_ms) if len(want) >= SEED.min_history else {})
        assert batched._snapshots(chunk, UNLIMITED) == wanted, chunk
    for symbol in SYMBOLS:
        assert _same(batched.history.run(symbol), ref.run(symbol))


def test_the_property_reaches_long_runs_and_short_ones() -> None:
    """The generated calls do exercise both answers (guards the property against a vacuous pass)."""
    handlers, ref = _handlers(), Reference()
    newest: dict[str, int] = {}
    calls: list[tuple[str, CandleBlock]] = []
    lengths = []
    for op in [
        ("append", "A", 0, 410, 0),
        ("gap", "A", 3, 10, 0),
        ("restart", "A", 30, 40, 2),
        ("holes", "B", 0, 0, 0),
    ]:
        symbol, block = _call(op, newest, calls)
        ref.merge(symbol, block)
        newest[symbol] = max(newest.get(symbol, -1), _slots(block)[-1])
        lengths.append(len(handlers.history.merge(symbol, block)))
        assert _same(handlers.history.run(symbol), ref.run(symbol))
    assert lengths[0] == SERVING_HISTORY and lengths[1] < MIN_HISTORY and lengths[2] == SERVING_HISTORY
    assert lengths[3] == 1


@pytest.mark.parametrize("capacity", [SERVING_HISTORY, CAPACITY])
def test_the_ring_wraps_around_many_times(capacity: int) -> None:
    h, ref = CandleHistory(capacity=capacity), Reference()
    for start in range(0, 3 * capacity, 7):
        block = _block("A", range(start, start + 7))
        ref.merge("A", block)
        assert _same(h.merge("A", block), ref.run("A"))
