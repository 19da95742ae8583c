"""``hist_gb``: scikit-learn's HistGradientBoostingClassifier, deterministic, with an ONNX one-row path.

Parameters: those of the walk-forward study (docs/ml.md): 250 iterations at learning rate 0.05,
at most 31 leaves per tree, at least 300 rows per leaf, L2 regularisation 1. Early stopping is off
(it would hold out a random part of the training rows) and the seed is fixed, so the same dataset
always gives the same model.

One row through ``predict_proba`` costs 1-2.5 ms (scikit-learn's per-call checks and one OpenMP
region per tree), and the trees are not public. ``compile_hist_gradient_boosting`` therefore
converts the fitted model with skl2onnx and runs it with onnxruntime (one thread, sequential):
tens of microseconds per row.

Exactness. skl2onnx's converter for this model writes thresholds and leaf values as float32
attributes of a ``TreeEnsembleClassifier``; a feature equal to a threshold (HistGradientBoosting
splits on values seen in training: time-of-day values, an RSI of 50, an efficiency ratio of 0)
then falls on the other side, and probabilities differ by up to 0.14 (measured on real
``regime_v1`` rows). Instead, skl2onnx's own converter function runs with ``ai.onnx.ml`` opset 3
attribute types (float64 arrays) and its attributes are rebuilt as an ``ai.onnx.ml`` opset 5
``TreeEnsemble``, whose splits, leaf weights, input and output are all double: the comparisons
are scikit-learn's (``x <= threshold``, NaN to the side it learned) and the sum differs only by
summation order (~1e-15). Serving verifies the result against ``predict_proba`` to 1e-9 before
using it (``mem_serving.fast_predict``) and otherwise falls back to ``predict_proba``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

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


def tree_ensemble_model(attrs: Mapping[str, Any], n_features: int) -> tuple[bytes, float]:
    """An ONNX model (``ai.onnx.ml`` opset 5 ``TreeEnsemble``, double throughout) computing the
    sum of the trees' leaf weights of each row, and the base value to add before the logistic.

    ``attrs`` are the ``TreeEnsembleClassifier`` attributes of a binary model with one tree per
    iteration and a logistic output (``tree_attributes``); anything else raises ``ValueError``."""
    from onnx import TensorProto, checker, helper, numpy_helper

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

    # interior nodes and leaves get their own index spaces in opset 5
    branch_index: dict[tuple[int, int], int] = {}
    leaf_index: dict[tuple[int, int], int] = {}
    for t, n, mode in zip(tree_ids, node_ids, modes):
        index = branch_index if mode == "BRANCH_LEQ" else leaf_index
        index[(t, n)] = len(index)
    leaf_weights = [weights.get(key, 0.0) for key in leaf_index]

    def child(t: int, n: int) -> tuple[int, int]:
        return (leaf_index[(t, n)], 1) if (t, n) in leaf_index else (branch_index[(t, n)], 0)

    # one row per interior node: feature, split, true child, true is leaf, false child, false is
    # leaf, missing goes true
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

    node = helper.make_node(
        "TreeEnsemble",
        ["X"],
        ["raw"],
        domain="ai.onnx.ml",
        n_targets=1,
        aggregate_function=1,
        post_transform=0,
        tree_roots=roots,
        nodes_featureids=feature,
        nodes_splits=numpy_helper.from_array(np.array(split, dtype=np.float64)),
        nodes_modes=numpy_helper.from_array(np.zeros(len(feature), dtype=np.uint8)),  # 0: BRANCH_LEQ
        nodes_truenodeids=true_id,
        nodes_trueleafs=true_leaf,
        nodes_falsenodeids=false_id,
        nodes_falseleafs=false_leaf,
        nodes_missing_value_tracks_true=missing_true,
        leaf_targetids=[0] * len(leaf_weights),
        leaf_weights=numpy_helper.from_array(np.array(leaf_weights, dtype=np.float64)),
    )
    graph = helper.make_graph(
        [node],
        "hist_gb",
        [helper.make_tensor_value_info("X", TensorProto.DOUBLE, [None, n_features])],
        [helper.make_tensor_value_info("raw", TensorProto.DOUBLE, [None, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("ai.onnx.ml", 5)])
    checker.check_model(model)
    return model.SerializeToString(), base[0]


def compile_hist_gradient_boosting(model: Any) -> OnePredictor | None:
    """A function row -> P(class 1) for a fitted binary HistGradientBoostingClassifier (onnxruntime
    on one thread), else None. Serving verifies it against ``predict_proba`` before use."""
    if not isinstance(model, HistGradientBoostingClassifier) or len(getattr(model, "classes_", ())) != 2:
        return None
    import onnxruntime as ort

    n_features = int(model.n_features_in_)
    onnx_bytes, base = tree_ensemble_model(tree_attributes(model), n_features)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    run = session.run
    outputs = ["raw"]
    exp = math.exp

    def predict_one(x: np.ndarray) -> float:
        row = np.asarray(x, dtype=np.float64).reshape(1, n_features)
        raw = base + float(run(outputs, {"X": row})[0][0, 0])
        if raw >= 0.0:
            return 1.0 / (1.0 + exp(-raw))
        odds = exp(raw)
        return odds / (1.0 + odds)

    return predict_one
