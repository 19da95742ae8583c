"""MLflow tracking and model registry of the reversal model.

Layout: a SQLite tracking/registry database (``sqlite:///<project root>/mlflow.db``) with run
artifacts in the ``mlruns/`` folder beside it, unless ``MLFLOW_TRACKING_URI`` names another
store. For any ``sqlite:///.../X.db`` URI the experiment's artifacts go to the ``mlruns`` folder
next to the database file (so a test's ``tmp_path`` store keeps everything in ``tmp_path``).

Registered model ``mem-reversal``; each training registers a version with alias ``challenger``;
the gate moves alias ``champion``. Model versions carry tags ``estimator`` and ``feature_set``
(the model type and the feature set it reads: see ``mem_core.model``) and ``feature_names``, so
serving can rebuild the model; the training min/max per feature (to flag out-of-distribution
input) is the run's artifact ``feature_ranges.json`` (versions registered before it read their
``feature_ranges`` tag). A model with a compiled one-row path also logs its arrays and its
probabilities on the probe rows (``one_row_state.npz``), from which serving rebuilds that path
without the estimator. The experiment, the registered model and every version carry a
description (the version's: what it was trained on, then the gate's verdict).

Models are stored through the one flavour of ``mem_core.model`` (scikit-learn, skops format).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import numpy as np

from mem_core import estimators, feature_sets
from mem_core.feature_sets import FeatureSet
from mem_core.features import out_of_range
from mem_core.model import ReversalModel, load_estimator, log_estimator, probe_rows
from mem_core.settings import tracking_uri

log = logging.getLogger(__name__)


MODEL_NAME = "mem-reversal"
CHAMPION = "champion"
CHALLENGER = "challenger"
EXPERIMENT = "mem-reversal"
FEATURE_RANGES_ARTIFACT = "feature_ranges.json"
#: The compiled one-row path's arrays (``ReversalModel.one_row_state``) with, under ``PROBE``, the
#: model's P(reversal) on ``probe_rows``: the run's artifact when the model has them. Serving
#: rebuilds and checks that path from them without the estimator.
ONE_ROW_ARTIFACT = "one_row_state.npz"
PROBE = "probe_expected"
#: The description MLflow shows for a run, an experiment or a registered model (``mlflow.note.content``).
NOTE_TAG = "mlflow.note.content"
EXPERIMENT_DESCRIPTION = (
    "Training runs of the reversal model (does price reverse against its trend within the next 10 "
    "candles?), one per Dagster `train_and_gate` run: params, holdout metrics and skill with bootstrap "
    "CIs, the walk-forward, plots, the candles it saw (Datasets) and the registered version. "
    "See docs/ml.md."
)
#: The experiment's description, and its kind: MLflow 3 opens a ``custom_model_development``
#: experiment in the model-training view (runs, metrics, models), not the GenAI one (traces).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_TAGS = {NOTE_TAG: EXPERIMENT_DESCRIPTION, EXPERIMENT_KIND_TAG: "custom_model_development"}
MODEL_DESCRIPTION = (
    "P(reversal within 10 candles) from the features of one candle. Each training registers a version "
    "with alias `challenger`; the champion gate moves alias `champion` (what `mem serve` loads) only for "
    "a version with skill over the constant base rate that also beats the champion on the same holdout "
    "rows. Each version's description says what it was trained on and the gate's verdict."
)


def artifact_location(uri: str) -> str | None:
    """The artifact root for a SQLite store: ``mlruns/`` beside the database file."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite":
        return None  # a tracking server or other database decides where artifacts go
    db_path = Path(uri[len("sqlite:///") :])
    return (db_path.parent / "mlruns").resolve().as_uri()


@functools.cache
def quiet_downloads() -> None:
    """MLflow draws a tqdm "Downloading artifacts" bar on stderr for every model it loads: noise in
    the main job's output and the server's log. Off unless the user turned it on, through MLflow's
    own setting (``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR``, read at each download)."""
    from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

    if not MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.is_set():
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.set(False)


def client(uri: str | None = None):
    """An ``MlflowClient`` on the tracking and registry store."""
    from mlflow.tracking import MlflowClient

    quiet_downloads()

    uri = uri or tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(uri: str | None = None, name: str = EXPERIMENT) -> str:
    """The id of the training experiment, created with the artifact root when missing."""
    uri = uri or tracking_uri()
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        for key, value in EXPERIMENT_TAGS.items():  # made before experiments had these
            if key not in (exp.tags or {}):
                c.set_experiment_tag(exp.experiment_id, key, value)
        return exp.experiment_id
    from mlflow.exceptions import MlflowException

    try:
        return c.create_experiment(name, artifact_location=artifact_location(uri), tags=dict(EXPERIMENT_TAGS))
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


