"""Models with exactly known probabilities and a dataset built for them (gate and definitions tests).

``Echo`` is a test-only model type (registered under its own name): a logistic regression whose
weights are set so that its probability is ``sigmoid`` of one designated input column
(``CHAMPION_COL`` / ``CHALLENGER_COL``); the holdout rows of ``gate_dataset`` carry the logits each
test wants, so accuracy, margin, McNemar's discordant counts and the log loss are set exactly.
``Unscorable`` loads fine and returns NaN.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

from mem_core import estimators, feature_sets, features, registry
from mem_core.feature_sets import SEED, FeatureSet
from mem_core.model import ReversalModel
from mem_core.regime_features import REGIME_HISTORY, REGIME_NAMES, regime_features
from mem_pipelines.training.dataset import split_dataset

CHAMPION_COL, CHALLENGER_COL = 10, 11
#: The probability the echo models give to the class they predict.
CONFIDENCE = 0.75


@estimators.register
class Echo(ReversalModel):
    name = "test_echo"
    estimator_type = LogisticRegression

    @staticmethod
    def build(params: Mapping[str, Any]) -> LogisticRegression:
        return LogisticRegression(**params)


@estimators.register
class Unscorable(Echo):
    name = "test_unscorable"

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), np.nan)


def echo(column: int, model_type: type[ReversalModel] = Echo) -> ReversalModel:
    """A fitted model whose probability is ``sigmoid(X[:, column])``."""
    n = len(SEED.names)
    model = model_type.create()
    model.fit(np.random.default_rng(0).random((20, n)), np.arange(20) % 2)
    model.estimator.coef_ = np.eye(n)[[column]]
    model.estimator.intercept_ = np.zeros(1)
    return model


def logit(p: float | np.ndarray) -> float | np.ndarray:
    return np.log(p) - np.log1p(-np.asarray(p))


def register(uri: str, model: ReversalModel) -> str:
    """Log ``model`` in a new run and register it (alias challenger); its version."""
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(experiment_id=registry.ensure_experiment(uri)):
        X = np.random.default_rng(1).random((20, len(model.feature_names)))
        return registry.log_model_version(model, X_train=X, uri=uri)


def gate_dataset(holdout_rows: int, champion_wrong: int, challenger_wrong: int, spread: bool = True) -> pd.DataFrame:
    """A dataset whose holdout (last 20% of time, after a purge of 10) has exactly
    ``holdout_rows`` rows; the echo models predict the label with ``CONFIDENCE`` except on
    their wrong rows, and the challenger's errors are a subset of the champion's. ``spread``:
    the wrong rows are spread over the holdout (else they are its first rows)."""
    names = list(SEED.names)
    n = holdout_rows * 5
    rng = np.random.default_rng(42)
    data = pd.DataFrame(rng.random((n, len(names))) * 0.4 + 0.3, columns=names)
    data.insert(0, "ts", pd.date_range("2025-01-01", periods=n, freq="5min", tz="UTC"))
    data.insert(1, "symbol", "TESTUSDT")
    y = rng.integers(0, 2, n)
    data["label"] = y
    data["direction"] = "bullish"
    split = split_dataset(data)
    assert len(split.holdout) == holdout_rows
    hold = split.holdout
    order = rng.permutation(holdout_rows) if spread else np.arange(holdout_rows)
    for col, wrong in ((CHAMPION_COL, champion_wrong), (CHALLENGER_COL, challenger_wrong)):
        predicted = y[hold].copy()
        predicted[order[:wrong]] = 1 - predicted[order[:wrong]]
        data.iloc[hold, data.columns.get_loc(names[col])] = np.where(predicted == 1, logit(CONFIDENCE), logit(1 - CONFIDENCE))
    return data


def champion(uri: str) -> str | None:
    return registry.champion_version(uri)


def description(uri: str, version: str) -> str:
    return MlflowClient(uri).get_model_version(registry.MODEL_NAME, version).description or ""


def _regime_v1_frame(candles: pd.DataFrame) -> pd.DataFrame:
    seed = features.compute_features(candles)
    return seed.merge(regime_features(candles), on="ts", how="inner").dropna().reset_index(drop=True)


def _training_only(ohlcv: np.ndarray) -> dict[str, float]:
    raise NotImplementedError("the stand-in regime_v1 computes training frames only")


@contextmanager
def regime_v1_registered() -> Iterator[FeatureSet]:
    """The ``regime_v1`` feature set: mem_core's own once it defines one; until then a stand-in
    (the seed's 12 then ``mem_core.regime_features``) registered for the block only."""
    if "regime_v1" in feature_sets.FEATURE_SETS:
        yield feature_sets.get("regime_v1")
        return
    stand_in = FeatureSet(
        name="regime_v1",
        names=(*features.FEATURE_NAMES, *REGIME_NAMES),
        min_history=max(features.MIN_HISTORY, REGIME_HISTORY),
        history=features.SERVING_HISTORY,
        frame=_regime_v1_frame,
        newest=_training_only,
    )
    feature_sets.FEATURE_SETS[stand_in.name] = stand_in
    try:
        yield stand_in
    finally:
        del feature_sets.FEATURE_SETS[stand_in.name]
