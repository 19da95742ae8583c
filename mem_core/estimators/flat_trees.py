"""A binary logistic tree ensemble walked by one compiled loop: the one-row path of ``hist_gb``
(``mem_core.estimators.hist_gb`` derives the arrays from a fitted model). Imports neither
scikit-learn nor skl2onnx, so serving rebuilds the path from kept arrays (``from_state``) without them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numba import get_num_threads, njit, prange

from mem_core import compiled
from mem_core.model import OnePredictor


@dataclass(frozen=True)
class FlatTrees:
    """A binary logistic tree ensemble as flat arrays, one entry per interior node: the feature it
    tests, its split (go "true" when ``x <= split``, or when ``x`` is NaN and ``missing_true``),
    and for each side the next node or, when ``*_leaf``, the index of a leaf weight. ``roots``
    holds each tree's first node in tree order; P(class 1) = logistic(base + sum of the leaves)."""

    base: float
    roots: np.ndarray
    feature: np.ndarray
    split: np.ndarray
    true_id: np.ndarray
    true_leaf: np.ndarray
    false_id: np.ndarray
    false_leaf: np.ndarray
    missing_true: np.ndarray
    leaf_weights: np.ndarray


@njit(cache=True)
def _leaf_sum(
    x: np.ndarray,
    roots: np.ndarray,
    feature: np.ndarray,
    split: np.ndarray,
    true_id: np.ndarray,
    true_leaf: np.ndarray,
    false_id: np.ndarray,
    false_leaf: np.ndarray,
    missing_true: np.ndarray,
    leaf_weights: np.ndarray,
) -> float:
    """The sum of the leaf weights ``x`` reaches, tree by tree."""
    total = 0.0
    for root in roots:
        node = root
        while True:
            v = x[feature[node]]
            if v <= split[node] or (v != v and missing_true[node]):
                nxt, leaf = true_id[node], true_leaf[node]
            else:
                nxt, leaf = false_id[node], false_leaf[node]
            if leaf:
                total += leaf_weights[nxt]
                break
            node = nxt
    return total


@njit(cache=True)
def _probabilities(x: np.ndarray, base: float, arrays: tuple, out: np.ndarray) -> None:
    """P(class 1) of every row of ``x`` into ``out``: ``_leaf_sum`` and the logistic of
    ``predict_one``, row by row, in one compiled call (the same arithmetic, the same bits)."""
    for i in range(x.shape[0]):
        raw = base + _leaf_sum(x[i], *arrays)
        if raw >= 0.0:
            out[i] = 1.0 / (1.0 + math.exp(-raw))
        else:
            odds = math.exp(raw)
            out[i] = odds / (1.0 + odds)


@njit(cache=True, parallel=True)
def _probabilities_parallel(x: np.ndarray, base: float, arrays: tuple, out: np.ndarray, parts: int) -> None:
    """``_probabilities`` in ``parts`` contiguous shares of the rows, one per thread of numba's pool."""
    n = x.shape[0]
    step = (n + parts - 1) // parts
    for t in prange(parts):
        _probabilities(x[t * step : min(n, (t + 1) * step)], base, arrays, out[t * step : min(n, (t + 1) * step)])


def predictor(t: FlatTrees, n_features: int) -> OnePredictor:
    """Row -> P(class 1) over ``t``, compiled (or loaded from numba's cache) before it returns;
    its ``many`` attribute: an ``(n, n_features)`` matrix -> the ``n`` probabilities at once."""
    arrays = (
        t.roots,
        t.feature,
        t.split,
        t.true_id,
        t.true_leaf,
        t.false_id,
        t.false_leaf,
        t.missing_true,
        t.leaf_weights,
    )
    base, exp = t.base, math.exp

    def predict_one(x: np.ndarray) -> float:
        row = np.ascontiguousarray(x, dtype=np.float64).reshape(n_features)
        raw = base + _leaf_sum(row, *arrays)
        if raw >= 0.0:
            return 1.0 / (1.0 + exp(-raw))
        odds = exp(raw)
        return odds / (1.0 + odds)

    def many(x: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(x, dtype=np.float64).reshape(-1, n_features)
        out = np.empty(rows.shape[0])
        if rows.shape[0] < compiled.PARALLEL_MIN_ROWS:
            _probabilities(rows, base, arrays, out)
        else:
            with compiled.LAUNCH:
                _probabilities_parallel(rows, base, arrays, out, get_num_threads())
        return out

    predict_one.many = many  # type: ignore[attr-defined]
    predict_one(np.zeros(n_features))  # compile (or load from numba's cache) now, not on the first call
    many(np.zeros((1, n_features)))
    many(np.zeros((compiled.PARALLEL_MIN_ROWS, n_features)))
    return predict_one


def from_state(state: Mapping[str, np.ndarray], n_features: int) -> OnePredictor:
    """``predictor`` over the arrays of ``FlatTrees`` kept by name (``HistGB.one_row_state``)."""
    arrays: dict[str, Any] = {f.name: np.asarray(state[f.name]) for f in fields(FlatTrees)}
    return predictor(FlatTrees(**{**arrays, "base": float(arrays["base"])}), n_features)
