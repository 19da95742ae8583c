"""Data quality gates training: a bad candle stops ``train_and_gate`` before any feature, a symbol
without candles fails its candle checks, gaps are found and no dataset row reaches one."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from mem_core import registry
from mem_core.feature_sets import SEED
from mem_core.labels import HORIZON
from mem_core.questdb.store import write_candles
from mem_core.settings import QuestDBSettings
from mem_pipelines.definitions import build_definitions
from mem_pipelines.ingest import quality
from mem_pipelines.ingest.synthetic import synthetic_candles
from mem_pipelines.resources import MlflowResource, TrainingFramesIOManager
from mem_pipelines.settings import PipelineSettings
from mem_pipelines.training.dataset import CANDLE, Gap, assemble_dataset, find_gaps, spans_gap

START = pd.Timestamp("2025-06-01", tz="UTC")


def _defs(questdb: QuestDBSettings, symbols: tuple[str, ...], uri: str, frames: Path) -> dg.Definitions:
    return build_definitions(
        PipelineSettings(symbols=symbols, questdb=questdb),
        resources={
            "mlflow": MlflowResource(tracking_uri=uri),
            "training_frames": TrainingFramesIOManager(base_dir=str(frames)),
        },
    )


def test_a_bad_candle_stops_training_before_any_feature(
    fresh_questdb: QuestDBSettings, mlflow_uri: str, tmp_path: Path
) -> None:
    candles = synthetic_candles(["BTCUSDT", "ETHUSDT"], days=3, seed=1, end=START)
    bad = candles.index[(candles["symbol"] == "ETHUSDT")][100]
    candles.loc[bad, "high"] = candles.loc[bad, "low"] * 0.99  # high below low
    write_candles(fresh_questdb, candles)
    defs = _defs(fresh_questdb, ("BTCUSDT", "ETHUSDT"), mlflow_uri, tmp_path / "frames")
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("train_and_gate").execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    failed = checks["high_not_below_low"]
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    assert failed.metadata["failed_symbols"].value == ["ETHUSDT"]
    assert "offending_rows" in failed.metadata
    assert checks["no_nulls"].passed
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events() if e.asset_key}
    assert materialized == {"training_candles"}
    assert registry.champion_version(mlflow_uri) is None
    assert registry.client(mlflow_uri).search_model_versions(f"name='{registry.MODEL_NAME}'") == []


def test_a_symbol_without_candles_fails_its_candle_checks(
    fresh_questdb: QuestDBSettings, mlflow_uri: str, tmp_path: Path
) -> None:
    write_candles(fresh_questdb, synthetic_candles(["BTCUSDT"], days=1, seed=1, end=START))
    defs = _defs(fresh_questdb, ("BTCUSDT", "XRPUSDT"), mlflow_uri, tmp_path / "frames")
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("candles_job").execute_in_process(
            instance=instance, partition_key="XRPUSDT", raise_on_error=False
        )
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations() if e.check_name in quality.CHECKS}
    assert checks["has_rows"] is False
    assert {name for name, passed in checks.items() if not passed} == {"has_rows"}


def test_gaps_are_found_and_the_rows_reaching_them_dropped() -> None:
    ts = pd.Series(pd.date_range(START, periods=2000, freq="5min"))
    missing = ts.iloc[1000:1006]  # 6 candles: 10:... slots 1000..1005
    kept = ts.drop(missing.index).reset_index(drop=True)
    gaps = find_gaps(kept)
    assert gaps == [Gap(missing.iloc[0], missing.iloc[-1])] and gaps[0].slots == 6
    assert find_gaps(ts) == []

    lookback = 400
    mask = spans_gap(kept, gaps, lookback, HORIZON)
    # rows whose label reaches the gap (10 before it) and whose features do (399 after it)
    assert mask.sum() == HORIZON + lookback - 1
    reached = kept[mask]
    assert reached.iloc[0] == missing.iloc[0] - HORIZON * CANDLE
    assert reached.iloc[-1] == missing.iloc[-1] + (lookback - 1) * CANDLE

    rng = np.random.default_rng(0)
    feats = pd.DataFrame(rng.random((len(kept), len(SEED.names))), columns=list(SEED.names))
    feats.insert(0, "ts", kept)
    labels = pd.DataFrame({"ts": kept, "label": rng.integers(0, 2, len(kept)), "direction": "bullish"})
    other = feats.assign(ts=ts[: len(kept)].to_numpy())
    built = assemble_dataset(
        {"ETHUSDT": (feats, labels), "BTCUSDT": (other, labels.assign(ts=other["ts"]))},
        start=START + pd.Timedelta(hours=2),
        gaps={"ETHUSDT": gaps},
        lookback=lookback,
    )
    assert built.dropped == {"BTCUSDT": 0, "ETHUSDT": HORIZON + lookback - 1}
    assert [(g.symbol, g.gap, g.rows_dropped) for g in built.gaps] == [("ETHUSDT", gaps[0], HORIZON + lookback - 1)]
    eth = built.data.loc[built.data["symbol"] == "ETHUSDT", "ts"]
    assert not eth.isin(reached).any()
    assert len(eth) == (kept >= START + pd.Timedelta(hours=2)).sum() - mask.sum()


def test_a_gap_outside_the_window_drops_nothing() -> None:
    window_end_hours = 60
    ts = pd.Series(pd.date_range(START, periods=2000, freq="5min"))
    kept = ts.drop(ts.index[1500:1510]).reset_index(drop=True)
    feats = pd.DataFrame({"ts": kept, "x": 1.0})
    labels = pd.DataFrame({"ts": kept, "label": 0, "direction": "bullish"})
    built = assemble_dataset(
        {"ETHUSDT": (feats, labels)},
        end=START + pd.Timedelta(hours=window_end_hours),
        gaps={"ETHUSDT": find_gaps(kept)},
        lookback=400,
    )
    assert built.dropped == {"ETHUSDT": 0} and built.gaps == []
    assert len(built.data) == window_end_hours * 12
