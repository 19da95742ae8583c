"""GetModelInfo on the real server: the champion's version, run, estimator, feature set, training
window (label horizon included) and holdout skill, and the identity of the memory store the
server writes; without a champion it still answers (ML not usable, with the reason)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mem_core.features import FEATURE_NAMES, compute_features
from mem_core.labels import HORIZON, reversal_labels
from mem_pipelines.training.dataset import build_dataset
from mem_serving.client import MemClient
from mem_serving.model_info import public_location, training_window

from .helpers import TRAIN_ROWS, promote
from .stack import ModelStore, Stack, start_stack


def _wait_for(client: MemClient, version: str, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while client.get_model_info().champion_version != version:
        assert time.monotonic() < deadline, f"the server did not swap to version {version}"
        time.sleep(0.1)


def test_model_info_names_the_champion_its_window_and_the_store(
    stack: Stack, model_store: ModelStore, btc: pd.DataFrame
) -> None:
    train_candles = btc.iloc[:TRAIN_ROWS].reset_index(drop=True)
    dataset = build_dataset({"BTCUSDT": (compute_features(train_candles), reversal_labels(train_candles))})
    first, last = dataset["ts"].min(), dataset["ts"].max()
    with MemClient(stack.address, timeout_s=10) as client:
        info = client.get_model_info()
    assert info.ml_usable and info.champion_version == model_store.v1 and info.run_id
    assert info.reason == f"serving version {model_store.v1}"
    assert info.estimator == "seed_gbc" and info.feature_set == "seed"
    assert info.feature_names == FEATURE_NAMES
    w = info.training_window
    assert w is not None and w.label_horizon == HORIZON
    assert w.first_candle == first.to_pydatetime() and w.last_candle == last.to_pydatetime()
    assert w.last_label_candle == (last + HORIZON * pd.Timedelta(minutes=5)).to_pydatetime()
    assert w.last_label_candle <= train_candles["ts"].iloc[-1].to_pydatetime()  # labels need candles that exist
    assert 0.0 < info.holdout_skill["accuracy"] <= 1.0 and "baseline_accuracy" in info.holdout_skill
    assert info.walk_forward_skill == {}  # not logged by this training
    assert info.memory_store.store_id == stack.store.store_id != ""
    assert info.memory_store.location == str(stack.memory_db.resolve())
    assert info.registry == stack.uri


def test_a_new_champion_changes_the_answer(stack: Stack, model_store: ModelStore) -> None:
    with MemClient(stack.address, timeout_s=10) as client:
        first = client.get_model_info()
        promote(stack.uri, model_store.v2)
        _wait_for(client, model_store.v2)
        second = client.get_model_info()
    assert second.run_id != first.run_id and second.memory_store == first.memory_store


def test_without_a_champion_it_answers_with_the_reason(
    empty_mlflow_uri: str, tmp_path: Path, warm_features: None
) -> None:
    s = start_stack(empty_mlflow_uri, tmp_path / "memory.db")
    try:
        with MemClient(s.address, timeout_s=10) as client:
            info = client.get_model_info()
    finally:
        s.channel.close()
        s.running.stop(grace=1.0)
    assert not info.ml_usable and "champion" in info.reason
    assert info.champion_version == "" and info.training_window is None and info.holdout_skill == {}
    assert info.memory_store.store_id == s.store.store_id != ""


def test_window_from_lineage_and_locations_without_secrets() -> None:
    w = training_window(
        {"data.start": "2025-05-01T00:00:00+00:00", "data.end": "2025-05-31T23:00:00+00:00", "label.horizon": "10"}
    )
    assert w is not None and w.last_label_candle == pd.Timestamp("2025-05-31T23:50", tz="UTC").to_pydatetime()
    assert training_window({"data.start": "2025-05-01"}) is None
    assert (
        public_location("postgresql://mlflow:s3cret@db.internal:5432/mlflow") == "postgresql://db.internal:5432/mlflow"
    )
    assert public_location("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
    assert public_location("http://tracking:5000") == "http://tracking:5000"
