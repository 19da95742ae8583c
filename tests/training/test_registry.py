"""Registry: where the store lives, registering, aliases, loading the champion with its ranges,
its model type and its feature set."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from mem_core import estimators, registry
from mem_core.estimators import UnknownEstimator
from mem_core.feature_sets import SEED, UnknownFeatureSet
from mem_core.model import log_estimator


def test_default_store_is_the_project_sqlite_database_and_env_overrides(tmp_path: Path) -> None:
    assert registry.tracking_uri({"MEM_HOME": str(tmp_path)}) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert registry.tracking_uri({"MLFLOW_TRACKING_URI": "http://mlflow:5000"}) == "http://mlflow:5000"
    assert registry.artifact_location(f"sqlite:///{tmp_path}/mlflow.db") == (tmp_path / "mlruns").resolve().as_uri()
    assert registry.artifact_location("http://mlflow:5000") is None


def test_empty_store_has_no_champion(mlflow_uri: str) -> None:
    assert registry.champion_version(mlflow_uri) is None
    assert registry.load_champion(mlflow_uri) is None


def _fitted(name: str = "random_forest"):
    rng = np.random.default_rng(0)
    X = rng.random((200, 12))
    y = (X[:, 3] > 0.5).astype(int)
    return estimators.create(name, {"n_estimators": 5, "max_depth": 2, "random_state": 0}).fit(X, y), X


def test_register_alias_and_load_with_feature_ranges(mlflow_uri: str, tmp_path: Path) -> None:
    model, X = _fitted()
    experiment = registry.ensure_experiment(mlflow_uri)
    mlflow.set_tracking_uri(mlflow_uri)
    with mlflow.start_run(experiment_id=experiment):
        version = registry.log_model_version(model, X_train=X, uri=mlflow_uri)
    client = MlflowClient(mlflow_uri)
    assert str(client.get_model_version_by_alias(registry.MODEL_NAME, registry.CHALLENGER).version) == version
    tags = client.get_model_version(registry.MODEL_NAME, version).tags
    assert tags["estimator"] == "random_forest" and tags["feature_set"] == "seed"
    assert json.loads(tags["feature_names"]) == list(SEED.names)
    assert registry.champion_version(mlflow_uri) is None
    client.set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, version)
    assert registry.champion_version() == version  # through MLFLOW_TRACKING_URI

    loaded = registry.load_champion()  # through MLFLOW_TRACKING_URI as well
    assert loaded is not None and loaded.version == version
    assert loaded.estimator == "random_forest" and loaded.feature_set is SEED
    assert loaded.feature_names == SEED.names
    lo, hi = loaded.feature_ranges["rsi14"]  # column 3
    assert lo == X[:, 3].min() and hi == X[:, 3].max()
    np.testing.assert_array_equal(loaded.predict_proba(X[:5]), model.predict_proba(X[:5]))
    assert loaded.out_of_range({"rsi14": 2.0, "sma5": 0.5}) == ["rsi14"]
    # artifacts stayed in the test's folder, in skops format
    assert list((tmp_path / "mlruns").rglob("model.skops"))


def test_training_rows_must_match_the_feature_set(mlflow_uri: str) -> None:
    model, X = _fitted()
    mlflow.set_tracking_uri(mlflow_uri)
    with (
        mlflow.start_run(experiment_id=registry.ensure_experiment(mlflow_uri)),
        pytest.raises(ValueError, match="feature set 'seed' has 12 columns"),
    ):
        registry.log_model_version(model, X_train=X[:, :5], uri=mlflow_uri)
    assert registry.version_by_alias(registry.CHALLENGER, mlflow_uri) is None


def _register_untagged(uri: str, model, X: np.ndarray, tags: dict[str, str]) -> str:
    """A version as registered before versions carried ``estimator`` and ``feature_set``."""
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    with mlflow.start_run(experiment_id=registry.ensure_experiment(uri)):
        mv = mlflow.register_model(log_estimator(model, X), registry.MODEL_NAME, await_registration_for=0)
    for key, value in tags.items():
        MlflowClient(uri).set_model_version_tag(registry.MODEL_NAME, mv.version, key, value)
    return str(mv.version)


def test_versions_without_type_tags_load_as_the_type_of_their_estimator(mlflow_uri: str) -> None:
    model, X = _fitted("seed_gbc")
    version = _register_untagged(mlflow_uri, model, X, {"feature_names": json.dumps(list(SEED.names))})
    loaded = registry.load_version(version, mlflow_uri)
    assert loaded.estimator == "seed_gbc" and loaded.feature_set is SEED
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_unknown_feature_set_or_estimator_or_columns_fail_loudly(mlflow_uri: str) -> None:
    model, X = _fitted()
    names = json.dumps(list(SEED.names))
    rich = _register_untagged(mlflow_uri, model, X, {"feature_set": "rich", "feature_names": names})
    with pytest.raises(
        UnknownFeatureSet, match="unknown feature set 'rich'; this code computes \\['regime_v1', 'seed'\\]"
    ):
        registry.load_version(rich, mlflow_uri)
    other = _register_untagged(mlflow_uri, model, X, {"estimator": "xgboost", "feature_set": "seed"})
    with pytest.raises(UnknownEstimator, match="unknown estimator 'xgboost'"):
        registry.load_version(other, mlflow_uri)
    shuffled = _register_untagged(mlflow_uri, model, X, {"feature_names": json.dumps(list(SEED.names)[::-1])})
    with pytest.raises(ValueError, match="but feature set 'seed' is"):
        registry.load_version(shuffled, mlflow_uri)
