"""The reversal model interface: what training, the registry, the gate and serving ask of a model.

A ``ReversalModel`` wraps one scikit-learn-compatible estimator with the feature set it reads:

* ``name``: the registry name of the model type (``mem_core.estimators``), logged with every
  version (run param and version tag ``estimator``) so the registry can rebuild the wrapper;
* ``feature_set``: the ``FeatureSet`` it was trained on (param and tag ``feature_set``);
* ``fit(X, y)``, ``predict_proba(X)`` -> P(reversal) per row (1-D);
* ``predict_one(x)``: one row, always right; ``compile_one_row()``: an optional faster exact
  one-row function (serving verifies it against ``predict_proba`` before using it).

Every model type is saved and loaded through one MLflow flavour: ``mlflow.sklearn`` with the
skops format (no pickle), declaring trusted only scikit-learn's own types (``log_estimator``,
``load_estimator``). A new model type is one subclass in ``mem_core/estimators``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from mem_core.feature_sets import SEED, FeatureSet

#: A compiled one-row predictor: feature row -> P(reversal).
OnePredictor = Callable[[np.ndarray], float]


def probe_rows(names: tuple[str, ...] | list[str], ranges: Mapping[str, tuple[float, float]]) -> np.ndarray:
    """256 rows drawn uniformly (seed 0) inside each feature's training range: where a compiled
    one-row path is checked against ``predict_proba``, at training and at every load."""
    lo, hi = np.array([ranges.get(n, (-1.0, 1.0)) for n in names], dtype=np.float64).reshape(-1, 2).T
    return lo + (hi - lo) * np.random.default_rng(0).random((256, len(names)))


#: Types skops does not load by default that every tree ensemble holds.
SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]


class ReversalModel(ABC):
    """A binary reversal classifier over one feature set (see the module docstring)."""

    #: Registry name of the model type (``mem_core.estimators``).
    name: ClassVar[str]
    #: The estimator class this type wraps; identifies versions registered without a tag.
    estimator_type: ClassVar[type]
    #: Parameters of a new estimator; the training config's ``params`` override them.
    default_params: ClassVar[Mapping[str, Any]] = MappingProxyType({})

    def __init__(self, estimator: Any, feature_set: FeatureSet = SEED) -> None:
        self.estimator = estimator
        self.feature_set = feature_set

    @classmethod
    def create(cls, params: Mapping[str, Any] | None = None, feature_set: FeatureSet = SEED) -> Self:
        """An unfitted model: ``default_params`` updated with ``params``."""
        return cls(cls.build({**cls.default_params, **(params or {})}), feature_set)

    @staticmethod
    @abstractmethod
    def build(params: Mapping[str, Any]) -> Any:
        """A new unfitted estimator (scikit-learn API, storable by the sklearn flavour)."""

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.feature_set.names

    def fit(self, X: np.ndarray, y: np.ndarray) -> Self:
        self.estimator.fit(np.asarray(X, dtype="float64"), y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """P(reversal) of each row of ``X`` (columns in ``feature_names`` order)."""
        return self.estimator.predict_proba(np.asarray(X, dtype="float64"))[:, 1]

    def predict_one(self, x: np.ndarray) -> float:
        """P(reversal) of one feature row through ``predict_proba`` (the always-right path)."""
        return float(self.estimator.predict_proba(np.asarray(x, dtype="float64").reshape(1, -1))[0, 1])

    def compile_one_row(self) -> OnePredictor | None:
        """A faster function equal to ``predict_one`` (to 1e-9), or None when there is none."""
        return None

    def one_row_state(self) -> dict[str, np.ndarray] | None:
        """Plain arrays from which ``compile_one_row_from`` rebuilds the compiled one-row path
        without what derived them (serving keeps them beside its local copy of the model), or None
        when there is nothing worth keeping."""
        return None

    def compile_one_row_from(self, state: Mapping[str, np.ndarray]) -> OnePredictor | None:
        """``compile_one_row`` from ``one_row_state``'s arrays (checked by the caller as before)."""
        return None

    def params(self) -> dict[str, Any]:
        """The estimator's parameters that MLflow can log (scalars and None)."""
        return {
            k: v for k, v in self.estimator.get_params().items() if v is None or isinstance(v, (int, float, str, bool))
        }

    def importances(self) -> dict[str, float]:
        """Feature importances by name; empty when the estimator has none."""
        values = getattr(self.estimator, "feature_importances_", None)
        if values is None:
            return {}
        return {name: float(v) for name, v in zip(self.feature_names, values)}


def pip_requirements() -> list[str]:
    """What a stored model needs to be loaded elsewhere, pinned to the versions that trained it
    (given explicitly so MLflow does not spend seconds inferring them)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("scikit-learn", "skops", "numpy", "scipy")]


def skops_trusted_types(estimator: Any) -> list[str]:
    """Types skops will not load by default that the estimator contains (scikit-learn's own only)."""
    import skops.io as sio

    untrusted = sio.get_untrusted_types(data=sio.dumps(estimator))
    foreign = [t for t in untrusted if not t.startswith("sklearn.")]
    if foreign:
        raise ValueError(f"model contains non-scikit-learn types skops would have to trust: {foreign}")
    return sorted(set(untrusted) | set(SKOPS_TRUSTED_TYPES))


def save_estimator_file(estimator: Any, path: Path) -> list[str]:
    """``estimator`` in skops' format at ``path``; the types to trust when reading it back."""
    import skops.io as sio

    sio.dump(estimator, path)
    return skops_trusted_types(estimator)


def load_estimator_file(path: Path, trusted: list[str]) -> Any:
    """The estimator ``save_estimator_file`` wrote, trusting only ``trusted``."""
    import skops.io as sio

    return sio.load(path, trusted=trusted)


def log_estimator(model: ReversalModel, X_train: np.ndarray) -> str:
    """Log the model's estimator as artifact ``model`` of the active MLflow run; its model URI.

    The signature and input example are the first training rows as a frame named by the feature
    set, and the pyfunc's answer: columns ``p_reversal`` and ``is_reversal`` (``reversal_flavor``).
    """
    import warnings

    import mlflow.sklearn
    from mlflow.models import Model, infer_signature

    from mem_core import reversal_flavor

    example = pd.DataFrame(np.asarray(X_train[:5], dtype="float64"), columns=list(model.feature_names))
    signature = infer_signature(example, reversal_flavor.predictions(model.estimator, example))
    with warnings.catch_warnings():
        # the input example is a named frame for reviewers; the model is fitted on arrays
        warnings.filterwarnings("ignore", message="X has feature names")
        # MLflow's scikit-learn flavour with a pyfunc face that names its columns (reversal_flavor)
        info = Model.log(
            artifact_path=None,
            flavor=reversal_flavor,
            sk_model=model.estimator,
            name="model",
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
            skops_trusted_types=skops_trusted_types(model.estimator),
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
            pyfunc_predict_fn="predict",  # the pyfunc face: ReversalPyfunc.predict
        )
    return str(info.model_uri)


def load_estimator(model_uri: str) -> Any:
    """The estimator stored at ``model_uri`` by ``log_estimator`` (tracking/registry URIs set by the caller)."""
    import mlflow.sklearn

    return mlflow.sklearn.load_model(model_uri)
