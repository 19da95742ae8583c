"""``random_forest``: scikit-learn's RandomForestClassifier with its own defaults."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sklearn.ensemble import RandomForestClassifier

from mem_core.model import ReversalModel


class RandomForest(ReversalModel):
    name = "random_forest"
    estimator_type = RandomForestClassifier

    @staticmethod
    def build(params: Mapping[str, Any]) -> RandomForestClassifier:
        return RandomForestClassifier(**params)
