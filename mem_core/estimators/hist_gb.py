"""``hist_gb``: scikit-learn's HistGradientBoostingClassifier, deterministic, with a compiled one-row path.

Parameters: those of the walk-forward study (docs/ml.md): 250 iterations at learning rate 0.05,
at most 31 leaves per tree, at least 300 rows per leaf, L2 regularisation 1. Early stopping is off
(it would hold out a random part of the training rows) and the seed is fixed, so the same dataset
always gives the same model.

One row through ``predict_proba`` costs 1-2.5 ms (scikit-learn's per-call checks and one OpenMP
region per tree). ``compile_hist_gradient_boosting`` therefore reads the fitted trees (each
iteration's node array, ``_predictors``: private to scikit-learn, which is why the result is
checked) into flat arrays (``flat_trees``) and walks them in one numba loop
(``mem_core.estimators.flat_trees``): a few microseconds per row.

Exactness. Splits and leaf values stay float64 and the comparisons are scikit-learn's
(``x <= threshold``, NaN to the side it learned), so the sum differs only by summation order
(~1e-16). Serving verifies the result against ``predict_proba`` to 1e-9 before using it
(``mem_serving.fast_predict``) and otherwise falls back to ``predict_proba``. (The earlier path
through skl2onnx's converter cost about a second of CPU at each first load of a version.)
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from mem_core.estimators.flat_trees import FlatTrees, from_state, predictor
from mem_core.model import OnePredictor, ReversalModel


class HistGB(ReversalModel):
    name = "hist_gb"
    estimator_type = HistGradientBoostingClassifier
    default_params = MappingProxyType(
        {
            "max_iter": 250,
            "learning_rate": 0.05,
            "max_leaf_nodes": 31,
            "min_samples_leaf": 300,
            "l2_regularization": 1.0,
            "early_stopping": False,
            "random_state": 0,
        }
    )

    @staticmethod
    def build(params: Mapping[str, Any]) -> HistGradientBoostingClassifier:
        return HistGradientBoostingClassifier(**params)

    def compile_one_row(self) -> OnePredictor | None:
        return compile_hist_gradient_boosting(self.estimator)

    def one_row_state(self) -> dict[str, np.ndarray] | None:
        if not _binary(self.estimator):
            return None
        t = flat_trees(self.estimator)
        return {name: np.asarray(getattr(t, name)) for name in FlatTrees.__dataclass_fields__}

    def compile_one_row_from(self, state: Mapping[str, np.ndarray]) -> OnePredictor | None:
        if not _binary(self.estimator):
            return None
        return from_state(state, int(self.estimator.n_features_in_))


def _binary(model: Any) -> bool:
    return isinstance(model, HistGradientBoostingClassifier) and len(getattr(model, "classes_", ())) == 2


def flat_trees(model: HistGradientBoostingClassifier) -> FlatTrees:
    """The fitted trees of a binary model (``model._predictors``: one tree per iteration, each a
    structured array of nodes) as flat arrays; a categorical split raises ``ValueError``."""
    if getattr(model, "is_categorical_", None) is not None and np.any(model.is_categorical_):
        raise ValueError("categorical splits are not walked")
    branches: list[tuple[int, float, int, bool, int, bool, bool]] = []
    leaf_weights: list[float] = []
    roots: list[int] = []
    for [tree] in model._predictors:
        nodes = tree.nodes
        leaf = np.asarray(nodes["is_leaf"], dtype=bool)
        # interior nodes and leaves get their own index spaces, tree after tree
        index = np.where(leaf, np.cumsum(leaf) - 1 + len(leaf_weights), np.cumsum(~leaf) - 1 + len(branches))
        leaf_weights += [float(v) for v in nodes["value"][leaf]]
        if leaf[0]:  # a tree that is one leaf: a split whose two sides are that leaf
            roots.append(len(branches))
            branches.append((0, 0.0, int(index[0]), True, int(index[0]), True, False))
            continue
        roots.append(int(index[0]))
        for n in np.flatnonzero(~leaf):
            left, right = int(nodes["left"][n]), int(nodes["right"][n])
            branches.append(
                (
                    int(nodes["feature_idx"][n]),
                    float(nodes["num_threshold"][n]),
                    int(index[left]),
                    bool(leaf[left]),
                    int(index[right]),
                    bool(leaf[right]),
                    bool(nodes["missing_go_to_left"][n]),
                )
            )
    feature, split, true_id, true_leaf, false_id, false_leaf, missing_true = (list(c) for c in zip(*branches))
    ints = np.int64
    return FlatTrees(
        base=float(np.asarray(model._baseline_prediction, dtype=np.float64).ravel()[0]),
        roots=np.array(roots, dtype=ints),
        feature=np.array(feature, dtype=ints),
        split=np.array(split, dtype=np.float64),
        true_id=np.array(true_id, dtype=ints),
        true_leaf=np.array(true_leaf, dtype=np.bool_),
        false_id=np.array(false_id, dtype=ints),
        false_leaf=np.array(false_leaf, dtype=np.bool_),
        missing_true=np.array(missing_true, dtype=np.bool_),
        leaf_weights=np.array(leaf_weights, dtype=np.float64),
    )


def compile_hist_gradient_boosting(model: Any) -> OnePredictor | None:
    """A function row -> P(class 1) for a fitted binary HistGradientBoostingClassifier (its trees
    walked in one compiled loop), else None. Serving verifies it against ``predict_proba``
    before use."""
    if not _binary(model):
        return None
    return predictor(flat_trees(model), int(model.n_features_in_))
