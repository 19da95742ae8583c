"""The learning assets on a real memory store: a planted winning pattern becomes a learned strategy
(with its table in the metadata and strategy_modules.py re-rendered), a losing streak makes the
performance monitor cut sizes — and the sensor's run request runs the job that does it."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from mem_pipelines.learning.defs import learning_defs
from mem_pipelines.learning.resources import MemoryStoreResource
from mem_pipelines.learning.sensors import pattern_discovery_sensor
from mem_pipelines.resources import QuestDBResource
from mem_pipelines.training.assets import MlflowResource

T0 = datetime(2025, 6, 1, tzinfo=UTC)


def _plant(store, n: int = 240, seed: int = 7) -> None:
    """BUY trades: RSI in the low third always wins, elsewhere 30% win; the last 20 trades lose."""
    from mem_memory import Decision, Outcome

    rng = np.random.default_rng(seed)
    decisions, outcomes = [], []
    for i in range(n):
        rsi = float(rng.uniform(0, 100))
        last_block = i >= n - 20
        if last_block:
            rsi = float(rng.uniform(70, 100))
        win = (rsi < 30 or rng.random() < 0.3) and not last_block
        did = uuid.UUID(int=i + 1).hex
        t = T0 + timedelta(minutes=5 * i)
        decisions.append(
            Decision(
                decision_id=did, time=t, symbol="BTCUSDT", strategy="momentum_rsi", action="BUY", base_action="BUY",
                price=100.0, base_confidence=0.6, ml_confidence=0.6, memory_confidence=None, confidence=0.6, size=0.02,
                stop_loss=98.0, take_profit=104.0, stop_loss_pct=0.02, take_profit_pct=0.04, reasoning="planted",
                features={"rsi14": rsi, "sma20": float(rng.normal(0, 0.01))},
            )
        )
        pnl = 2.0 if win else -1.0
        outcomes.append(
            Outcome(decision_id=did, entry_price=100.0, exit_price=101.0 if win else 99.5, size=0.02, pnl=pnl,
                    pnl_pct=pnl / 100, exit_reason="target" if win else "stop", time=t + timedelta(minutes=30))
        )
    store.bulk_append(decisions, outcomes)


@pytest.fixture
def memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MemoryStoreResource:
    monkeypatch.delenv("MEM_MEMORY_KEY", raising=False)
    resource = MemoryStoreResource(path=str(tmp_path / "memory" / "memory.db"))
    with resource.store() as store:
        _plant(store)
    return resource


def test_assets_learn_and_show_it_in_metadata(memory: MemoryStoreResource) -> None:
    from mem_pipelines.learning.assets import learned_strategies, parameter_memory

    result = dg.materialize([learned_strategies, parameter_memory], resources={"memory_store": memory})
    assert result.success
    meta = result.asset_materializations_for_node("learned_strategies")[0].metadata
    assert meta["created"].value == 1 and meta["active"].value == 1
    assert "learned_buy_rsi14_low" in meta["active_strategies"].value
    assert "created" in meta["what_changed"].value
    module = Path(meta["strategy_modules"].value)
    assert module.name == "strategy_modules.py" and "class " in module.read_text()

    monitor = result.asset_materializations_for_node("parameter_memory")[0].metadata
    assert monitor["adjustments"].value == 2
    assert monitor["recent_win_rate"].value == 0.0
    assert "position_size" in monitor["what_changed"].value and "win rate 0/20" in monitor["what_changed"].value

    # A second discovery run on the same trades changes nothing.
    again = dg.materialize([learned_strategies], resources={"memory_store": memory})
    assert again.asset_materializations_for_node("learned_strategies")[0].metadata["created"].value == 0


def test_the_sensor_request_runs_the_discovery_job(memory: MemoryStoreResource) -> None:
    defs = learning_defs({"memory_store": memory, "questdb": QuestDBResource(), "mlflow": MlflowResource()})
    instance = dg.DagsterInstance.ephemeral()
    tick = pattern_discovery_sensor(
        dg.build_sensor_context(instance=instance, cursor=None, resources={"memory_store": memory})
    )
    (request,) = tick.run_requests
    job = defs.resolve_job_def("learned_strategies_job")
    run = job.execute_in_process(instance=instance, tags=request.tags)
    assert run.success
    with memory.engine() as engine:
        assert [s.name for s in engine.strategies()] == ["learned_buy_rsi14_low"]


def test_definitions_hold_the_learning_pieces() -> None:
    from mem_pipelines.definitions import defs

    assert {"learned_strategies", "parameter_memory", "replay_report"} <= {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert {s.name for s in defs.sensors} >= {"pattern_discovery_sensor", "performance_monitor_sensor"}
    for name in ("learned_strategies_job", "parameter_memory_job"):
        defs.resolve_job_def(name)
