"""Definitions: what the training domain offers, the schedule, and the gate asset on failure."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest
from mlflow import MlflowClient

from mem_core import estimators, registry
from mem_pipelines.ingest import quality
from mem_pipelines.resources import MlflowResource, QuestDBResource, TrainingFramesIOManager
from mem_pipelines.training.assets import champion_gate
from mem_pipelines.training.defs import training_defs

from .helpers import CHAMPION_COL, Unscorable, champion, description, echo, gate_dataset, register


def _defs() -> dg.Definitions:
    resources = {"questdb": QuestDBResource(), "mlflow": MlflowResource(), "training_frames": TrainingFramesIOManager()}
    return dg.Definitions.merge(training_defs(("BTCUSDT", "ETHUSDT", "SOLUSDT")), dg.Definitions(resources=resources))


def test_definitions_load_with_assets_checks_job_and_schedule() -> None:
    defs = _defs()
    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert {"training_candles", "features", "labels", "training_dataset", "reversal_model", "champion_gate"} <= keys
    graph = defs.resolve_asset_graph()
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    candle_rules = {name for asset, name in checks if asset == "training_candles"}
    assert candle_rules == set(quality.CHECKS)
    assert checks - {("training_candles", n) for n in candle_rules} == {
        ("training_dataset", "features_are_finite"),
        ("training_dataset", "label_rate_is_sane"),
        ("reversal_model", "holdout_is_purged"),
    }
    blocking = {k.name for k in graph.asset_check_keys if graph.get_check_spec(k).blocking}
    assert blocking == (quality.BLOCKING_CHECKS - {"has_rows"}) | {
        "features_are_finite",
        "label_rate_is_sane",
        "holdout_is_purged",
    }
    assert defs.resolve_job_def("train_and_gate") is not None


def test_train_and_gate_covers_every_symbol_without_a_partition() -> None:
    defs = _defs()
    assert defs.resolve_job_def("train_and_gate").partitions_def is None
    for key in ("training_candles", "features", "labels"):
        node = defs.resolve_assets_def(key)
        assert node.partitions_def is None
        assert node.metadata_by_key[dg.AssetKey(key)]["symbols"].value == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def test_daily_schedule_is_two_am_utc_on_the_last_180_days_over_all_symbols() -> None:
    schedule = _defs().resolve_schedule_def("daily_retrain")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.job_name == "train_and_gate"
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=pd.Timestamp("2026-01-02T02:00:00Z").to_pydatetime()
        )
        request = schedule(context)
    assert request.run_config["ops"]["training_dataset"]["config"]["last_days"] == 180
    assert request.partition_key is None and not any(k.startswith("dagster/asset_partition") for k in request.tags)


def test_gate_asset_failure_keeps_champion_and_fails_loudly(mlflow_uri: str) -> None:
    first = register(mlflow_uri, echo(CHAMPION_COL))
    MlflowClient(mlflow_uri).set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, first)
    broken = register(mlflow_uri, echo(3, Unscorable))
    data = gate_dataset(500, 200, 50)

    @dg.asset(name="training_dataset")
    def dataset_stub() -> pd.DataFrame:
        return data

    @dg.asset(name="reversal_model")
    def model_stub() -> dict:
        return {"version": broken, "holdout_fraction": 0.2, "horizon": 10}

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [dataset_stub, model_stub, champion_gate],
            resources={"mlflow": MlflowResource(tracking_uri=mlflow_uri)},
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
        failures = [
            e.event_specific_data.user_failure_data
            for e in result.all_events
            if e.event_type_value == "STEP_FAILURE" and e.step_key == "champion_gate"
        ]
    assert champion(mlflow_uri) == first
    assert failures and failures[0].metadata["verdict"].value == "error"
    assert failures[0].metadata["champion_version"].value == first
    tags = MlflowClient(mlflow_uri).get_model_version(registry.MODEL_NAME, broken).tags
    assert tags["gate.outcome"] == "error"
    assert description(mlflow_uri, broken).startswith("Not promoted: the gate failed")


def test_unknown_estimator_is_refused_not_swapped() -> None:
    with pytest.raises(ValueError, match="unknown estimator 'xgboost'"):
        estimators.create("xgboost")
    seed = estimators.create().estimator
    assert type(seed).__name__ == "GradientBoostingClassifier"
    assert (seed.n_estimators, seed.max_depth, seed.learning_rate, seed.min_samples_split, seed.random_state) == (
        200,
        5,
        0.1,
        20,
        42,
    )
