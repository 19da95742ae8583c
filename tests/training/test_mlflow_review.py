"""What a model reviewer finds in MLflow after a training run, read back from a real store:
descriptions on the experiment, the registered model and the version (with a warning when the
model beats no baseline), the training rows as datasets with digests, the plots, the feature
ranges as an artifact (not a tag) that serving reads, and a run that spans the fit."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient

from mem_core import registry
from mem_core.feature_sets import SEED
from mem_pipelines.training.mlflow_logging import baseline_warning, train_and_log

from .helpers import description


def _market(days: int, signal: float, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2025-03-01", periods=days * 288, freq="5min", tz="UTC")
    parts = []
    for symbol in ("AAAUSDT", "BBBUSDT"):
        X = rng.normal(size=(len(ts), len(SEED.names)))
        p = 1 / (1 + np.exp(-(signal * X[:, 0] - 0.9)))
        part = pd.DataFrame(X, columns=list(SEED.names))
        part.insert(0, "ts", ts)
        part.insert(1, "symbol", symbol)
        part["label"] = (rng.random(len(ts)) < p).astype("int64")
        part["direction"] = "bullish"
        parts.append(part)
    return pd.concat(parts).sort_values(["ts", "symbol"], kind="stable").reset_index(drop=True)


def test_a_training_run_as_a_reviewer_sees_it(mlflow_uri: str) -> None:
    data = _market(days=8, signal=2.0)
    result = train_and_log(data, tracking_uri=mlflow_uri, estimator="hist_gb", feature_set="seed")
    client = MlflowClient(mlflow_uri)

    experiment = client.get_experiment(result.experiment_id)
    assert experiment.tags[registry.NOTE_TAG] == registry.EXPERIMENT_DESCRIPTION
    assert client.get_registered_model(registry.MODEL_NAME).description == registry.MODEL_DESCRIPTION
    text = description(mlflow_uri, result.version)
    assert text.startswith("hist_gb over feature set seed, trained on ")
    assert "AAAUSDT, BBBUSDT" in text and "Awaiting the champion gate." in text
    assert "Warning" not in text  # a skilful model beats both baselines

    run = client.get_run(result.run_id)
    # the run spans the fit: it started before it and ended after it
    assert (run.info.end_time - run.info.start_time) / 1000 >= result.fit_seconds

    inputs = run.inputs.dataset_inputs
    assert sorted(i.dataset.name for i in inputs) == [
        "AAAUSDT 5m 2025-03-01..2025-03-08",
        "BBBUSDT 5m 2025-03-01..2025-03-08",
    ]
    assert all(i.dataset.digest and i.dataset.source_type for i in inputs)
    assert {t.key: t.value for t in inputs[0].tags}["mlflow.data.context"] == "training"
    assert len({i.dataset.digest for i in inputs}) == 2

    # what the run says about itself: a description, the code's git commit, a name of its own
    assert run.data.tags[registry.NOTE_TAG].startswith("hist_gb over feature set seed, trained on ")
    assert f"Registered as {registry.MODEL_NAME} v{result.version}." in run.data.tags[registry.NOTE_TAG]
    assert len(run.data.tags["mlflow.source.git.commit"]) == 40
    assert run.info.run_name.startswith("hist_gb-seed-to-2025-03-08-at-")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the model-training view

    # hist_gb has no impurity importances: permutation importances, one per feature, said so
    importances = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/feature_importances.json")
    assert importances["kind"].startswith("permutation") and set(importances["importances"]) == set(SEED.names)
    assert result.importances == importances["importances"] and result.importance_kind == importances["kind"]

    # a few tags on the version; the rest of the facts in the run's JSON artifact
    version_tags = client.get_model_version(registry.MODEL_NAME, result.version).tags
    assert len(version_tags) <= 8 and {"estimator", "feature_set", "feature_names", "data.sha256"} <= set(version_tags)
    details = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/version_details.json")
    assert details["data.symbols"] == "AAAUSDT,BBBUSDT" and "holdout.roc_auc" in details

    # the pyfunc face of the version: a frame with named columns
    model = mlflow.pyfunc.load_model(f"models:/{registry.MODEL_NAME}/{result.version}")
    frame = data.loc[:9, list(SEED.names)]
    predicted = model.predict(frame)
    assert isinstance(predicted, pd.DataFrame) and list(predicted.columns) == ["p_reversal", "is_reversal"]
    expected = registry.load_version(result.version, mlflow_uri).predict_proba(frame.to_numpy(dtype="float64"))
    np.testing.assert_allclose(predicted["p_reversal"].to_numpy(), expected)
    assert (predicted["is_reversal"] == (expected >= 0.5)).all()

    # a second run on the same data has a name of its own
    again = train_and_log(data, tracking_uri=mlflow_uri, estimator="hist_gb", feature_set="seed")
    assert client.get_run(again.run_id).info.run_name != run.info.run_name

    artifacts = {f.path for f in client.list_artifacts(result.run_id, "plots")}
    assert artifacts == {
        "plots/roc_curve.png",
        "plots/reliability_curve.png",
        "plots/confusion_matrix.png",
        "plots/feature_importances.png",
    }

    # the feature ranges are an artifact, not a long tag under the gate's verdict
    tags = client.get_model_version(registry.MODEL_NAME, result.version).tags
    assert "feature_ranges" not in tags
    ranges = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/{registry.FEATURE_RANGES_ARTIFACT}")
    loaded = registry.load_version(result.version, mlflow_uri)
    assert loaded.feature_ranges == {k: (v[0], v[1]) for k, v in ranges.items()}
    assert set(loaded.feature_ranges) == set(SEED.names)


def test_versions_with_the_ranges_in_a_tag_still_load_them(mlflow_uri: str) -> None:
    """A version registered before the artifact (no ``feature_ranges.json`` in its run): serving
    reads its ``feature_ranges`` tag."""
    from mem_core import estimators
    from mem_core.model import log_estimator

    rng = np.random.default_rng(0)
    X = rng.random((200, 12))
    model = estimators.create("random_forest", {"n_estimators": 5, "max_depth": 2, "random_state": 0}).fit(
        X, (X[:, 3] > 0.5).astype(int)
    )
    mlflow.set_tracking_uri(mlflow_uri)
    mlflow.set_registry_uri(mlflow_uri)
    with mlflow.start_run(experiment_id=registry.ensure_experiment(mlflow_uri)):
        mv = mlflow.register_model(log_estimator(model, X), registry.MODEL_NAME, await_registration_for=0)
    old = {name: [-1.0, 1.0] for name in SEED.names}
    MlflowClient(mlflow_uri).set_model_version_tag(registry.MODEL_NAME, mv.version, "feature_ranges", json.dumps(old))
    loaded = registry.load_version(str(mv.version), mlflow_uri)
    assert loaded.feature_ranges == {name: (-1.0, 1.0) for name in SEED.names}


def test_the_warning_names_the_baselines_missed() -> None:
    assert baseline_warning(0.72, 0.70, 3.0) is None
    text = baseline_warning(0.69, 0.70, 1.0)
    assert text is not None and "majority class (0.700)" in text and "base rate" not in text
    text = baseline_warning(0.71, 0.70, -2.0)
    assert text is not None and "constant base rate (gain -2.0 mnat)" in text
