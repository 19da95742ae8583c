"""A second model type end to end, through the model interface only: ``hist_gb`` trained on real
BTCUSDT candles -> logged and registered in a real MLflow SQLite registry -> promoted by the gate
-> the real gRPC server answers PredictReversal with that model's own probability. A champion on a
feature set serving does not compute is then refused, and the server keeps answering."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from mem_core import registry
from mem_core.feature_sets import SEED
from mem_core.features import SERVING_HISTORY, compute_features, latest_features
from mem_core.labels import reversal_labels
from mem_core.model import log_estimator
from mem_pipelines.training.dataset import build_dataset
from mem_pipelines.training.gate_runner import run_gate
from mem_pipelines.training.mlflow_logging import train_and_log
from mem_serving.api import pb

from .helpers import TRAIN_ROWS, candles_pb, promote
from .stack import start_stack

SYMBOL = "BTCUSDT"


def _register_on_unknown_set(uri: str, model, X: np.ndarray) -> str:
    """The same estimator registered as if trained on a feature set this code does not have."""
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    with mlflow.start_run(experiment_id=registry.ensure_experiment(uri)):
        mv = mlflow.register_model(log_estimator(model, X), registry.MODEL_NAME, await_registration_for=0)
    client = MlflowClient(uri)
    tags = {"estimator": "hist_gb", "feature_set": "rich", "feature_names": json.dumps(list(SEED.names))}
    for key, value in tags.items():
        client.set_model_version_tag(registry.MODEL_NAME, mv.version, key, value)
    return str(mv.version)


def test_hist_gb_trained_gated_and_served(
    btc: pd.DataFrame,
    serve_candles: pd.DataFrame,
    tmp_path: Path,
    warm_features: None,
    new_mlflow_store: Callable[[Path], str],
) -> None:
    uri = new_mlflow_store(tmp_path / "mlflow.db")
    candles = btc.iloc[:TRAIN_ROWS].reset_index(drop=True)
    dataset = build_dataset({SYMBOL: (compute_features(candles), reversal_labels(candles))})
    result = train_and_log(dataset, tracking_uri=uri, estimator="hist_gb", feature_set="seed")  # its default parameters
    client = MlflowClient(uri)
    run = client.get_run(result.run_id)
    assert (run.data.params["estimator"], run.data.params["feature_set"]) == ("hist_gb", "seed")
    assert run.data.params["model.max_iter"] == "250" and run.data.params["model.early_stopping"] == "False"
    tags = client.get_model_version(registry.MODEL_NAME, result.version).tags
    assert (tags["estimator"], tags["feature_set"]) == ("hist_gb", "seed")

    outcome = run_gate(dataset, result.version, tracking_uri=uri)
    assert outcome.challenger_version == result.version and outcome.verdict.sentence
    if not outcome.promoted:  # 6,000 rows of the seed's features may not pass the skill floor:
        promote(uri, result.version)  # serving the type is what this test is about
    champion = registry.load_champion(uri)
    assert champion is not None and champion.estimator == "hist_gb"

    stack = start_stack(uri, tmp_path / "memory" / "memory.db")
    try:
        served = stack.handlers.models.model
        assert served is not None and served.version == result.version
        assert (served.estimator, served.feature_set.name, served.compiled) == ("hist_gb", "seed", True)
        for end in (SERVING_HISTORY, SERVING_HISTORY + 97, SERVING_HISTORY + 311, len(serve_candles)):
            window = serve_candles.iloc[end - SERVING_HISTORY : end].reset_index(drop=True)
            reply = stack.stub.PredictReversal(
                pb.PredictReversalRequest(symbol=f"W{end}", candles=candles_pb(window)), timeout=30
            )
            values = latest_features(window)
            x = np.array([[values[name] for name in SEED.names]])
            expected = float(result.model.predict_proba(x)[0])
            assert reply.model_version == result.version
            assert abs(reply.confidence - expected) <= 1e-9
            assert abs(reply.confidence - float(champion.predict_proba(x)[0])) <= 1e-9
            assert reply.is_reversal == (expected >= 0.5)

        # a champion trained on a feature set serving does not compute: refused, hist_gb stays
        unknown = _register_on_unknown_set(uri, result.model, SEED.matrix(dataset))
        promote(uri, unknown)
        assert not stack.handlers.models.refresh()
        assert stack.handlers.models.version == result.version
        assert f"champion version {unknown} refused: unknown feature set 'rich'" in str(
            stack.handlers.models.last_error
        )
        window = serve_candles.iloc[-SERVING_HISTORY:].reset_index(drop=True)
        reply = stack.stub.PredictReversal(
            pb.PredictReversalRequest(symbol="AFTER", candles=candles_pb(window)), timeout=30
        )
        assert reply.model_version == result.version
    finally:
        stack.channel.close()
        stack.running.stop(grace=1.0)