def champion_version(uri: str | None = None) -> str | None:
    """The champion's version number (one registry query; for polling a new champion)."""
    mv = version_by_alias(CHAMPION, uri)
    return None if mv is None else str(mv.version)


@dataclass(frozen=True)
class LoadedModel:
    """A registered version ready to predict, with the training ranges of its features."""

    version: str
    model: ReversalModel
    feature_ranges: dict[str, tuple[float, float]]
    run_id: str | None = None

    @property
    def estimator(self) -> str:
        return self.model.name

    @property
    def feature_set(self) -> FeatureSet:
        return self.model.feature_set

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.model.feature_names

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(reversal) of each row."""
        return self.model.predict_proba(X)

    def out_of_range(self, values: Mapping[str, float]) -> list[str]:
        """Features of one row outside the training min/max (``features.out_of_range``)."""
        return list(out_of_range(values, self.feature_ranges))


def load_version(version: str, uri: str | None = None, model_name: str = MODEL_NAME) -> LoadedModel:
    """Load one registered version as its model type over its feature set."""
    uri = uri or tracking_uri()
    mv = client(uri).get_model_version(model_name, str(version))
    return _load(mv, uri, model_name)


def _load(mv: Any, uri: str, model_name: str) -> LoadedModel:
    """Rebuild a version from its tags: ``feature_set`` (``UnknownFeatureSet`` when this code does
    not compute it), ``estimator`` (``UnknownEstimator``), then the stored estimator.

    Versions registered before these tags existed read the seed set and the model type that
    wraps the stored estimator's class.
    """
    import mlflow

    tags = mv.tags or {}
    features = _feature_set(mv, tags)
    model_type = estimators.get(tags["estimator"]) if "estimator" in tags else None
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    estimator = load_estimator(f"models:/{model_name}/{mv.version}")
    model_type = model_type or estimators.for_estimator(estimator)
    ranges = _feature_ranges(client(uri), mv, tags)
    return LoadedModel(
        version=str(mv.version), model=model_type(estimator, features), feature_ranges=ranges, run_id=mv.run_id
    )


def _feature_set(mv: Any, tags: Mapping[str, str]) -> FeatureSet:
    """The version's feature set (``UnknownFeatureSet`` when this code does not compute it)."""
    features = feature_sets.get(tags.get("feature_set", feature_sets.SEED.name))
    recorded = json.loads(tags["feature_names"]) if "feature_names" in tags else list(features.names)
    if tuple(recorded) != features.names:
        raise ValueError(
            f"version {mv.version} records features {recorded}, but feature set {features.name!r} is {list(features.names)}"
        )
    return features


@dataclass(frozen=True)
class VersionRecord:
    """A registered version as its tags and logged arrays describe it, its estimator not loaded."""

    version: str
    estimator: str
    feature_set: FeatureSet
    feature_ranges: dict[str, tuple[float, float]]
    run_id: str
    one_row_state: dict[str, np.ndarray]
    #: The model's P(reversal) on ``probe_rows``, as training computed it.
    probe_expected: np.ndarray


def read_version(version: str, uri: str | None = None, model_name: str = MODEL_NAME) -> VersionRecord | None:
    """``version`` without its estimator (no scikit-learn): None when it was registered without
    the one-row arrays (``load_version`` then). Refuses what ``load_version`` refuses."""
    import tempfile

    c = client(uri)
    mv = c.get_model_version(model_name, str(version))
    tags = mv.tags or {}
    if "estimator" not in tags or not mv.run_id:
        return None
    features = _feature_set(mv, tags)
    if not estimators.known(tags["estimator"]):
        estimators.get(tags["estimator"])  # UnknownEstimator, naming the known ones
    if ONE_ROW_ARTIFACT not in {a.path for a in c.list_artifacts(mv.run_id)}:
        return None
    with tempfile.TemporaryDirectory(prefix="mem-one-row-") as tmp:
        with np.load(c.download_artifacts(mv.run_id, ONE_ROW_ARTIFACT, tmp)) as arrays:
            state = {name: arrays[name] for name in arrays.files}
    probe = state.pop(PROBE)
    ranges = _feature_ranges(c, mv, tags)
    return VersionRecord(str(mv.version), tags["estimator"], features, ranges, mv.run_id, state, probe)


