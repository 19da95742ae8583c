"""A batch's retrieval (``MemoryEngine._prepare``): the strategies of an action sorted once
(``WorkingMemory.candidates`` + ``first_match``) pick the strategy ``matching(...)[0]`` picks,
and ``similar_to_nothing`` holds only when every query answers nothing."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from mem_memory.index import Similar, WorkingMemory, first_match
from mem_memory.types import OPS, Condition, StrategySpec, StrategyStats

from .helpers import make_decision, outcome

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
