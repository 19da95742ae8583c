"""``seed_gbc``: the seed's GradientBoostingClassifier (DESIGN §4), with a compiled one-row path.

``predict_proba`` on one row spends most of its time validating input and dispatching per tree.
For binary gradient boosting the model is ``sigmoid(init + learning_rate * sum(tree_i(x)))``,
and every tree is a set of public arrays (feature, threshold, children, value).
``compile_gradient_boosting`` flattens all trees into one set of arrays and walks them
together, one numpy step per level.

Exactness: scikit-learn compares float32 features with float64 thresholds; so does this.
Serving checks the compiled function against ``predict_proba`` before using it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier

from mem_core.model import OnePredictor, ReversalModel


class SeedGBC(ReversalModel):
    name = "seed_gbc"
    estimator_type = GradientBoostingClassifier
    default_params = MappingProxyType(
        {"n_estimators": 200, "max_depth": 5, "learning_rate": 0.1, "min_samples_split": 20, "random_state": 42}
    )

    @staticmethod
    def build(params: Mapping[str, Any]) -> GradientBoostingClassifier:
        return GradientBoostingClassifier(**params)

    def compile_one_row(self) -> OnePredictor | None:
        return compile_gradient_boosting(self.estimator)


def compile_gradient_boosting(model: Any) -> OnePredictor | None:
    """A function row -> P(class 1) for a binary GradientBoostingClassifier, else None."""
    if not isinstance(model, GradientBoostingClassifier) or getattr(model, "n_classes_", 0) != 2:
        return None
    trees = [est.tree_ for est in model.estimators_[:, 0]]
    sizes = [t.node_count for t in trees]
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
    left = np.concatenate(
        [np.where(t.children_left < 0, np.arange(t.node_count), t.children_left) + o for t, o in zip(trees, offsets)]
    )
    right = np.concatenate(
        [np.where(t.children_right < 0, np.arange(t.node_count), t.children_right) + o for t, o in zip(trees, offsets)]
    )
    feature = np.concatenate([np.maximum(t.feature, 0) for t in trees]).astype(np.int64)
    threshold = np.concatenate([t.threshold for t in trees]).astype(np.float64)
    value = np.concatenate([t.value[:, 0, 0] for t in trees]).astype(np.float64)
    depth = max(int(t.max_depth) for t in trees)
    lr = float(model.learning_rate)
    roots = offsets

    def tree_sum(x: np.ndarray) -> float:
        x32 = np.asarray(x, dtype=np.float32).astype(np.float64)
        node = roots
        for _ in range(depth):
            node = np.where(x32[feature[node]] <= threshold[node], left[node], right[node])
        return float(value[node].sum())

    n_features = int(model.n_features_in_)
    probe = np.random.default_rng(0).normal(0.0, 1.0, (32, n_features))
    decision = model.decision_function(probe)
    inits = decision - lr * np.array([tree_sum(row) for row in probe])
    init = float(np.median(inits))
    if np.max(np.abs(inits - init)) > 1e-9:
        return None  # an init estimator whose output depends on x: not supported here

    def predict_one(x: np.ndarray) -> float:
        raw = init + lr * tree_sum(x)
        return float(1.0 / (1.0 + np.exp(-raw)))

    return predict_one
