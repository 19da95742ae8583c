"""The pure ``decide``: same inputs, same decision; and the record it builds unchecked always
passes the checks a stored decision must pass (it is built with ``trusted``)."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from mem_memory import Decision, MemoryConfig, Parameters, Similar, decide
from mem_memory.config import PARAMETER_LIMITS
from mem_memory.decide import decide_many, new_decision_ids
from mem_memory.types import Condition, StrategySpec, StrategyStats

from .helpers import request

unit = st.floats(0.0, 1.0, allow_nan=False)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG = MemoryConfig()


@st.composite
def parameters(draw: st.DrawFn) -> Parameters:
    values = {k: draw(st.floats(lo, hi, allow_nan=False)) for k, (lo, hi) in PARAMETER_LIMITS.items()}
    return Parameters({**CONFIG.parameters, **values}, T0)


@st.composite
def strategies(draw: st.DrawFn) -> StrategySpec | None:
    if draw(st.booleans()):
        return None
    return StrategySpec(
        name="learned_1",
        conditions=(Condition("rsi14", "<", 30.0),),
        action="BUY",
        confidence=draw(unit),
        size=draw(st.floats(0.001, 0.1)),
        stop_loss_pct=draw(st.floats(0.001, 0.1)),
        take_profit_pct=draw(st.floats(0.001, 0.2)),
        stats=StrategyStats(),
        created_at=T0,
        updated_at=T0,
    )


@settings(max_examples=200, deadline=None)
@given(
    action=st.sampled_from(["BUY", "SELL", "HOLD"]),
    base=unit,
    ml=st.none() | unit,
    direction=st.sampled_from(["bullish", "bearish", None]),
    price=st.floats(1e-6, 1e7, allow_nan=False),
    params=parameters(),
    spec=strategies(),
    sim=st.none()
    | st.integers(0, 50).flatmap(lambda n: st.builds(Similar, st.just(n), st.integers(0, n), st.just(()))),
    minutes=st.integers(0, 100_000),
)
def test_decide_is_pure_and_its_record_is_valid(action, base, ml, direction, price, params, spec, sim, minutes) -> None:
    req = request(
        action=action, base=base, ml=ml, direction=direction, price=price, time=T0 + timedelta(minutes=minutes)
    )
    spec = spec if action == "BUY" else None
    sim = sim if action != "HOLD" else None
    d = decide(req, params, spec, sim, CONFIG, "d-1")
    assert decide(req, params, spec, sim, CONFIG, "d-1") == d
    assert Decision.from_dict(d.to_dict()) == d  # the checked constructor accepts it, unchanged
    assert Decision(**{f: getattr(d, f) for f in d.__slots__}) == d  # type: ignore[attr-defined]


@st.composite
def features(draw: st.DrawFn) -> dict[str, float]:
    """Snapshots in every regime of the adapter (high volatility, uptrend, choppy, normal)."""
    return {
        "hl_range": draw(st.sampled_from([0.001, 0.03])),
        "sma20": draw(st.sampled_from([0.001, 0.012])),
        "sma50": 0.025,
        "macd_hist": draw(st.sampled_from([-0.1, 0.2])),
        "rsi14": draw(st.sampled_from([30.0, 50.0])),
    }


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.integers(1, 12))
def test_decide_many_equals_decide_item_by_item(data: st.DataObject, n: int) -> None:
    """The batch form shares sizings, adaptations and minimums between items and inlines the rules'
    arithmetic: on batches mixing two parameter sets, two strategies, regimes, strategy families,
    ML present or absent in both directions and memory silent or not, every decision equals
    ``decide`` of that item alone."""
    param_sets = [data.draw(parameters()), data.draw(parameters())]
    specs = [data.draw(strategies()), data.draw(strategies())]
    requests, retrieved = [], []
    for i in range(n):
        action = data.draw(st.sampled_from(["BUY", "SELL", "HOLD"]))
        req = request(
            symbol=f"S{i}USDT",
            action=action,
            base=data.draw(unit),
            ml=data.draw(st.none() | unit),
            direction=data.draw(st.sampled_from(["bullish", "bearish", None])),
            price=data.draw(st.floats(1e-3, 1e6)),
            features=data.draw(features()),
            strategy=data.draw(st.sampled_from(["momentum", "mean_reversion", "bench", ""])),
            time=T0 + timedelta(minutes=i),
        )
        req = replace(req, ml_absent_reason=data.draw(st.sampled_from(["", "no champion model"])))
        spec = data.draw(st.sampled_from(specs)) if action == "BUY" else None
        n_similar = data.draw(st.integers(0, 12))  # below and above min_similar (5)
        sim = None if action == "HOLD" else Similar(n_similar, data.draw(st.integers(0, n_similar)), ())
        requests.append(req)
        retrieved.append((data.draw(st.sampled_from(param_sets)), spec, sim))
    ids = [f"d-{i}" for i in range(n)]
    alone = [decide(r, p, s, m, CONFIG, d) for r, (p, s, m), d in zip(requests, retrieved, ids, strict=True)]
    batch = decide_many(requests, retrieved, CONFIG, ids)
    assert batch == alone and repr(batch) == repr(alone)  # repr: -0.0 is not 0.0


def test_new_decision_ids_are_distinct_version_7_uuids_in_time_order() -> None:
    before = int(time.time() * 1000)
    ids = new_decision_ids(2000)
    assert len(set(ids)) == 2000 and new_decision_ids(0) == []
    for n in (1, 2, 63, 64, 65):  # one by one below 64, column by column from there
        ids += new_decision_ids(n)
    after = int(time.time() * 1000)
    for i in ids:
        u = uuid.UUID(i)
        assert (u.version, u.variant, str(u)) == (7, uuid.RFC_4122, i)
        assert before <= int.from_bytes(u.bytes[:6], "big") <= after  # the Unix time in ms, first
    time.sleep(0.002)
    assert min(new_decision_ids(100)) > max(ids)  # a later batch sorts after: the indexes grow at their end
