"""Registry: where the store lives, registering, aliases, loading the champion with its ranges."""
from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient
from sklearn.tree import DecisionTreeClassifier

from mem_core.features import FEATURE_NAMES
from mem_core import registry


def test_default_store_is_the_project_sqlite_database_and_env_overrides(tmp_path: Path) -> None:
    assert registry.tracking_uri({"MEM_HOME": str(tmp_path)}) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert registry.tracking_uri({"MLFLOW_TRACKING_URI": "http://mlflow:5000"}) == "http://mlflow:5000"
    assert registry.artifact_location(f"sqlite:///{tmp_path}/mlflow.db") == (tmp_path / "mlruns").resolve().as_uri()
    assert registry.artifact_location("http://mlflow:5000") is None


def test_empty_store_has_no_champion(mlflow_uri: str) -> None:
    assert registry.champion_version(mlflow_uri) is None
    assert registry.load_champion(mlflow_uri) is None


def test_register_alias_and_load_with_feature_ranges(mlflow_uri: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.random((200, 12))
    y = (X[:, 3] > 0.5).astype(int)
    model = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, y)
    experiment = registry.ensure_experiment(mlflow_uri)
    mlflow.set_tracking_uri(mlflow_uri)
    with mlflow.start_run(experiment_id=experiment):
        version = registry.log_model_version(model, X_train=X, feature_names=FEATURE_NAMES, tracking_uri=mlflow_uri)
    client = MlflowClient(mlflow_uri)
    assert str(client.get_model_version_by_alias(registry.MODEL_NAME, registry.CHALLENGER).version) == version
    assert registry.champion_version(mlflow_uri) is None
    client.set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, version)
    assert registry.champion_version() == version  # through MLFLOW_TRACKING_URI

    loaded = registry.load_champion(mlflow_uri)
    assert loaded is not None and loaded.version == version
    assert loaded.feature_names == list(FEATURE_NAMES)
    lo, hi = loaded.feature_ranges["rsi14"]  # column 3
    assert lo == X[:, 3].min() and hi == X[:, 3].max()
    np.testing.assert_allclose(loaded.predict_proba(X[:5]), model.predict_proba(X[:5]))
    assert loaded.out_of_range({"rsi14": 2.0, "sma5": 0.5}) == ["rsi14"]
    # artifacts stayed in the test's folder, in skops format
    assert list((tmp_path / "mlruns").rglob("model.skops"))
