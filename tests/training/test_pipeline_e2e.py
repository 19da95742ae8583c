"""End to end, in process: shared real candles -> test QuestDB -> Dagster assets -> MLflow.

Two symbols with candles (BTCUSDT, ETHUSDT, the last 33 days of the shared files; ETH with a
planted two-hour gap) and one listed symbol without any (XRPUSDT), the default model
(``hist_gb`` over ``regime_v1``) on a 30-day window with its walk-forward. Checks that the empty
symbol is skipped with a warning, the gap is reported and no row reaches it, the blocking candle
checks ran first, the walk-forward reached MLflow and the Dagster metadata, and the gate's
verdict is the version's description and moved the champion alias exactly when it says so; a
second run's challenger (the same model) is not promoted.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from mlflow import MlflowClient

from mem_core import feature_sets, registry
from mem_core.labels import HORIZON
from mem_core.questdb.store import write_candles
from mem_core.settings import QuestDBSettings
from mem_pipelines.definitions import build_definitions
from mem_pipelines.ingest.csv_source import read_kline_csv
from mem_pipelines.ingest.quality import BLOCKING_CHECKS
from mem_pipelines.resources import MlflowResource, TrainingFramesIOManager
from mem_pipelines.settings import PipelineSettings
from mem_pipelines.training.dataset import CANDLE, row_lookback

from .helpers import champion, description

WITH_CANDLES = ("BTCUSDT", "ETHUSDT")
SYMBOLS = (*WITH_CANDLES, "XRPUSDT")
DAYS = 30
GAP_CANDLES = 24


@pytest.fixture(scope="module")
def planted_gap(questdb: QuestDBSettings, shared_candles: Path) -> tuple[pd.Timestamp, pd.Timestamp]:
    """BTC and ETH candles in the test QuestDB; ETH lacks ``GAP_CANDLES`` candles 12 days before
    its end. Returns the first and last missing slot."""
    import psycopg

    with psycopg.connect(**questdb.pg_conninfo(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS candles")
    gap: tuple[pd.Timestamp, pd.Timestamp] | None = None
    for symbol in WITH_CANDLES:
        frame = read_kline_csv(shared_candles / f"{symbol}-5m.csv.gz").frame
        frame = frame[frame["ts"] >= frame["ts"].max() - pd.Timedelta(days=DAYS + 3)].reset_index(drop=True)
        if symbol == "ETHUSDT":
            first = (frame["ts"].max() - pd.Timedelta(days=12)).floor("5min")
            last = first + (GAP_CANDLES - 1) * CANDLE
            frame = frame[(frame["ts"] < first) | (frame["ts"] > last)].reset_index(drop=True)
            gap = (first, last)
        write_candles(questdb, frame)
    assert gap is not None
    return gap


def _defs(questdb: QuestDBSettings, uri: str, frames: Path) -> dg.Definitions:
    return build_definitions(
        PipelineSettings(symbols=SYMBOLS, questdb=questdb),
        resources={
            "mlflow": MlflowResource(tracking_uri=uri),
            "training_frames": TrainingFramesIOManager(base_dir=str(frames)),
        },
    )


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, folds: int = 5) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("train_and_gate")
    return job.execute_in_process(
        instance=instance,
        run_config={
            "ops": {
                "training_dataset": {"config": {"last_days": DAYS}},
                "reversal_model": {"config": {"walk_forward_folds": folds}},
            }
        },
        raise_on_error=True,
    )


def _meta(result: dg.ExecuteInProcessResult, node: str) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def test_train_and_gate_on_real_candles(
    planted_gap: tuple[pd.Timestamp, pd.Timestamp], questdb: QuestDBSettings, mlflow_uri: str, tmp_path: Path
) -> None:
    defs = _defs(questdb, mlflow_uri, tmp_path / "frames")
    with dg.instance_for_test() as instance:
        result = _run(defs, instance)
        assert result.success

        # the listed symbol without candles: skipped with a warning, in the logs and the metadata
        assert _meta(result, "training_candles")["skipped_symbols"] == ["XRPUSDT"]
        dataset_meta = _meta(result, "training_dataset")
        assert dataset_meta["skipped_symbols"] == ["XRPUSDT"] and dataset_meta["symbols"] == list(WITH_CANDLES)
        warnings = [e.message for e in instance.all_logs(result.run_id) if e.level >= 30]
        assert any("XRPUSDT" in w and "no candles" in w for w in warnings)

        # the candle checks ran before training; the empty symbol fails has_rows (a warning only)
        checks = {
            e.check_name: e
            for e in result.get_asset_check_evaluations()
            if e.asset_key == dg.AssetKey("training_candles")
        }
        assert {n for n, e in checks.items() if e.passed} == set(checks) - {"has_rows"}
        assert checks["has_rows"].severity == dg.AssetCheckSeverity.WARN
        assert checks["has_rows"].metadata["failed_symbols"].value == ["XRPUSDT"]
        assert BLOCKING_CHECKS - {"has_rows"} <= set(checks)

        # the gap: reported, and no ETH row whose candles reach it
        first, last = planted_gap
        assert dataset_meta["gap_count"] == 1
        assert first.isoformat() in dataset_meta["gaps"] and last.isoformat() in dataset_meta["gaps"]
        lookback = row_lookback()
        assert dataset_meta["gap_rows_dropped_per_symbol"] == {"BTCUSDT": 0, "ETHUSDT": HORIZON + lookback - 1}
        dataset: pd.DataFrame = result.output_for_node("training_dataset")
        eth = dataset.loc[dataset["symbol"] == "ETHUSDT", "ts"]
        reach = (eth >= first - HORIZON * CANDLE) & (eth <= last + (lookback - 1) * CANDLE)
        assert not reach.any() and len(eth) == dataset_meta["rows_per_symbol"]["ETHUSDT"]
        assert set(feature_sets.get("regime_v1").names) <= set(dataset.columns)

        model_meta = _meta(result, "reversal_model")
        assert (model_meta["estimator"], model_meta["feature_set"]) == ("hist_gb", "regime_v1")
        assert 0.5 < model_meta["accuracy"] <= 1.0 and 0.5 <= model_meta["baseline_accuracy"] < 1.0
        assert model_meta["walk_forward_folds"] == 5 and model_meta["walk_forward_train_days"] == pytest.approx(
            DAYS / 2, abs=0.5
        )
        # headline first, then tables the UI can sort (not Markdown)
        assert list(model_meta)[:2] == ["headline", "model_version"]
        assert f"v{model_meta['model_version']}: holdout log-loss gain" in model_meta["headline"]
        assert "over the constant base rate" in model_meta["headline"]
        table = model_meta["walk_forward"]
        assert isinstance(table, dg.TableMetadataValue) and len(table.records) == 6
        assert table.records[-1].data["fold"] == "pooled"
        importances = model_meta["feature_importances"]
        assert isinstance(importances, dg.TableMetadataValue)
        assert len(importances.records) == len(feature_sets.get("regime_v1").names)  # permutation (hist_gb)
        assert "permutation" in importances.schema.columns[-1].description
        holdout = {r.data["measure"]: r.data for r in model_meta["holdout"].records}
        gain = holdout["log-loss gain (mnat) over the constant base rate"]
        assert gain["value"] == pytest.approx(model_meta["holdout_log_loss_gain_mnat"], abs=0.01)
        assert (
            model_meta["walk_forward_plot"].startswith("![walk-forward")
            and "data:image/png;base64," in model_meta["walk_forward_plot"]
        )
        assert isinstance(model_meta["walk_forward_pooled_log_loss_gain_mnat"], float)
        assert 0.0 <= model_meta["walk_forward_folds_gain_ci_above_zero"] <= 5

        run_id, version = model_meta["mlflow_run_id"], model_meta["model_version"]
        client = MlflowClient(mlflow_uri)
        run = client.get_run(run_id)
        assert run.data.metrics["holdout_accuracy"] == pytest.approx(model_meta["accuracy"], abs=1e-4)
        assert run.data.params["estimator"] == "hist_gb" and run.data.params["feature_set"] == "regime_v1"
        assert run.data.params["model.min_samples_leaf"] == "300" and run.data.params["model.learning_rate"] == "0.05"
        assert run.data.params["walk_forward.folds"] == "5"
        assert run.data.metrics["walk_forward_pooled_log_loss_gain_mnat"] == pytest.approx(
            model_meta["walk_forward_pooled_log_loss_gain_mnat"], abs=0.01
        )
        assert "holdout_log_loss_gain_mnat_ci_low" in run.data.metrics
        assert len(client.get_metric_history(run_id, "walk_forward_fold_roc_auc")) == 5
        artifacts = {a.path for a in client.list_artifacts(run_id, "walk_forward")}
        assert artifacts == {
            "walk_forward/walk_forward.csv",
            "walk_forward/walk_forward.md",
            "walk_forward/walk_forward.png",
        }
        csv = pd.read_csv(client.download_artifacts(run_id, "walk_forward/walk_forward.csv", str(tmp_path)))
        assert list(csv["fold"])[-1] == "pooled" and len(csv) == 6
        assert {"roc_auc_ci_low", "log_loss_gain_mnat_ci_high", "top_decile_lift", "train_start", "test_end"} <= set(
            csv.columns
        )
        assert run.data.tags["data.symbols"] == ",".join(WITH_CANDLES)
        assert run.data.tags["dagster.run_id"] == result.run_id

        gate = _meta(result, "champion_gate")
        assert description(mlflow_uri, version).startswith(gate["sentence"])
        # one holdout-gain figure: the gate's skill floor is the training's own holdout figure
        assert gate["log_loss_gain_mnat"] == pytest.approx(model_meta["holdout_log_loss_gain_mnat"], abs=0.01)
        comparison = [r.data["measure"] for r in gate["comparison"].records]
        assert comparison[0].startswith("skill floor")
        version_tags = client.get_model_version(registry.MODEL_NAME, version).tags
        assert (version_tags["estimator"], version_tags["feature_set"]) == ("hist_gb", "regime_v1")
        assert version_tags["gate.outcome"] == gate["verdict"] and len(version_tags) <= 8, version_tags
        details = json.loads(Path(client.download_artifacts(run_id, "version_details.json", str(tmp_path))).read_text())
        assert details["walk_forward.folds"] == "5" and details["data.symbols"] == ",".join(WITH_CANDLES)
        if gate["verdict"] == "promoted":
            assert champion(mlflow_uri) == version == gate["champion_after"]
            assert gate["log_loss_gain_ci_low"] > 0
        else:
            assert champion(mlflow_uri) is None and gate["champion_after"] == "none"
            assert gate["sentence"].startswith("Not promoted: the model has no skill")
        first_champion = champion(mlflow_uri)

        # The same training again (a re-execution): the version is reused, not registered twice,
        # and not gated twice.
        versions = len(client.search_model_versions(f"name='{registry.MODEL_NAME}'"))
        repeat = _run(defs, instance)
        assert _meta(repeat, "reversal_model")["model_version"] == version
        assert "not trained or registered again" in _meta(repeat, "reversal_model")["reused"]
        assert len(client.search_model_versions(f"name='{registry.MODEL_NAME}'")) == versions
        assert _meta(repeat, "champion_gate")["verdict"] == gate["verdict"] and champion(mlflow_uri) == first_champion

        # Another training of the same model (without its walk-forward): not promoted over it.
        second = _run(defs, instance, folds=0)
        again = _meta(second, "champion_gate")
        assert again["verdict"] == "rejected"
        new_version = again["challenger_version"]
        assert new_version != version and champion(mlflow_uri) == first_champion
        assert str(client.get_model_version_by_alias(registry.MODEL_NAME, registry.CHALLENGER).version) == new_version
        assert description(mlflow_uri, new_version).startswith(again["sentence"])
        if first_champion is not None:
            assert again["accuracy_margin"] == pytest.approx(0.0) and again["sentence"].startswith("Champion kept")
