"""``hist_gb``: scikit-learn's HistGradientBoostingClassifier, deterministic.

Early stopping is off (it would hold out a random part of the training rows) and the seed is
fixed, so the same dataset always gives the same model. No compiled one-row path: its trees are
not public, so serving calls ``predict_proba``, which costs milliseconds per row (scikit-learn's
per-call checks and one OpenMP region per tree), against tens of microseconds for ``seed_gbc``.
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from sklearn.ensemble import HistGradientBoostingClassifier

from mem_core.model import ReversalModel


class HistGB(ReversalModel):
    name = "hist_gb"
    estimator_type = HistGradientBoostingClassifier
    default_params = MappingProxyType(
        {
            "max_iter": 200,
            "learning_rate": 0.1,
            "max_depth": 5,
            "min_samples_leaf": 20,
            "l2_regularization": 0.0,
            "early_stopping": False,
            "random_state": 42,
        }
    )

    @staticmethod
    def build(params: Mapping[str, Any]) -> HistGradientBoostingClassifier:
        return HistGradientBoostingClassifier(**params)
