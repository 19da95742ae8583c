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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mem_core.estimators.hist_gb import HistGB
from mem_core.estimators.random_forest import RandomForest
from mem_core.estimators.seed_gbc import SeedGBC
from mem_core.feature_sets import SEED, FeatureSet
from mem_core.model import ReversalModel

#: The seed's model; any other one only when named in the training config.
DEFAULT = SeedGBC.name

ESTIMATORS: dict[str, type[ReversalModel]] = {}


class UnknownEstimator(ValueError):
    """No model type of that name: training refuses the config, the registry refuses the version."""


def register(cls: type[ReversalModel]) -> type[ReversalModel]:
    """Make ``cls`` available under ``cls.name`` (usable as a class decorator)."""
    taken = ESTIMATORS.get(cls.name)
    if taken is not None and taken is not cls:
        raise ValueError(f"estimator name {cls.name!r} is taken by {taken.__qualname__}")
    ESTIMATORS[cls.name] = cls
    return cls


for _cls in (SeedGBC, HistGB, RandomForest):
    register(_cls)


def names() -> list[str]:
    return sorted(ESTIMATORS)


def get(name: str) -> type[ReversalModel]:
    """The model type called ``name``; ``UnknownEstimator`` otherwise."""
    try:
        return ESTIMATORS[name]
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
    for cls in ESTIMATORS.values():
        if type(estimator) is cls.estimator_type:
            return cls
    raise UnknownEstimator(f"no model type wraps {type(estimator).__qualname__}; known: {names()}")
