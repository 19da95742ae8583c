"""Fitting one model on a dataset's training part and scoring it on the purged time holdout."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mem_core import estimators, feature_sets
from mem_core import labels as label_defs
from mem_core.model import ReversalModel
from mem_pipelines.lib.evaluation import HOLDOUT_FRACTION, Metrics, Split, evaluate
from mem_pipelines.training.dataset import split_dataset


@dataclass(frozen=True)
class FitResult:
    split: Split
    metrics: Metrics
    importances: dict[str, float]
    fit_seconds: float
    model: ReversalModel = field(repr=False)


def fit_model(
    dataset: pd.DataFrame,
    *,
    estimator: str = estimators.DEFAULT,
    estimator_params: Mapping[str, Any] | None = None,
    feature_set: str = feature_sets.SEED.name,
    holdout_fraction: float = HOLDOUT_FRACTION,
    horizon: int = label_defs.HORIZON,
) -> FitResult:
    """Time split with purge, fit the named model on the training rows, holdout metrics with the
    majority baseline."""
    model = estimators.create(estimator, estimator_params, feature_sets.get(feature_set))
    split = split_dataset(dataset, holdout_fraction, horizon)
    X = model.feature_set.matrix(dataset)
    y = dataset["label"].to_numpy(dtype="int64")
    started = time.perf_counter()
    model.fit(X[split.train], y[split.train])
    fit_seconds = time.perf_counter() - started
    metrics = evaluate(y[split.holdout], model.predict_proba(X[split.holdout]))
    return FitResult(split, metrics, model.importances(), fit_seconds, model)
