"""The richer model end to end: ``hist_gb`` over ``regime_v1`` trained on 20,000 real BTCUSDT
candles -> registered in a real MLflow SQLite registry -> champion -> the real gRPC server computes
the 22 features of the candles it is sent and answers through the ONNX one-row path, with the
model's own ``predict_proba`` on those features (to 1e-9), without calling scikit-learn."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from threadpoolctl import threadpool_limits

from mem_core import registry
from mem_core.feature_sets import REGIME_V1
from mem_core.features import SERVING_HISTORY
from mem_core.labels import reversal_labels
from mem_pipelines.training.dataset import build_dataset
from mem_pipelines.training.mlflow_logging import train_and_log
from mem_serving.api import pb

from .helpers import candles_pb, load_candles, now_pb, promote
from .stack import start_stack

SYMBOL = "BTCUSDT"
TRAIN = 20_000
SERVE = 1_000


def test_regime_v1_hist_gb_is_served_through_its_fast_path(
    shared_candles: Path, tmp_path: Path, warm_features: None, new_mlflow_store: Callable[[Path], str]
) -> None:
    uri = new_mlflow_store(tmp_path / "mlflow.db")
    candles = load_candles(shared_candles, SYMBOL, TRAIN + SERVE)
    train = candles.iloc[:TRAIN].reset_index(drop=True)
    dataset = build_dataset({SYMBOL: (REGIME_V1.frame(train), reversal_labels(train))}, feature_set=REGIME_V1)
    assert len(dataset) > 15_000 and list(dataset.columns[2:24]) == list(REGIME_V1.names)
    # one OpenMP thread: on a machine whose cores are busy, spinning threads slow the fit ~20x
    with threadpool_limits(1):
        result = train_and_log(
            dataset, tracking_uri=uri, estimator="hist_gb", estimator_params={"max_iter": 60}, feature_set="regime_v1"
        )
    client = MlflowClient(uri)
    run = client.get_run(result.run_id)
    assert (run.data.params["estimator"], run.data.params["feature_set"]) == ("hist_gb", "regime_v1")
    assert (run.data.params["model.max_iter"], run.data.params["model.min_samples_leaf"]) == (
        "60",
        "300",
    )  # study defaults otherwise
    tags = client.get_model_version(registry.MODEL_NAME, result.version).tags
    assert (tags["estimator"], tags["feature_set"]) == ("hist_gb", "regime_v1")
    assert json.loads(tags["feature_names"]) == list(REGIME_V1.names)
    promote(uri, result.version)

    stack = start_stack(uri, tmp_path / "memory" / "memory.db")
    try:
        served = stack.handlers.models.model
        assert served is not None and served.version == result.version
        assert (served.estimator, served.feature_set, served.compiled) == ("hist_gb", REGIME_V1, True)
        # the served path must not reach scikit-learn: count calls of the loaded estimator
        estimator = served.loaded.model.estimator
        sklearn_calls: list[int] = []
        real_predict_proba = estimator.predict_proba

        def counting(X: np.ndarray) -> np.ndarray:
            sklearn_calls.append(len(X))
            return real_predict_proba(X)

        estimator.predict_proba = counting
        serve = candles.iloc[TRAIN:].reset_index(drop=True)
        batch = REGIME_V1.frame(candles).set_index("ts")
        confidences = []
        for end in range(SERVING_HISTORY, SERVE + 1, 60):
            window = serve.iloc[end - SERVING_HISTORY : end].reset_index(drop=True)
            reply = stack.stub.PredictReversal(
                pb.PredictReversalRequest(symbol=f"W{end}", candles=candles_pb(window)), timeout=30
            )
            ts_ms = int(pd.Timestamp(window["ts"].iloc[-1]).value // 1_000_000)
            values = REGIME_V1.newest(window[["open", "high", "low", "close", "volume"]].to_numpy(), ts_ms)
            x = np.array([[values[name] for name in REGIME_V1.names]])
            training_row = batch.loc[window["ts"].iloc[-1], list(REGIME_V1.names)].to_numpy(dtype="float64")
            np.testing.assert_allclose(x[0], training_row, rtol=1e-6, atol=1e-9)  # what training saw for this candle
            expected = float(real_predict_proba(x)[0, 1])
            assert reply.model_version == result.version
            assert abs(reply.confidence - expected) <= 1e-9
            assert reply.is_reversal == (expected >= 0.5)
            assert reply.candle_ts.ToMilliseconds() == ts_ms
            confidences.append(reply.confidence)
        assert len(confidences) == 11 and np.ptp(confidences) > 0.01

        # EnhanceSignal with one new candle: the 22 features and the same fast path
        nxt = serve.iloc[SERVE - SERVING_HISTORY : SERVE].reset_index(drop=True)
        stack.stub.PredictReversal(
            pb.PredictReversalRequest(symbol="LIVE", candles=candles_pb(nxt.iloc[:-1])), timeout=30
        )
        reply = stack.stub.EnhanceSignal(
            pb.EnhanceSignalRequest(
                symbol="LIVE",
                action=pb.ACTION_BUY,
                base_confidence=0.6,
                price=float(nxt["close"].iloc[-1]),
                strategy="test",
                candles=candles_pb(nxt.iloc[-1:]),
                time=now_pb(),
            ),
            timeout=30,
        )
        ts_ms = int(pd.Timestamp(nxt["ts"].iloc[-1]).value // 1_000_000)
        values = REGIME_V1.newest(nxt[["open", "high", "low", "close", "volume"]].to_numpy(), ts_ms)
        expected = float(real_predict_proba(np.array([[values[n] for n in REGIME_V1.names]]))[0, 1])
        assert reply.HasField("ml_confidence") and abs(reply.ml_confidence - expected) <= 1e-9
        assert reply.model_version == result.version
        assert sklearn_calls == []  # the test's own expectations call the original, unwrapped method
    finally:
        stack.channel.close()
        stack.running.stop(grace=1.0)
