"""What one training run logs to MLflow: params (model type and parameters, label and split
definitions, feature set, lineage), tags, holdout metrics, feature importances, the confusion
matrix and the model, registered as a version with alias ``challenger``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mem_core import estimators, feature_sets, registry
from mem_core import labels as label_defs
from mem_core.model import ReversalModel
from mem_pipelines.lib.evaluation import HOLDOUT_FRACTION, Metrics, Split
from mem_pipelines.training.dataset import lineage
from mem_pipelines.training.fit import FitResult, fit_model


@dataclass(frozen=True)
class TrainingResult:
    run_id: str
    version: str
    metrics: Metrics
    split: Split
    importances: dict[str, float]
    lineage: dict[str, str]
    fit_seconds: float
    experiment_id: str
    model: ReversalModel = field(repr=False)


def train_and_log(
    dataset: pd.DataFrame,
    *,
    tracking_uri: str,
    estimator: str = estimators.DEFAULT,
    estimator_params: Mapping[str, Any] | None = None,
    feature_set: str = feature_sets.SEED.name,
    holdout_fraction: float = HOLDOUT_FRACTION,
    horizon: int = label_defs.HORIZON,
    dagster_run_id: str | None = None,
) -> TrainingResult:
    """Fit on the training part, score the holdout, log one MLflow run, register a challenger."""
    fitted = fit_model(
        dataset,
        estimator=estimator,
        estimator_params=estimator_params,
        feature_set=feature_set,
        holdout_fraction=holdout_fraction,
        horizon=horizon,
    )
    return log_training_run(
        dataset,
        fitted,
        tracking_uri=tracking_uri,
        holdout_fraction=holdout_fraction,
        horizon=horizon,
        dagster_run_id=dagster_run_id,
    )


def log_training_run(
    dataset: pd.DataFrame,
    fitted: FitResult,
    *,
    tracking_uri: str,
    holdout_fraction: float,
    horizon: int,
    dagster_run_id: str | None = None,
) -> TrainingResult:
    """One MLflow run of ``fitted`` and a registered version with alias ``challenger``."""
    import mlflow

    model, split, metrics = fitted.model, fitted.split, fitted.metrics
    features = model.feature_set
    X_train = features.matrix(dataset.iloc[split.train])
    y_train = dataset["label"].to_numpy(dtype="int64")[split.train]
    data_lineage = lineage(dataset, dagster_run_id, features)

    experiment_id = registry.ensure_experiment(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"reversal-{data_lineage['data.end'][:10]}") as run:
        mlflow.log_params(
            {
                "estimator": model.name,
                **{f"model.{k}": v for k, v in model.params().items()},
                "label.horizon": horizon,
                "label.k": label_defs.DEFAULT_K,
                "label.trend_lookback": label_defs.TREND_LOOKBACK,
                "label.vol_window": label_defs.VOL_WINDOW,
                "feature_set": features.name,
                "features": ",".join(features.names),
                "features.serving_history": features.history,
                "split.holdout_fraction": holdout_fraction,
                "split.purge": horizon,
                **{k: v for k, v in data_lineage.items() if k != "dagster.run_id"},
            }
        )
        mlflow.set_tags(
            {
                **data_lineage,
                "split.holdout_start": split.holdout_start.isoformat(),
                "split.train_end": split.train_end.isoformat(),
            }
        )
        mlflow.log_metrics({f"holdout_{k}": v for k, v in metrics.scalars().items()})
        mlflow.log_metrics(
            {
                "train_rows": float(len(split.train)),
                "fit_seconds": fitted.fit_seconds,
                "train_positive_rate": float(y_train.mean()),
            }
        )
        if fitted.importances:
            mlflow.log_metrics({f"importance_{k}": v for k, v in fitted.importances.items()})
            mlflow.log_dict(fitted.importances, "feature_importances.json")
        mlflow.log_dict(
            {"labels": ["no reversal", "reversal"], "rows_true_cols_predicted": [list(r) for r in metrics.confusion]},
            "confusion_matrix.json",
        )
        version = registry.log_model_version(
            model,
            X_train=X_train,
            uri=tracking_uri,
            extra_version_tags={
                "data.sha256": data_lineage["data.sha256"],
                "holdout_accuracy": f"{metrics.accuracy:.6f}",
                "holdout_baseline_accuracy": f"{metrics.baseline_accuracy:.6f}",
                "dagster.run_id": dagster_run_id or "",
            },
        )
    return TrainingResult(
        run.info.run_id,
        version,
        metrics,
        split,
        fitted.importances,
        data_lineage,
        fitted.fit_seconds,
        experiment_id,
        model,
    )
