"""``hist_gb``: scikit-learn's HistGradientBoostingClassifier, deterministic, with a compiled one-row path.

Parameters: those of the walk-forward study (docs/ml.md): 250 iterations at learning rate 0.05,
at most 31 leaves per tree, at least 300 rows per leaf, L2 regularisation 1. Early stopping is off
(it would hold out a random part of the training rows) and the seed is fixed, so the same dataset
always gives the same model.

One row through ``predict_proba`` costs 1-2.5 ms (scikit-learn's per-call checks and one OpenMP
region per tree), and the trees are not public. ``compile_hist_gradient_boosting`` therefore
reads the fitted trees through skl2onnx's converter and walks them in one numba loop
(``flat_trees``): a few microseconds per row.

Exactness. skl2onnx's converter for this model writes thresholds and leaf values as float32
attributes of a ``TreeEnsembleClassifier``; a feature equal to a threshold (HistGradientBoosting
splits on values seen in training: time-of-day values, an RSI of 50, an efficiency ratio of 0)
then falls on the other side, and probabilities differ by up to 0.14 (measured on real
``regime_v1`` rows). Instead, skl2onnx's own converter function runs with ``ai.onnx.ml`` opset 3
attribute types (float64 arrays), and those attributes become flat arrays (``flat_trees``) whose
splits and leaf weights are double: the comparisons are scikit-learn's (``x <= threshold``, NaN to
the side it learned) and the sum differs only by summation order (~1e-15). Serving verifies the
result against ``predict_proba`` to 1e-9 before using it (``mem_serving.fast_predict``) and
otherwise falls back to ``predict_proba``.
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
        t = flat_trees(tree_attributes(self.estimator))
        return {name: np.asarray(getattr(t, name)) for name in FlatTrees.__dataclass_fields__}

    def compile_one_row_from(self, state: Mapping[str, np.ndarray]) -> OnePredictor | None:
        if not _binary(self.estimator):
            return None
        return from_state(state, int(self.estimator.n_features_in_))


def _binary(model: Any) -> bool:
    return isinstance(model, HistGradientBoostingClassifier) and len(getattr(model, "classes_", ())) == 2


class _CaptureTrees:
    """A stand-in for skl2onnx's model container that keeps the attributes of the tree-ensemble
    node the converter adds (and passes every call on to the real container)."""

    def __init__(self, container: Any) -> None:
        self.container = container
        self.trees: dict[str, Any] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.container, name)

    def add_node(
        self, op_type: str, inputs: Any, outputs: Any, op_domain: str = "", op_version: int | None = None, **attrs: Any
    ) -> None:
        if op_type == "TreeEnsembleClassifier":
            self.trees = dict(attrs)
        self.container.add_node(op_type, inputs, outputs, op_domain=op_domain, op_version=op_version, **attrs)


def tree_attributes(model: HistGradientBoostingClassifier) -> dict[str, Any]:
    """The ``TreeEnsembleClassifier`` attributes skl2onnx derives from a fitted model, with
    thresholds, leaf weights and base values as float64 (``ai.onnx.ml`` opset 3 types)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.operator_converters.random_forest import convert_sklearn_random_forest_classifier

    captured: list[dict[str, Any]] = []

    def convert(scope: Any, operator: Any, container: Any) -> None:
        capture = _CaptureTrees(container)
        convert_sklearn_random_forest_classifier(scope, operator, capture, op_version=3)
        if capture.trees is not None:
            captured.append(capture.trees)

    convert_sklearn(
        model,
        initial_types=[("X", DoubleTensorType([None, int(model.n_features_in_)]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
        options={id(model): {"zipmap": False}},
        custom_conversion_functions={HistGradientBoostingClassifier: convert},
    )
    if len(captured) != 1:
        raise ValueError(f"expected one tree ensemble from skl2onnx, got {len(captured)}")
    return captured[0]


def flat_trees(attrs: Mapping[str, Any]) -> FlatTrees:
    """The ensemble of ``TreeEnsembleClassifier`` attributes of a binary model with one tree per
    iteration and a logistic output (``tree_attributes``); anything else raises ``ValueError``."""
    if attrs.get("post_transform") != "LOGISTIC" or set(attrs["class_ids"]) != {0}:
        raise ValueError("not a binary logistic tree ensemble")
    base = [float(v) for v in np.asarray(attrs["base_values"], dtype=np.float64).ravel()]
    if len(base) != 1:
        raise ValueError(f"expected one base value, got {len(base)}")
    modes = list(attrs["nodes_modes"])
    if any(m not in ("BRANCH_LEQ", "LEAF") for m in modes):
        raise ValueError(f"unsupported node modes {sorted(set(modes) - {'BRANCH_LEQ', 'LEAF'})}")

    tree_ids = [int(t) for t in attrs["nodes_treeids"]]
    node_ids = [int(n) for n in attrs["nodes_nodeids"]]
    splits = np.asarray(attrs["nodes_values"], dtype=np.float64).ravel()
    weights: dict[tuple[int, int], float] = {}
    for t, n, w in zip(
        attrs["class_treeids"], attrs["class_nodeids"], np.asarray(attrs["class_weights"], dtype=np.float64).ravel()
    ):
        weights[(int(t), int(n))] = weights.get((int(t), int(n)), 0.0) + float(w)

    # interior nodes and leaves get their own index spaces
    branch_index: dict[tuple[int, int], int] = {}
    leaf_index: dict[tuple[int, int], int] = {}
    for t, n, mode in zip(tree_ids, node_ids, modes):
        index = branch_index if mode == "BRANCH_LEQ" else leaf_index
        index[(t, n)] = len(index)
    leaf_weights = [weights.get(key, 0.0) for key in leaf_index]

    def child(t: int, n: int) -> tuple[int, int]:
        return (leaf_index[(t, n)], 1) if (t, n) in leaf_index else (branch_index[(t, n)], 0)

    branches: list[tuple[int, float, int, int, int, int, int]] = []
    for i, (t, mode) in enumerate(zip(tree_ids, modes)):
        if mode != "BRANCH_LEQ":
            continue
        true_child = child(t, int(attrs["nodes_truenodeids"][i]))
        false_child = child(t, int(attrs["nodes_falsenodeids"][i]))
        branches.append(
            (
                int(attrs["nodes_featureids"][i]),
                float(splits[i]),
                *true_child,
                *false_child,
                int(attrs["nodes_missing_value_tracks_true"][i]),
            )
        )
    roots = []
    for t in sorted(set(tree_ids)):
        if (t, 0) in branch_index:
            roots.append(branch_index[(t, 0)])
        else:  # a tree that is one leaf: a split whose two sides are that leaf
            leaf = leaf_index[(t, 0)]
            roots.append(len(branches))
            branches.append((0, 0.0, leaf, 1, leaf, 1, 0))
    feature, split, true_id, true_leaf, false_id, false_leaf, missing_true = (list(col) for col in zip(*branches))
    ints = np.int64
    return FlatTrees(
        base=base[0],
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
    return predictor(flat_trees(tree_attributes(model)), int(model.n_features_in_))
