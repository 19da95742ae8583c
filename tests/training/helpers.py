"""Models with exactly known predictions and a dataset built for them (gate and definitions tests).

``Copycat`` is a test-only model type (registered under its own name): a depth-1 tree fitted so
that its prediction is exactly one designated input column (``CHAMPION_COL`` / ``CHALLENGER_COL``);
the holdout rows of ``gate_dataset`` carry the predictions each test wants, so accuracy, margin
and McNemar's discordant counts are set exactly. ``Unscorable`` loads fine and returns NaN.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from sklearn.tree import DecisionTreeClassifier

from mem_core import estimators, registry
from mem_core.feature_sets import SEED
from mem_core.model import ReversalModel
from mem_pipelines.training.dataset import split_dataset

CHAMPION_COL, CHALLENGER_COL = 10, 11


@estimators.register
class Copycat(ReversalModel):
    name = "test_copycat"
    estimator_type = DecisionTreeClassifier

    @staticmethod
    def build(params: Mapping[str, Any]) -> DecisionTreeClassifier:
        return DecisionTreeClassifier(**{"max_depth": 1, "random_state": 0, **params})


@estimators.register
class Unscorable(Copycat):
    name = "test_unscorable"

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), np.nan)


def copycat(column: int, model_type: type[ReversalModel] = Copycat) -> ReversalModel:
    """A fitted model whose prediction is ``X[:, column] > 0.5``."""
    rng = np.random.default_rng(column)
    X = rng.random((400, len(SEED.names))) * 0.4 + 0.3  # other columns cannot separate
    target = rng.integers(0, 2, 400)
    X[:, column] = target
    return model_type.create().fit(X, target)


def register(uri: str, model: ReversalModel) -> str:
    """Log ``model`` in a new run and register it (alias challenger); its version."""
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(experiment_id=registry.ensure_experiment(uri)):
        X = np.random.default_rng(1).random((20, len(model.feature_names)))
        return registry.log_model_version(model, X_train=X, uri=uri)


def gate_dataset(holdout_rows: int, champion_wrong: int, challenger_wrong: int) -> pd.DataFrame:
    """A dataset whose holdout (last 20% of time, after a purge of 10) has exactly
    ``holdout_rows`` rows; the challenger's errors are a subset of the champion's."""
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
    champion = y[hold].copy()
    champion[:champion_wrong] = 1 - champion[:champion_wrong]
    challenger = y[hold].copy()
    challenger[:challenger_wrong] = 1 - challenger[:challenger_wrong]
    data.iloc[hold, data.columns.get_loc(names[CHAMPION_COL])] = champion
    data.iloc[hold, data.columns.get_loc(names[CHALLENGER_COL])] = challenger
    return data


def champion(uri: str) -> str:
    return str(MlflowClient(uri).get_model_version_by_alias(registry.MODEL_NAME, registry.CHAMPION).version)
