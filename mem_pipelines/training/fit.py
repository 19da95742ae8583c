"""Fitting one model on a dataset's training part and scoring it on the purged time holdout; the
walk-forward of the same model type and feature set over the dataset's window."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from mem_core import estimators, feature_sets
from mem_core import labels as label_defs
from mem_core.model import ReversalModel
from mem_pipelines.lib.evaluation import HOLDOUT_FRACTION, Metrics, Split, evaluate
from mem_pipelines.lib.skill import SkillReport, skill_report
from mem_pipelines.lib.walkforward import Fold, WalkForward, rolling_folds, walk_forward
from mem_pipelines.training import defaults
from mem_pipelines.training.dataset import split_dataset


@contextmanager
def limited_threads(threads: int = defaults.THREADS) -> Iterator[None]:
    """Native thread pools (OpenMP, BLAS) limited to ``threads`` inside the block."""
    with threadpool_limits(limits=threads):
        yield


@dataclass(frozen=True)
class FitResult:
    split: Split
    metrics: Metrics
    #: Skill over the constant base rate of the training rows, with day-block bootstrap CIs.
    skill: SkillReport
    importances: dict[str, float]
    fit_seconds: float
    model: ReversalModel = field(repr=False)
    #: P(reversal) on the holdout rows (``split.holdout`` order), for the plots.
    holdout_proba: np.ndarray | None = field(default=None, repr=False)


def new_model(
    estimator: str = defaults.ESTIMATOR,
    estimator_params: Mapping[str, Any] | None = None,
    feature_set: str = defaults.FEATURE_SET,
) -> ReversalModel:
    """An unfitted model of type ``estimator`` (its default parameters updated with
    ``estimator_params``) over ``feature_set``."""
    return estimators.create(estimator, estimator_params, feature_sets.get(feature_set))


def fit_model(
    dataset: pd.DataFrame,
    *,
    estimator: str = defaults.ESTIMATOR,
    estimator_params: Mapping[str, Any] | None = None,
    feature_set: str = defaults.FEATURE_SET,
    holdout_fraction: float = HOLDOUT_FRACTION,
    horizon: int = label_defs.HORIZON,
) -> FitResult:
    """Time split with purge, fit the named model on the training rows; holdout metrics with the
    majority baseline and skill over the training base rate."""
    model = new_model(estimator, estimator_params, feature_set)
    split = split_dataset(dataset, holdout_fraction, horizon)
    X = model.feature_set.matrix(dataset)
    y = dataset["label"].to_numpy(dtype="int64")
    with limited_threads():
        started = time.perf_counter()
        model.fit(X[split.train], y[split.train])
        fit_seconds = time.perf_counter() - started
        proba = model.predict_proba(X[split.holdout])
    metrics = evaluate(y[split.holdout], proba)
    skill = skill_report(y[split.holdout], proba, dataset["ts"].iloc[split.holdout], float(y[split.train].mean()))
    return FitResult(split, metrics, skill, model.importances(), fit_seconds, model, proba)


@dataclass(frozen=True)
class WalkForwardRun:
    result: WalkForward
    folds: tuple[Fold, ...]
    train_days: float
    seconds: float


def window_folds(
    dataset: pd.DataFrame,
    folds: int = defaults.WALK_FORWARD_FOLDS,
    train_days: float | None = None,
    horizon: int = label_defs.HORIZON,
) -> tuple[list[Fold], float]:
    """``folds`` rolling folds tiling the end of the dataset's window, each trained on
    ``train_days`` (default: ``WALK_FORWARD_TRAIN_FRACTION`` of the window) before it; a
    ``ValueError`` when the window is too short for them."""
    ts = pd.to_datetime(dataset["ts"], utc=True)
    first, last = ts.min(), ts.max()
    if train_days is None:
        span_days = (last - first) / pd.Timedelta(days=1)
        train_days = round(span_days * defaults.WALK_FORWARD_TRAIN_FRACTION, 2)
    return rolling_folds(first, last, folds=folds, train_days=train_days, horizon=horizon), float(train_days)


def run_walk_forward(
    dataset: pd.DataFrame,
    *,
    estimator: str = defaults.ESTIMATOR,
    estimator_params: Mapping[str, Any] | None = None,
    feature_set: str = defaults.FEATURE_SET,
    folds: int = defaults.WALK_FORWARD_FOLDS,
    train_days: float | None = None,
    horizon: int = label_defs.HORIZON,
) -> WalkForwardRun:
    """Walk-forward of the model type and feature set the run trains, over the dataset's window."""
    fold_list, days = window_folds(dataset, folds, train_days, horizon)
    names = feature_sets.get(feature_set).names

    def make() -> Any:
        return new_model(estimator, estimator_params, feature_set).estimator

    started = time.perf_counter()
    with limited_threads():
        result = walk_forward(dataset, names, make, fold_list)
    return WalkForwardRun(result, tuple(fold_list), days, time.perf_counter() - started)
