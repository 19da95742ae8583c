"""Models with exactly known probabilities and a dataset built for them (gate and definitions tests).

``Echo`` is a test-only model type (registered under its own name): a logistic regression whose
weights are set so that its probability is ``sigmoid`` of one designated input column
(``CHAMPION_COL`` / ``CHALLENGER_COL``); the holdout rows of ``gate_dataset`` carry the logits each
test wants, so accuracy, margin, McNemar's discordant counts and the log loss are set exactly.
``Unscorable`` loads fine and returns NaN.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

from mem_core import estimators, registry
from mem_core.feature_sets import SEED
from mem_core.model import ReversalModel
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
        data.iloc[hold, data.columns.get_loc(names[col])] = np.where(
            predicted == 1, logit(CONFIDENCE), logit(1 - CONFIDENCE)
        )
    return data


def champion(uri: str) -> str | None:
    return registry.champion_version(uri)


def description(uri: str, version: str) -> str:
    return MlflowClient(uri).get_model_version(registry.MODEL_NAME, version).description or ""
