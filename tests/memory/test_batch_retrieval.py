"""A batch's retrieval (``MemoryEngine._prepare``): the strategies of an action sorted once
(``WorkingMemory.candidates`` + ``first_match``) pick the strategy ``matching(...)[0]`` picks,
and ``similar_to_nothing`` holds only when every query answers nothing."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mem_memory import index
from mem_memory.engine import MemoryEngine
from mem_memory.index import Similar, WorkingMemory, first_match
from mem_memory.store import MemoryStore
from mem_memory.types import OPS, Condition, Decision, DecisionView, StrategySpec, StrategyStats

from .helpers import FEATURES as SNAPSHOT
from .helpers import make_decision, outcome, request

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FEATURES = ["rsi14", "sma20", "utc_hour"]
value = st.sampled_from([-1.0, 0.0, 0.5, 1.0, 30.0])  # few values: ties between thresholds and values


@st.composite
def specs(draw: st.DrawFn, i: int) -> StrategySpec:
    conditions = draw(
        st.lists(st.builds(Condition, st.sampled_from(FEATURES), st.sampled_from(OPS), value), min_size=1, max_size=3)
    )
    return StrategySpec(
        name=f"learned_{draw(st.integers(0, 5))}_{i}",
        conditions=tuple(conditions),
        action=draw(st.sampled_from(["BUY", "SELL"])),
        confidence=draw(st.sampled_from([0.2, 0.5, 0.9])),  # ties on confidence: the name decides
        size=0.01,
        stop_loss_pct=0.02,
        take_profit_pct=0.04,
        stats=StrategyStats(),
        created_at=T0,
        updated_at=T0,
        deprecated=draw(st.booleans()),
    )


@settings(max_examples=300, deadline=None)
@given(data=st.data(), n=st.integers(0, 8))
def test_first_match_of_the_candidates_is_the_first_of_matching(data: st.DataObject, n: int) -> None:
    wm = WorkingMemory(10, 10, 100)
    for i in range(n):
        wm.put_strategy(data.draw(specs(i)))
    for _ in range(5):
        context = {f: data.draw(value) for f in FEATURES if data.draw(st.booleans())}
        for action in ("BUY", "SELL"):
            found = wm.matching(action, context)
            assert first_match(wm.candidates(action), context) == (found[0] if found else None)


def test_similar_to_nothing_until_a_trade_of_that_action_is_indexed() -> None:
    wm = WorkingMemory(10, 10, 100)
    snapshot = {"rsi14": 40.0, "sma20": 0.01}
    assert wm.similar_to_nothing("BUY") and wm.similar_to_nothing("SELL")
    assert wm.similar("BUY", snapshot, 5, 10.0) == Similar(0, 0, ())
    d = make_decision(1, action="BUY", features=snapshot)
    wm.add_closed(d, outcome(d, 0.01))
    assert not wm.similar_to_nothing("BUY")
    assert wm.similar_to_nothing("SELL")
    assert wm.similar("BUY", snapshot, 5, 10.0).n == 1


snapshot = st.dictionaries(st.sampled_from(["rsi14", "sma20", "hl_range", "other"]), value, max_size=4)


def _reference(ring: index.Ring, features: dict[str, float], k: int, radius: float) -> Similar:
    """The definition, walked plainly: float32 distances up to the snapshot's constant (summed
    in feature order), the k smallest, the newer trade first among equal ones, then the radius."""
    f = len(ring.names)
    x = ring.vector(features)
    if ring.n == 0 or f == 0 or np.isnan(x).all() or k <= 0:
        return Similar(0, 0, ())
    z = np.nan_to_num((x - ring.mean) / ring.std).astype(np.float32)
    two_z = z * np.float32(-2.0)
    age = [(ring.pos - 1 - i) % ring.n for i in range(ring.n)]  # 0: the newest trade
    dist = []
    for i in range(ring.n):
        acc = np.float32(0.0)
        for c in range(f):
            acc = np.float32(acc + ring.ZT[c, i] * two_z[c])
        dist.append(np.float32(acc + ring.sq[i]))
    order = sorted(range(ring.n), key=lambda i: (dist[i], age[i]))[:k]
    norm = float(np.einsum("i,i->", z, z))
    kept = [i for i in order if float(dist[i]) + norm <= radius * radius * f]
    return Similar(len(kept), int(ring.win[kept].sum()), tuple(ring.ids[i] for i in kept))


@settings(max_examples=200, deadline=None)
@given(
    trades=st.lists(st.tuples(snapshot, st.booleans()), max_size=40),
    queries=st.lists(snapshot, max_size=12),
    k=st.integers(1, 6),
    radius=st.sampled_from([0.1, 1.0, 1.5, 10.0]),
)
def test_similar_many_answers_as_similar_does_and_as_the_definition(
    trades: list[tuple[dict[str, float], bool]], queries: list[dict[str, float]], k: int, radius: float
) -> None:
    """Same neighbours, wins and ids in the same order as one query at a time and as a plain
    reference, on rings with repeated snapshots (ties in distance: the newer trade first), missing
    features, queries on nothing indexed, and a ring that wrapped."""
    wm = WorkingMemory(10, 10, 32)  # the ring wraps past 32 trades
    for i, (features, win) in enumerate(trades):
        d = make_decision(i, action="BUY", features=features or {"rsi14": 1.0})
        wm.add_closed(d, outcome(d, 0.01 if win else -0.01))
    many = wm.similar_many("BUY", queries, k, radius)
    assert many == [wm.similar("BUY", q, k, radius) for q in queries]
    assert many == [_reference(wm.rings["BUY"], q, k, radius) for q in queries]
    assert wm.similar_many("SELL", queries, k, radius) == [Similar(0, 0, ())] * len(queries)


def test_a_batch_decides_as_its_requests_one_by_one(tmp_path: Path) -> None:
    """On a store with closed BUY and SELL trades in varied conditions, the decisions of one
    batch (``_prepare``, as ``enhance_many`` makes them) equal those of each request alone (its
    own ``similar`` and ``matching``), decision ids and times aside."""
    store = MemoryStore.open(tmp_path / "memory.db")
    try:
        rng = random.Random(7)
        history = [
            make_decision(
                i,
                symbol=f"H{i % 5}USDT",
                action="BUY" if i % 3 else "SELL",
                features={**SNAPSHOT, "rsi14": rng.choice([30.0, 45.0, 60.0]), "sma20": rng.choice([0.001, 0.01])},
            )
            for i in range(120)
        ]
        store.bulk_append(history, [outcome(d, 0.01 if rng.random() < 0.6 else -0.01) for d in history])
        engine = MemoryEngine(store)
        requests = [
            request(
                symbol=f"S{i}USDT",
                action=["BUY", "SELL", "HOLD"][i % 3],
                features={**SNAPSHOT, "rsi14": rng.choice([30.0, 45.0, 60.0]), "sma20": rng.choice([0.001, 0.01])},
            )
            for i in range(40)
        ]
        batch = [d for d, _ in engine._prepare(requests, [""] * len(requests))]
        alone = [d for r in requests for d, _ in engine._prepare([r], [""])]
        assert [replace(d, decision_id="d") for d in batch] == [replace(d, decision_id="d") for d in alone]
        assert any(d.memory_confidence is not None for d in batch)
    finally:
        store.close()


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["decide", "decide_closed", "close"]), st.integers(0, 3), st.integers(0, 30)),
        max_size=40,
    )
)
def test_recent_decisions_with_their_outcomes_follow_a_plain_model(ops: list[tuple[str, int, int]]) -> None:
    """The index keeps the recent decisions and, apart, the outcomes of those closed: what ``last``
    reads equals a plain model's lists of views (3 per symbol, 2 symbols, least recently used out)."""
    wm = WorkingMemory(3, 2, 10)
    model: dict[str, list[DecisionView]] = {}  # symbol -> views, oldest first, in LRU order
    made: dict[int, Decision] = {}
    for op, s, i in ops:
        symbol = f"S{s}USDT"
        if op == "close":
            if i not in made:
                continue
            d = made[i]
            o = outcome(d, 0.01)
            wm.add_outcome(d, o)
            for views in model.values():
                views[:] = [
                    DecisionView(v.decision, o) if v.decision.decision_id == d.decision_id else v for v in views
                ]
            continue
        d = made.setdefault(i, make_decision(i, symbol=symbol))
        o = outcome(d, -0.01) if op == "decide_closed" else None
        wm.add_decision(d, o)
        if any(v.decision.decision_id == d.decision_id for views in model.values() for v in views):
            continue
        views = model.pop(d.symbol, None)
        if views is None and len(model) >= 2:
            model.pop(next(iter(model)))
        model[d.symbol] = (views or [])[-2:] + [DecisionView(d, o)]
    for s in range(4):
        symbol = f"S{s}USDT"
        for n in (0, 1, 3, 5):
            assert wm.last(symbol, n) == model.get(symbol, [])[::-1][:n]
    assert set(wm.open_ids) == {v.decision.decision_id for views in model.values() for v in views}
    assert set(wm.outcomes) <= set(wm.open_ids)


def test_warm_up_compiles_what_a_query_runs() -> None:
    """After ``nearest.warm_up`` (serving's start) a query compiles nothing more."""
    from mem_memory import nearest

    nearest.warm_up()
    compiled = list(nearest.nearest.signatures)
    wm = WorkingMemory(10, 10, 100)
    for i in range(30):
        d = make_decision(i, action="BUY", features={"rsi14": float(i), "sma20": 0.01 * i})
        wm.add_closed(d, outcome(d, 0.01))
    assert wm.similar("BUY", {"rsi14": 3.0, "sma20": 0.02}, 5, 10.0).n == 5
    assert list(nearest.nearest.signatures) == compiled and len(compiled) == 1
