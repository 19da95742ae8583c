"""End to end, in process: shared real candles -> test QuestDB -> Dagster assets -> MLflow.

Two symbols (BTCUSDT, ETHUSDT), the last 30 days of the shared files, the seed's
model. Checks the MLflow run, the registered version, the champion alias and
the Dagster metadata (accuracy and baseline), and that a second run's challenger goes through the
gate without disturbing the champion unless the gate says so.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from mlflow import MlflowClient

from mem_core import registry
from mem_core.questdb.store import write_candles
from mem_core.settings import QuestDBSettings
from mem_pipelines.definitions import build_definitions
from mem_pipelines.ingest.csv_source import read_kline_csv
from mem_pipelines.resources import MlflowResource, TrainingFramesIOManager
from mem_pipelines.settings import PipelineSettings

SYMBOLS = ("BTCUSDT", "ETHUSDT")
DAYS = 30


@pytest.fixture(scope="module")
def loaded_questdb(questdb: QuestDBSettings, shared_candles: Path) -> QuestDBSettings:
    import psycopg

    with psycopg.connect(**questdb.pg_conninfo(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS candles")
    for symbol in SYMBOLS:
        frame = read_kline_csv(shared_candles / f"{symbol}-5m.csv.gz").frame
        cut = frame["ts"].max() - pd.Timedelta(days=DAYS)
        write_candles(questdb, frame[frame["ts"] >= cut].reset_index(drop=True))
    return questdb


def _defs(questdb: QuestDBSettings, uri: str, frames: Path) -> dg.Definitions:
    return build_definitions(
        PipelineSettings(symbols=SYMBOLS, questdb=questdb),
        resources={
            "mlflow": MlflowResource(tracking_uri=uri),
            "training_frames": TrainingFramesIOManager(base_dir=str(frames)),
        },
    )


def _run(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("train_and_gate")
    return job.execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": SYMBOLS[0], "dagster/asset_partition_range_end": SYMBOLS[-1]},
        run_config={"ops": {"training_dataset": {"config": {"last_days": DAYS}}}},
        raise_on_error=True,
    )


def test_train_and_gate_on_real_candles(loaded_questdb: QuestDBSettings, mlflow_uri: str, tmp_path: Path) -> None:
    defs = _defs(loaded_questdb, mlflow_uri, tmp_path / "frames")
    with dg.instance_for_test() as instance:
        result = _run(defs, instance)
        assert result.success

        model_meta = result.asset_materializations_for_node("reversal_model")[0].metadata
        accuracy = model_meta["accuracy"].value
        baseline = model_meta["baseline_accuracy"].value
        assert 0.5 < accuracy <= 1.0 and 0.5 <= baseline < 1.0
        assert "| feature | importance |" in model_meta["feature_importances"].value
        assert "reversal" in model_meta["confusion_matrix"].value
        run_id = model_meta["mlflow_run_id"].value
        version = model_meta["model_version"].value

        client = MlflowClient(mlflow_uri)
        run = client.get_run(run_id)
        assert run.data.metrics["holdout_accuracy"] == pytest.approx(accuracy)
        assert run.data.metrics["holdout_baseline_accuracy"] == pytest.approx(baseline)
        assert run.data.params["estimator"] == "seed_gbc" and run.data.params["feature_set"] == "seed"
        assert run.data.params["model.n_estimators"] == "200" and run.data.params["model.max_depth"] == "5"
        assert run.data.tags["data.symbols"] == ",".join(SYMBOLS)
        assert run.data.tags["dagster.run_id"] == result.run_id
        assert len(run.data.tags["data.sha256"]) == 64
        assert "importance_rsi14" in run.data.metrics

        assert str(client.get_model_version_by_alias(registry.MODEL_NAME, registry.CHALLENGER).version) == version
        assert str(client.get_model_version_by_alias(registry.MODEL_NAME, registry.CHAMPION).version) == version
        gate_meta = result.asset_materializations_for_node("champion_gate")[0].metadata
        assert gate_meta["verdict"].value == "promoted" and gate_meta["champion_after"].value == version

        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks == {"features_are_finite": True, "label_rate_is_sane": True, "holdout_is_purged": True}

        loaded = registry.load_champion(mlflow_uri)
        assert loaded is not None and loaded.version == version and len(loaded.feature_ranges) == 12
        assert loaded.estimator == "seed_gbc" and loaded.feature_set.name == "seed"
        version_tags = client.get_model_version(registry.MODEL_NAME, version).tags
        assert (version_tags["estimator"], version_tags["feature_set"]) == ("seed_gbc", "seed")

        # A second run on the same data trains the same model: not 2 points better -> rejected.
        second = _run(defs, instance)
        again = second.asset_materializations_for_node("champion_gate")[0].metadata
        assert again["verdict"].value == "rejected" and again["margin"].value == pytest.approx(0.0)
        new_version = again["challenger_version"].value
        assert new_version != version
        assert str(client.get_model_version_by_alias(registry.MODEL_NAME, registry.CHAMPION).version) == version
        assert str(client.get_model_version_by_alias(registry.MODEL_NAME, registry.CHALLENGER).version) == new_version
        tags = client.get_model_version(registry.MODEL_NAME, new_version).tags
        assert tags["gate.verdict"] == "rejected" and tags["gate.champion_version"] == version
