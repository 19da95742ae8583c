"""MLflow tracking and model registry of the reversal model.

Layout: a SQLite tracking/registry database (``sqlite:///<project root>/mlflow.db``) with run
artifacts in the ``mlruns/`` folder beside it, unless ``MLFLOW_TRACKING_URI`` names another
store. For any ``sqlite:///.../X.db`` URI the experiment's artifacts go to the ``mlruns`` folder
next to the database file (so a test's ``tmp_path`` store keeps everything in ``tmp_path``).

Registered model ``mem-reversal``; each training registers a version with alias ``challenger``;
the gate moves alias ``champion``. Model versions carry tags ``feature_names`` and
``feature_ranges`` (JSON, training min/max per feature) so serving can load them without
downloading artifacts and flag out-of-distribution input.

Models are stored with the skops format (no pickle); the tree type of the tree ensembles is
declared trusted when logging.
"""
from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

import numpy as np

from mem_core.features import out_of_range
from mem_core.settings import tracking_uri

MODEL_NAME = "mem-reversal"
CHAMPION = "champion"
CHALLENGER = "challenger"
EXPERIMENT = "mem-reversal"
SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]


def pip_requirements() -> list[str]:
    """What the model needs to be loaded elsewhere, pinned to the versions that trained it
    (given explicitly so MLflow does not spend seconds inferring them)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("scikit-learn", "skops", "numpy", "scipy")]

log = logging.getLogger(__name__)


def artifact_location(uri: str) -> str | None:
    """The artifact root for a SQLite store: ``mlruns/`` beside the database file."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite":
        return None  # a tracking server or other database decides where artifacts go
    db_path = Path(uri[len("sqlite:///") :])
    return (db_path.parent / "mlruns").resolve().as_uri()


def client(uri: str | None = None):
    """An ``MlflowClient`` on the tracking and registry store."""
    from mlflow.tracking import MlflowClient

    uri = uri or tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(uri: str | None = None, name: str = EXPERIMENT) -> str:
    """The id of the training experiment, created with the artifact root when missing."""
    uri = uri or tracking_uri()
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    from mlflow.exceptions import MlflowException

    try:
        return c.create_experiment(name, artifact_location=artifact_location(uri))
    except MlflowException:  # created concurrently
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def _is_missing(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") and (
        "not found" in str(exc).lower() or "does not exist" in str(exc).lower()
    )


def version_by_alias(alias: str, uri: str | None = None, model_name: str = MODEL_NAME):
    """The ``ModelVersion`` holding ``alias``, or None (no model or no alias yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return client(uri).get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if _is_missing(exc):
            return None
        raise


def champion_version(tracking_uri: str | None = None) -> str | None:
    """The champion's version number (one registry query; for polling a new champion)."""
    mv = version_by_alias(CHAMPION, tracking_uri)
    return None if mv is None else str(mv.version)


@dataclass(frozen=True)
class LoadedModel:
    """A registered version ready to predict. ``predict_proba`` column 1 = reversal."""

    version: str
    feature_names: list[str]
    feature_ranges: dict[str, tuple[float, float]]
    model: Any
    run_id: str | None = None

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(np.asarray(X, dtype="float64"))

    def out_of_range(self, values: Mapping[str, float]) -> list[str]:
        """Features of one row outside the training min/max (``features.out_of_range``)."""
        return list(out_of_range(values, self.feature_ranges))


def load_version(version: str, tracking_uri: str | None = None, model_name: str = MODEL_NAME) -> LoadedModel:
    """Load one registered version with its feature names and ranges."""
    import mlflow.sklearn

    uri = tracking_uri or globals()["tracking_uri"]()
    mv = client(uri).get_model_version(model_name, str(version))
    return _load(mv, uri, model_name)


def _load(mv, uri: str, model_name: str) -> LoadedModel:
    import mlflow
    import mlflow.sklearn

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model = mlflow.sklearn.load_model(f"models:/{model_name}/{mv.version}")
    tags = mv.tags or {}
    names = json.loads(tags["feature_names"]) if "feature_names" in tags else []
    ranges = {k: (float(v[0]), float(v[1])) for k, v in json.loads(tags.get("feature_ranges", "{}")).items()}
    return LoadedModel(version=str(mv.version), feature_names=names, feature_ranges=ranges, model=model, run_id=mv.run_id)


def load_alias(alias: str, tracking_uri: str | None = None, model_name: str = MODEL_NAME) -> LoadedModel | None:
    uri = tracking_uri or globals()["tracking_uri"]()
    mv = version_by_alias(alias, uri, model_name)
    return None if mv is None else _load(mv, uri, model_name)


def load_champion(tracking_uri: str | None = None) -> LoadedModel | None:
    """The current champion, or None when no model has been promoted yet."""
    return load_alias(CHAMPION, tracking_uri)


def feature_ranges(X: np.ndarray, names: list[str] | tuple[str, ...]) -> dict[str, tuple[float, float]]:
    X = np.asarray(X, dtype="float64")
    return {n: (float(X[:, i].min()), float(X[:, i].max())) for i, n in enumerate(names)}


def skops_trusted_types(model: Any) -> list[str]:
    """Types skops will not load by default that the model contains (scikit-learn's own only)."""
    import skops.io as sio

    untrusted = sio.get_untrusted_types(data=sio.dumps(model))
    foreign = [t for t in untrusted if not t.startswith("sklearn.")]
    if foreign:
        raise ValueError(f"model contains non-scikit-learn types skops would have to trust: {foreign}")
    return sorted(set(untrusted) | set(SKOPS_TRUSTED_TYPES))


def _log_sklearn(model: Any, signature: Any, example: Any) -> Any:
    import mlflow.sklearn

    return mlflow.sklearn.log_model(
        model,
        name="model",
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
        skops_trusted_types=skops_trusted_types(model),
        signature=signature,
        input_example=example,
        pip_requirements=pip_requirements(),
        pyfunc_predict_fn="predict_proba",
    )


def log_model_version(
    model: Any,
    *,
    X_train: np.ndarray,
    feature_names: list[str] | tuple[str, ...],
    tracking_uri: str,
    model_name: str = MODEL_NAME,
    alias: str | None = CHALLENGER,
    extra_version_tags: Mapping[str, str] | None = None,
) -> str:
    """Log ``model`` into the active run, register a version, tag it, set ``alias``.

    Returns the version number. Must be called inside ``mlflow.start_run``.
    """
    import mlflow
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature

    names = list(feature_names)
    example = pd.DataFrame(np.asarray(X_train[:5], dtype="float64"), columns=names)
    signature = infer_signature(example, model.predict_proba(example.to_numpy()))
    ranges = feature_ranges(X_train, names)
    mlflow.log_dict({k: list(v) for k, v in ranges.items()}, "feature_ranges.json")
    with warnings.catch_warnings():
        # the input example is a named frame for reviewers; the model is fitted on arrays
        warnings.filterwarnings("ignore", message="X has feature names")
        info = _log_sklearn(model, signature, example)
    mlflow.set_registry_uri(tracking_uri)  # the fluent API is global: register where we were told
    mv = mlflow.register_model(info.model_uri, model_name, await_registration_for=0)
    c = client(tracking_uri)
    tags = {
        "feature_names": json.dumps(names),
        "feature_ranges": json.dumps({k: list(v) for k, v in ranges.items()}),
        **(extra_version_tags or {}),
    }
    for key, value in tags.items():
        c.set_model_version_tag(model_name, mv.version, key, value)
    if alias:
        c.set_registered_model_alias(model_name, alias, mv.version)
    return str(mv.version)