def _feature_ranges(c: Any, mv: Any, tags: Mapping[str, str]) -> dict[str, tuple[float, float]]:
    """The training ranges: the run's ``feature_ranges.json`` (through the client ``c``), else
    (older versions) the tag."""
    raw: Mapping[str, Any] | None = None
    if mv.run_id:
        import tempfile

        from mlflow.exceptions import MlflowException

        try:
            with tempfile.TemporaryDirectory(prefix="mem-ranges-") as tmp:
                raw = json.loads(Path(c.download_artifacts(mv.run_id, FEATURE_RANGES_ARTIFACT, tmp)).read_text())
        except (MlflowException, OSError, ValueError):
            raw = None
    if raw is None:
        raw = json.loads(tags.get("feature_ranges", "{}"))
    return {k: (float(v[0]), float(v[1])) for k, v in raw.items()}


def load_alias(alias: str, uri: str | None = None, model_name: str = MODEL_NAME) -> LoadedModel | None:
    uri = uri or tracking_uri()
    mv = version_by_alias(alias, uri, model_name)
    return None if mv is None else _load(mv, uri, model_name)


def load_champion(uri: str | None = None) -> LoadedModel | None:
    """The current champion, or None when no model has been promoted yet."""
    return load_alias(CHAMPION, uri)


def feature_ranges(X: np.ndarray, names: list[str] | tuple[str, ...]) -> dict[str, tuple[float, float]]:
    X = np.asarray(X, dtype="float64")
    return {n: (float(X[:, i].min()), float(X[:, i].max())) for i, n in enumerate(names)}


def log_model_version(
    model: ReversalModel,
    *,
    X_train: np.ndarray,
    uri: str,
    model_name: str = MODEL_NAME,
    alias: str | None = CHALLENGER,
    extra_version_tags: Mapping[str, str] | None = None,
    description: str | None = None,
) -> str:
    """Log ``model`` into the active run, register a version, tag it, set ``alias``.

    ``X_train``: the training rows (columns in the model's feature order), for the feature
    ranges and the input example. Returns the version number. Must be called inside
    ``mlflow.start_run``. ``description``: the version's (the registered model gets
    ``MODEL_DESCRIPTION`` when it has none).
    """
    import mlflow

    names = list(model.feature_names)
    X = np.asarray(X_train, dtype="float64")
    if X.ndim != 2 or X.shape[1] != len(names):
        raise ValueError(
            f"X_train has shape {X.shape}; feature set {model.feature_set.name!r} has {len(names)} columns"
        )
    ranges = feature_ranges(X, names)
    mlflow.log_dict({k: list(v) for k, v in ranges.items()}, FEATURE_RANGES_ARTIFACT)
    one_row = model.one_row_state()
    if one_row is not None:
        _log_arrays({**one_row, PROBE: model.predict_proba(probe_rows(names, ranges))}, ONE_ROW_ARTIFACT)
    model_uri = log_estimator(model, X)
    mlflow.set_registry_uri(uri)  # the fluent API is global: register where we were told
    mv = _register_quietly(model_uri, model_name)
    c = client(uri)
    tags = {
        "estimator": model.name,
        "feature_set": model.feature_set.name,
        "feature_names": json.dumps(names),
        **(extra_version_tags or {}),
    }
    for key, value in tags.items():
        c.set_model_version_tag(model_name, mv.version, key, value)
    if description:
        c.update_model_version(model_name, mv.version, description=description)
    if not c.get_registered_model(model_name).description:
        c.update_registered_model(model_name, description=MODEL_DESCRIPTION)
    if alias:
        c.set_registered_model_alias(model_name, alias, mv.version)
    return str(mv.version)


def _log_arrays(arrays: Mapping[str, np.ndarray], name: str) -> None:
    """``arrays`` as the active run's artifact ``name`` (numpy's ``.npz``, no pickle)."""
    import tempfile

    import mlflow

    with tempfile.TemporaryDirectory(prefix="mem-arrays-") as tmp:
        path = Path(tmp) / name
        np.savez(path, **cast(dict[str, Any], arrays))
        mlflow.log_artifact(str(path))


def _register_quietly(model_uri: str, model_name: str) -> Any:
    """``mlflow.register_model`` without its two console notes ("Successfully registered model",
    "Created version"): they are ``print`` calls on MLflow's event stream, not log records, so no
    log level hides them; the version is logged here instead."""
    import mlflow
    from mlflow.utils.logging_utils import MLFLOW_LOGGING_STREAM

    enabled = MLFLOW_LOGGING_STREAM.enabled
    MLFLOW_LOGGING_STREAM.enabled = False
    try:
        mv = mlflow.register_model(model_uri, model_name, await_registration_for=0)
    finally:
        MLFLOW_LOGGING_STREAM.enabled = enabled
    log.info("registered %s version %s from %s", model_name, mv.version, model_uri)
    return mv
