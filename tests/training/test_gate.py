"""The champion/challenger gate against a real MLflow registry; verdicts read back from aliases.

The models are depth-1 trees fitted so that their prediction is exactly one designated input
column (``_CHAMPION_COL`` / ``_CHALLENGER_COL``); the holdout rows carry the predictions each
test wants, so accuracy, margin and McNemar's discordant counts are set exactly.
"""
from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.tree import DecisionTreeClassifier

from mem_core.features import FEATURE_NAMES
from mem_pipelines.lib.gate import GatePolicy
from mem_core import registry
from mem_pipelines.training.train import GateError, run_gate, split_dataset

_CHAMPION_COL, _CHALLENGER_COL = 10, 11


def _copycat(column: int, n_features: int = 12) -> DecisionTreeClassifier:
    """A fitted tree whose prediction is ``X[:, column] > 0.5``."""
    rng = np.random.default_rng(column)
    X = rng.random((400, n_features)) * 0.4 + 0.3  # other columns cannot separate
    target = rng.integers(0, 2, 400)
    X[:, column % n_features] = target
    return DecisionTreeClassifier(max_depth=1, random_state=0).fit(X, target)


def _register(uri: str, model: DecisionTreeClassifier, n_features: int = 12) -> str:
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(experiment_id=registry.ensure_experiment(uri)):
        X = np.random.default_rng(1).random((20, n_features))
        names = FEATURE_NAMES if n_features == 12 else tuple(f"f{i}" for i in range(n_features))
        return registry.log_model_version(model, X_train=X, feature_names=names, tracking_uri=uri)


def _dataset(holdout_rows: int, champion_wrong: int, challenger_wrong: int) -> pd.DataFrame:
    """A dataset whose holdout (last 20% of time, after a purge of 10) has exactly
    ``holdout_rows`` rows; the challenger's errors are a subset of the champion's."""
    n = holdout_rows * 5
    rng = np.random.default_rng(42)
    data = pd.DataFrame(rng.random((n, 12)) * 0.4 + 0.3, columns=list(FEATURE_NAMES))
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
    data.iloc[hold, data.columns.get_loc(FEATURE_NAMES[_CHAMPION_COL])] = champion
    data.iloc[hold, data.columns.get_loc(FEATURE_NAMES[_CHALLENGER_COL])] = challenger
    return data


def _champion(uri: str) -> str:
    return str(MlflowClient(uri).get_model_version_by_alias(registry.MODEL_NAME, registry.CHAMPION).version)


@pytest.fixture
def champion_v1(mlflow_uri: str) -> str:
    version = _register(mlflow_uri, _copycat(_CHAMPION_COL))
    MlflowClient(mlflow_uri).set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, version)
    return version


def test_first_model_becomes_champion(mlflow_uri: str) -> None:
    data = _dataset(200, 60, 60)
    version = _register(mlflow_uri, _copycat(_CHALLENGER_COL))
    outcome = run_gate(data, version, tracking_uri=mlflow_uri)
    assert _champion(mlflow_uri) == version
    tags = MlflowClient(mlflow_uri).get_model_version(registry.MODEL_NAME, version).tags
    assert tags["gate.verdict"] == "promoted" and tags["gate.champion_version"] == ""
    assert outcome.champion_after == version


def test_two_points_ahead_and_significant_is_promoted(mlflow_uri: str, champion_v1: str) -> None:
    data = _dataset(1000, 320, 300)  # +0.020 exactly, 20 discordant rows all for the challenger
    challenger = _register(mlflow_uri, _copycat(_CHALLENGER_COL))
    run_gate(data, challenger, tracking_uri=mlflow_uri)
    assert _champion(mlflow_uri) == challenger != champion_v1
    tags = MlflowClient(mlflow_uri).get_model_version(registry.MODEL_NAME, challenger).tags
    assert tags["gate.verdict"] == "promoted"
    assert float(tags["gate.margin"]) == pytest.approx(0.02)
    assert float(tags["gate.p_value"]) < 0.05
    assert tags["gate.holdout_rows"] == "1000" and tags["gate.champion_version"] == champion_v1
    assert float(tags["gate.champion_accuracy"]) == pytest.approx(0.68)
    assert float(tags["gate.challenger_accuracy"]) == pytest.approx(0.70)


def test_just_under_two_points_is_not_promoted(mlflow_uri: str, champion_v1: str) -> None:
    data = _dataset(1000, 319, 300)  # +0.019, significant
    challenger = _register(mlflow_uri, _copycat(_CHALLENGER_COL))
    outcome = run_gate(data, challenger, tracking_uri=mlflow_uri)
    assert outcome.decision.p_value < 0.05
    assert _champion(mlflow_uri) == champion_v1
    tags = MlflowClient(mlflow_uri).get_model_version(registry.MODEL_NAME, challenger).tags
    assert tags["gate.verdict"] == "rejected"


def test_two_points_on_too_few_rows_is_not_promoted(mlflow_uri: str, champion_v1: str) -> None:
    data = _dataset(100, 32, 30)  # +0.02 but only 2 discordant rows
    challenger = _register(mlflow_uri, _copycat(_CHALLENGER_COL))
    outcome = run_gate(data, challenger, tracking_uri=mlflow_uri)
    assert outcome.decision.margin == pytest.approx(0.02) and outcome.decision.p_value >= 0.05
    assert _champion(mlflow_uri) == champion_v1
    # the same rows pass with a looser, configured alpha
    run_gate(data, challenger, tracking_uri=mlflow_uri, policy=GatePolicy(alpha=0.6))
    assert _champion(mlflow_uri) == challenger


def test_failure_while_scoring_keeps_the_champion(mlflow_uri: str, champion_v1: str) -> None:
    data = _dataset(1000, 320, 100)  # would be promoted by far
    broken = _register(mlflow_uri, _copycat(3, n_features=5), n_features=5)  # expects 5 features
    with pytest.raises(GateError):
        run_gate(data, broken, tracking_uri=mlflow_uri)
    assert _champion(mlflow_uri) == champion_v1
    tags = MlflowClient(mlflow_uri).get_model_version(registry.MODEL_NAME, broken).tags
    assert tags["gate.verdict"] == "error" and tags["gate.error"]


def test_rows_the_champion_trained_on_are_left_out(mlflow_uri: str, champion_v1: str) -> None:
    """A champion trained on a later window must not be scored on rows it has seen."""
    data = _dataset(1000, 320, 300)
    split = split_dataset(data)
    client = MlflowClient(mlflow_uri)
    run_id = client.get_model_version(registry.MODEL_NAME, champion_v1).run_id
    seen_until = data["ts"].iloc[split.holdout[399]]
    client.set_tag(run_id, "split.train_end", seen_until.isoformat())
    challenger = _register(mlflow_uri, _copycat(_CHALLENGER_COL))
    outcome = run_gate(data, challenger, tracking_uri=mlflow_uri)
    # rows up to seen_until + 10 candles are excluded: 400 + 10 of 1000
    assert outcome.decision.rows == 590
    tags = client.get_model_version(registry.MODEL_NAME, challenger).tags
    assert tags["gate.holdout_rows_seen_by_champion"] == "410"
    # the champion's extra errors were all in the first 320 rows: on the rest both are equal
    assert outcome.decision.margin == pytest.approx(0.0) and _champion(mlflow_uri) == champion_v1
