"""The learning assets on a real memory store: a planted winning pattern becomes a learned strategy
(with its table in the metadata and strategy_modules.py re-rendered), a losing streak makes the
performance monitor cut sizes — and the sensor's run request runs the job that does it."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from mem_pipelines.definitions import build_definitions
from mem_pipelines.learning.assets import learned_strategies, parameter_memory
from mem_pipelines.learning.sensors import pattern_discovery_sensor, performance_monitor_sensor
from mem_pipelines.resources import MemoryStoreResource
from mem_pipelines.settings import PipelineSettings


def test_assets_learn_and_show_it_in_metadata(planted: MemoryStoreResource) -> None:
    result = dg.materialize([learned_strategies, parameter_memory], resources={"memory_store": planted})
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
    again = dg.materialize([learned_strategies], resources={"memory_store": planted})
    assert again.asset_materializations_for_node("learned_strategies")[0].metadata["created"].value == 0


def test_the_sensor_request_runs_the_discovery_job(planted: MemoryStoreResource) -> None:
    defs = build_definitions(PipelineSettings(), resources={"memory_store": planted})
    instance = dg.DagsterInstance.ephemeral()
    tick = pattern_discovery_sensor(
        dg.build_sensor_context(instance=instance, cursor=None, resources={"memory_store": planted})
    )
    (request,) = tick.run_requests
    job = defs.resolve_job_def("learned_strategies_job")
    run = job.execute_in_process(instance=instance, tags=request.tags)
    assert run.success
    with planted.engine() as engine:
        assert [s.name for s in engine.strategies()] == ["learned_buy_rsi14_low"]


def test_definitions_hold_the_learning_pieces() -> None:
    from mem_pipelines.definitions import defs as load_defs

    defs = load_defs()
    assert {"learned_strategies", "parameter_memory", "replay_report"} <= {
        k.to_user_string() for k in defs.resolve_all_asset_keys()
    }
    assert {s.name for s in defs.sensors} >= {"pattern_discovery_sensor", "performance_monitor_sensor"}
    for name in ("learned_strategies_job", "parameter_memory_job"):
        defs.resolve_job_def(name)


def test_descriptions_state_the_rules_of_the_memorys_default_config() -> None:
    """The numbers come from ``MemoryConfig``; for the default config the text reads as before."""
    described = {
        k.to_user_string(): d for a in (learned_strategies, parameter_memory) for k, d in a.descriptions_by_key.items()
    }
    assert described == {
        "learned_strategies": (
            "Learned strategies in the memory store: pattern discovery over the last 500 closed trades creates, "
            "updates or deprecates them; strategy_modules.py is re-rendered from the specs."
        ),
        "parameter_memory": (
            "Parameter memory: the performance monitor checks the win rate over the last 20 closed trades "
            "(below 45%: sizes x0.7, confidence minimum 0.70) and logs each adjustment with its reason."
        ),
    }
    assert pattern_discovery_sensor.description.endswith("(create/update/deprecate learned strategies).")
    assert performance_monitor_sensor.description == (
        "New closed trades in memory -> performance monitor (win rate over the last 20 trades)."
    )
