"""Parameter changes as steps that multiply out: runs of serving's per-outcome factors, the
monitor's x0.7 as its own step, a hard limit said out loud; and the parameter_memory asset lists
every step since its previous run, serving's per-outcome sizing included."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from mem_memory import MemoryConfig, Outcome, SignalRequest
from mem_memory.config import DEFAULT_PARAMETERS
from mem_memory.rules.parameters import adjust_after_outcome, apply, performance_monitor
from mem_memory.types import Parameters
from mem_pipelines.learning.assets import parameter_memory
from mem_pipelines.learning.runners import parameter_steps
from mem_pipelines.resources import MemoryStoreResource

T0 = datetime(2025, 6, 1, tzinfo=UTC)


def _outcome(i: int, win: bool) -> Outcome:
    return Outcome(
        decision_id=uuid.UUID(int=i + 1).hex,
        entry_price=100.0,
        exit_price=101.0 if win else 99.0,
        size=0.02,
        pnl=1.0 if win else -1.0,
        pnl_pct=0.01 if win else -0.01,
        exit_reason="time",
        time=T0 + timedelta(minutes=i),
    )


def _history(results: str, cfg: MemoryConfig = MemoryConfig(), start_size: float = 0.02) -> list:
    """Adjustments the engine's rules make for outcomes ``results`` ("W"/"L"; "M" = the monitor fires)."""
    params = Parameters({**DEFAULT_PARAMETERS, "position_size": start_size}, T0)
    out = []
    for i, r in enumerate(results):
        if r == "M":
            adjs = performance_monitor(params, [False] * cfg.monitor_window, T0 + timedelta(minutes=i), cfg)
        else:
            adjs = adjust_after_outcome(params, _outcome(i, r == "W"), T0 + timedelta(minutes=i), cfg)
        params = apply(params, adjs, T0)
        out += adjs
    return out


def test_steps_chain_and_multiply_out() -> None:
    steps = parameter_steps(_history("WLLWM" + "LLW"))
    size = [s for s in steps if s.parameter == "position_size"]
    assert [(s.trigger, s.changes) for s in size] == [("outcome", 4), ("performance_monitor", 1), ("outcome", 3)]
    for a, b in zip(size, size[1:]):
        assert a.end == b.start  # each step starts where the previous ended
    assert size[0].end == pytest.approx(0.02 * 1.02**2 * 0.98**2)
    assert size[0].why == "4 outcomes (2 wins x1.02, 2 losses x0.98)"
    assert size[1].end == pytest.approx(size[1].start * 0.7) and size[1].why.startswith(
        "performance monitor x0.7: win rate 0/20"
    )
    assert size[2].end == pytest.approx(size[2].start * 0.98**2 * 1.02)
    assert math.prod(s.end / s.start for s in size) == pytest.approx(size[-1].end / 0.02)
    [minimum] = [s for s in steps if s.parameter == "ml_confidence_min"]
    assert (minimum.start, minimum.end, minimum.trigger) == (0.6, 0.7, "performance_monitor")


def test_a_run_that_hits_the_floor_says_so() -> None:
    [step] = parameter_steps(_history("LLL", start_size=0.00102))
    assert step.end == 0.001 and step.changes == 1  # clamped once, then no change is logged at the limit
    assert step.why.endswith("held within the limits [0.001, 0.1]")


def test_parameter_memory_lists_servings_steps_since_its_last_run(planted: MemoryStoreResource) -> None:
    instance = dg.DagsterInstance.ephemeral()

    def materialize() -> dict:
        result = dg.materialize([parameter_memory], resources={"memory_store": planted}, instance=instance)
        return result.asset_materializations_for_node("parameter_memory")[0].metadata

    first = materialize()
    assert "performance_monitor" in first["changes_since_last_run"].value  # the monitor's step of this run
    # Serving's per-outcome rule between two runs: three outcomes.
    with planted.engine() as engine:
        for i, pnl in enumerate((1.0, -1.0, -1.0)):
            d = engine.enhance(
                SignalRequest(
                    symbol="BTCUSDT",
                    action="BUY",
                    base_confidence=0.9,
                    price=100.0,
                    time=T0 + timedelta(days=5, hours=i),
                    strategy="momentum_rsi",
                    ml_confidence=0.9,
                    ml_direction="bullish",
                    features={"rsi14": 50.0, "sma20": 0.0},
                )
            )
            engine.record_outcome(
                Outcome(
                    decision_id=d.decision_id,
                    entry_price=100.0,
                    exit_price=100.0 + pnl,
                    size=d.size,
                    pnl=pnl,
                    pnl_pct=pnl / 100,
                    exit_reason="time",
                    time=T0 + timedelta(days=5, hours=i, minutes=30),
                )
            )
    second = materialize()
    since = second["changes_since_last_run"].value
    assert "| position_size | outcome |" in since and "3 outcomes (1 wins x1.02, 2 losses x0.98)" in since
    assert "performance_monitor" not in since  # the first run's step is not listed again
    assert second["last_event_id"].value > first["last_event_id"].value
    assert materialize()["changes_since_last_run"].value == "_none_"
