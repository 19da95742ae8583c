"""The model types by name: training asks for one by its config's ``estimator``, the registry and
serving rebuild a stored version from its ``estimator`` tag.

==================  ===========================================================================
name                model
==================  ===========================================================================
``seed_gbc``        the seed's GradientBoostingClassifier (DESIGN §4), the default; compiled
                    one-row path
``hist_gb``         HistGradientBoostingClassifier with the walk-forward study's parameters,
                    deterministic (no early stopping, fixed seed); compiled one-row tree walk
``random_forest``   RandomForestClassifier with scikit-learn's defaults
==================  ===========================================================================

A new model type is one module here with one ``ReversalModel`` subclass, listed in ``_BUILT_IN``.
The built-in types are imported on first use (scikit-learn takes a second of CPU to import;
``mem serve`` starting from its model cache never needs it).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mem_core.feature_sets import SEED, FeatureSet

if TYPE_CHECKING:
    from mem_core.model import ReversalModel

#: The seed's model; any other one only when named in the training config.
DEFAULT = "seed_gbc"

ESTIMATORS: dict[str, type[ReversalModel]] = {}
#: module:class of the built-in types, registered by ``_known()`` on first use; each module is
#: named after its type (``known`` relies on it).
_BUILT_IN = ["seed_gbc:SeedGBC", "hist_gb:HistGB", "random_forest:RandomForest"]
_BUILT_IN_NAMES = frozenset(entry.split(":")[0] for entry in _BUILT_IN)
_BUILT_IN_LOCK = threading.Lock()


class UnknownEstimator(ValueError):
    """No model type of that name: training refuses the config, the registry refuses the version."""


def register(cls: type[ReversalModel]) -> type[ReversalModel]:
    """Make ``cls`` available under ``cls.name`` (usable as a class decorator)."""
    taken = _known().get(cls.name)
    if taken is not None and taken is not cls:
        raise ValueError(f"estimator name {cls.name!r} is taken by {taken.__qualname__}")
    ESTIMATORS[cls.name] = cls
    return cls


def _known() -> dict[str, type[ReversalModel]]:
    """``ESTIMATORS``, with the built-in types imported and registered the first time."""
    with _BUILT_IN_LOCK:
        while _BUILT_IN:
            module, name = _BUILT_IN.pop(0).split(":")
            cls = getattr(importlib.import_module(f"{__name__}.{module}"), name)
            if cls.name != module:
                raise RuntimeError(
                    f"built-in model type {name} is called {cls.name!r}, not after its module {module!r}"
                )
            ESTIMATORS.setdefault(cls.name, cls)
    return ESTIMATORS


def names() -> list[str]:
    return sorted(_known())


def known(name: str) -> bool:
    """Whether ``name`` is a model type here, without importing the built-in ones (scikit-learn)."""
    return name in ESTIMATORS or name in _BUILT_IN_NAMES


def get(name: str) -> type[ReversalModel]:
    """The model type called ``name``; ``UnknownEstimator`` otherwise."""
    try:
        return _known()[name]
    except KeyError:
        raise UnknownEstimator(f"unknown estimator {name!r}; choose one of {names()}") from None


def create(
    name: str = DEFAULT, params: Mapping[str, Any] | None = None, feature_set: FeatureSet = SEED
) -> ReversalModel:
    """A new unfitted model of type ``name``: its default parameters updated with ``params``."""
    return get(name).create(params, feature_set)


def for_estimator(estimator: Any) -> type[ReversalModel]:
    """The model type wrapping exactly this estimator class (versions registered without an
    ``estimator`` tag); ``UnknownEstimator`` when none does."""
    for cls in _known().values():
        if type(estimator) is cls.estimator_type:
            return cls
    raise UnknownEstimator(f"no model type wraps {type(estimator).__qualname__}; known: {names()}")
