"""What one training run logs to MLflow: params (model type and parameters, label and split
definitions, feature set, walk-forward set-up, lineage), tags, holdout metrics and skill, the
walk-forward (per-fold step metrics, summary metrics, a CSV table, a markdown table and a PNG
plot under ``walk_forward/``), feature importances, the confusion matrix, the holdout plots under
``plots/`` (ROC, reliability, confusion matrix, feature importances), the rows it trained on as
one MLflow dataset per symbol window (with its digest: the run's "Datasets") and the model,
registered as a version with alias ``challenger`` and a description saying what it was trained
on (with a warning when it does not beat its majority baseline or the constant base rate).

The run starts before the fit, so its duration covers the fit and the walk-forward."""

from __future__ import annotations

import functools
import tempfile
import uuid
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mem_core import labels as label_defs
from mem_core import registry
from mem_core.model import ReversalModel
from mem_pipelines.lib.evaluation import HOLDOUT_FRACTION, Metrics, Split
from mem_pipelines.lib.skill import SkillReport
from mem_pipelines.lib.walkforward import DEFAULT_EMBARGO
from mem_pipelines.training import defaults
from mem_pipelines.training.dataset import lineage
from mem_pipelines.training.fit import FitResult, WalkForwardRun, fit_model, limited_threads, run_walk_forward
from mem_pipelines.training.plots import (
    PLOTS_DIR,
    confusion_figure,
    importance_figure,
    permutation_importances,
    reliability_figure,
    roc_figure,
)
from mem_pipelines.training.render import walk_forward_frame, walk_forward_markdown, walk_forward_png

WALK_FORWARD_DIR = "walk_forward"
#: The tags a registered version carries beside the registry's own three (estimator, feature_set,
#: feature_names) and the gate's outcome: at most eight in all, what a reviewer filters on; every
#: other fact of the training is in the run's ``VERSION_DETAILS`` artifact (and its params/metrics).
VERSION_TAGS = ("data.sha256", "training.fingerprint", "dagster.run_id", "holdout.log_loss_gain_mnat")
VERSION_DETAILS = "version_details.json"


@dataclass(frozen=True)
class TrainingResult:
    run_id: str
    version: str
    metrics: Metrics
    skill: SkillReport
    split: Split
    importances: dict[str, float]
    lineage: dict[str, str]
    fit_seconds: float
    experiment_id: str
    model: ReversalModel = field(repr=False)
    walk_forward: WalkForwardRun | None = None
    walk_forward_png: bytes | None = field(default=None, repr=False)
    importance_kind: str = ""


def train_and_log(
    dataset: pd.DataFrame,
    *,
    tracking_uri: str,
    estimator: str = defaults.ESTIMATOR,
    estimator_params: Mapping[str, Any] | None = None,
    feature_set: str = defaults.FEATURE_SET,
    holdout_fraction: float = HOLDOUT_FRACTION,
    horizon: int = label_defs.HORIZON,
    walk_forward_folds: int = 0,
    walk_forward_train_days: float | None = None,
    dagster_run_id: str | None = None,
    extra_version_tags: Mapping[str, str] | None = None,
) -> TrainingResult:
    """Fit on the training part, score the holdout, walk forward (``walk_forward_folds`` > 0),
    log one MLflow run (started before the fit, so it spans it), register a challenger (with
    ``extra_version_tags``)."""
    import mlflow

    experiment_id = registry.ensure_experiment(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=run_name(dataset, estimator, feature_set),
        description=f"Training of {estimator} over {feature_set} on {data_span(dataset)} (in progress).",
        tags=source_tags(),
    ):
        fitted = fit_model(
            dataset,
            estimator=estimator,
            estimator_params=estimator_params,
            feature_set=feature_set,
            holdout_fraction=holdout_fraction,
            horizon=horizon,
        )
        wf = None
        if walk_forward_folds > 0:
            wf = run_walk_forward(
                dataset,
                estimator=estimator,
                estimator_params=estimator_params,
                feature_set=feature_set,
                folds=walk_forward_folds,
                train_days=walk_forward_train_days,
                horizon=horizon,
            )
        return log_training_run(
            dataset,
            fitted,
            tracking_uri=tracking_uri,
            holdout_fraction=holdout_fraction,
            horizon=horizon,
            walk_forward=wf,
            dagster_run_id=dagster_run_id,
            extra_version_tags=extra_version_tags,
        )


def run_name(
    dataset: pd.DataFrame, estimator: str = defaults.ESTIMATOR, feature_set: str = defaults.FEATURE_SET
) -> str:
    """Unique per run: what was trained, on data up to which day, and when (UTC, to the second)."""
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    last = pd.Timestamp(dataset["ts"].max()).date().isoformat()
    return f"{estimator}-{feature_set}-to-{last}-at-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:4]}"


def data_span(dataset: pd.DataFrame) -> str:
    ts = pd.to_datetime(dataset["ts"], utc=True)
    symbols = ", ".join(sorted(dataset["symbol"].unique()))
    return f"{len(dataset):,} rows of {symbols} from {ts.min():%Y-%m-%d %H:%M} to {ts.max():%Y-%m-%d %H:%M} UTC"


@functools.cache
def git_commit() -> str | None:
    """The project's git commit (HEAD), or None outside a git checkout."""
    import subprocess

    from mem_core.settings import PROJECT_ROOT

    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def source_tags() -> dict[str, str]:
    """MLflow's source tags for a run of this code: the git commit (``mlflow.source.git.commit``,
    shown on the run page) when known."""
    commit = git_commit()
    return {"mlflow.source.git.commit": commit} if commit else {}


def baseline_warning(accuracy: float, baseline_accuracy: float, log_loss_gain_mnat: float) -> str | None:
    """A plain warning when a model does not beat the majority class (accuracy) or the constant
    base rate (log loss) on its holdout; None when it beats both."""
    misses = []
    if accuracy <= baseline_accuracy:
        misses.append(
            f"its holdout accuracy {accuracy:.3f} does not beat always predicting the majority class ({baseline_accuracy:.3f})"
        )
    if log_loss_gain_mnat <= 0:
        misses.append(f"its log loss is no better than the constant base rate (gain {log_loss_gain_mnat:+.1f} mnat)")
    return ("Warning: " + "; ".join(misses) + ".") if misses else None


def version_description(dataset: pd.DataFrame, fitted: FitResult) -> str:
    """What a version was trained on and how it scored, before the gate adds its verdict."""
    m = fitted.metrics
    ts = pd.to_datetime(dataset["ts"], utc=True)
    symbols = ", ".join(sorted(dataset["symbol"].unique()))
    text = (
        f"{fitted.model.name} over feature set {fitted.model.feature_set.name}, trained on {len(fitted.split.train):,} "
        f"rows of {symbols} from {ts.min():%Y-%m-%d %H:%M} to {ts.max():%Y-%m-%d %H:%M} UTC. Holdout ({m.rows:,} rows): "
        f"accuracy {m.accuracy:.3f} vs majority baseline {m.baseline_accuracy:.3f}, "
        f"log-loss gain {fitted.skill['log_loss_gain_mnat']:+.1f} mnat over the constant base rate. "
        "Awaiting the champion gate."
    )
    warning = baseline_warning(m.accuracy, m.baseline_accuracy, fitted.skill["log_loss_gain_mnat"])
    return f"{text} {warning}" if warning else text


def log_datasets(dataset: pd.DataFrame) -> None:
    """The rows the run saw (candle time, features, label), one MLflow dataset per symbol
    window, each with its digest, as training inputs of the active run."""
    import mlflow

    for symbol, rows in dataset.groupby("symbol", sort=True):
        rows = rows.reset_index(drop=True)
        ts = pd.to_datetime(rows["ts"], utc=True)
        frame = rows.assign(ts=ts.dt.tz_localize(None))  # MLflow's schema has no time zones (UTC)
        name = f"{symbol} 5m {ts.min():%Y-%m-%d}..{ts.max():%Y-%m-%d}"
        data = mlflow.data.from_pandas(frame, name=name, targets="label")
        mlflow.log_input(data, context="training", tags={"symbol": str(symbol)})


#: How the importances of a model without impurity importances (``hist_gb``) are measured.
PERMUTATION = "permutation: mean increase of the holdout log loss when the feature is shuffled"
IMPURITY = "impurity: the estimator's feature_importances_ (training rows)"


def model_importances(dataset: pd.DataFrame, fitted: FitResult) -> tuple[dict[str, float], str]:
    """The model's feature importances and how they were measured: the estimator's own
    (impurity), else permutation importances on the holdout; ``({}, "")`` when neither exists."""
    if fitted.importances:
        return dict(fitted.importances), IMPURITY
    y = dataset["label"].to_numpy(dtype="int64")[fitted.split.holdout]
    if not len(y) or len(np.unique(y)) != 2:
        return {}, ""
    model = fitted.model
    X = model.feature_set.matrix(dataset.iloc[fitted.split.holdout])
    with limited_threads():
        return permutation_importances(model.estimator, X, y, model.feature_names), PERMUTATION


def log_plots(dataset: pd.DataFrame, fitted: FitResult, importances: Mapping[str, float], kind: str) -> None:
    """ROC, reliability, confusion matrix and feature importances under ``plots/``."""
    import matplotlib.pyplot as plt
    import mlflow

    figures = {"confusion_matrix.png": confusion_figure(fitted.metrics)}
    if fitted.holdout_proba is not None:
        y = dataset["label"].to_numpy(dtype="int64")[fitted.split.holdout]
        figures["roc_curve.png"] = roc_figure(y, fitted.holdout_proba)
        figures["reliability_curve.png"] = reliability_figure(y, fitted.holdout_proba)
    if importances:
        figures["feature_importances.png"] = importance_figure(importances, kind.split(":")[0] + " importances")
    for name, fig in figures.items():
        mlflow.log_figure(fig, f"{PLOTS_DIR}/{name}")
        plt.close(fig)


def skill_tags(prefix: str, report: SkillReport) -> dict[str, str]:
    gain = report.intervals["log_loss_gain_mnat"]
    return {
        f"{prefix}.log_loss_gain_mnat": f"{report['log_loss_gain_mnat']:.2f}",
        f"{prefix}.log_loss_gain_ci": f"[{gain.low:.2f}, {gain.high:.2f}]",
        f"{prefix}.roc_auc": f"{report['roc_auc']:.4f}",
        f"{prefix}.brier_skill": f"{report['brier_skill']:.4f}",
    }


def log_walk_forward(wf: WalkForwardRun, png: bytes) -> None:
    """Params, summary and per-fold step metrics, and the ``walk_forward/`` artifacts (CSV table,
    markdown table, PNG plot) of ``wf`` into the active MLflow run."""
    import mlflow

    result = wf.result
    mlflow.log_params(
        {
            "walk_forward.folds": len(wf.folds),
            "walk_forward.train_days": wf.train_days,
            "walk_forward.embargo_days": DEFAULT_EMBARGO / pd.Timedelta(days=1),
        }
    )
    mlflow.log_metrics(
        {**result.summary(), **result.pooled.flat("walk_forward_pooled_"), "walk_forward_seconds": wf.seconds}
    )
    for k, fold in enumerate(result.folds):
        mlflow.log_metrics({f"walk_forward_fold_{name}": value for name, value in fold.skill.flat().items()}, step=k)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        walk_forward_frame(result).to_csv(folder / "walk_forward.csv", index=False)
        (folder / "walk_forward.md").write_text(walk_forward_markdown(result) + "\n")
        (folder / "walk_forward.png").write_bytes(png)
        mlflow.log_artifacts(str(folder), WALK_FORWARD_DIR)


def log_training_run(
    dataset: pd.DataFrame,
    fitted: FitResult,
    *,
    tracking_uri: str,
    holdout_fraction: float,
    horizon: int,
    walk_forward: WalkForwardRun | None = None,
    dagster_run_id: str | None = None,
    extra_version_tags: Mapping[str, str] | None = None,
) -> TrainingResult:
    """One MLflow run of ``fitted`` (and its walk-forward) and a registered version with alias
    ``challenger``."""
    import mlflow

    model, split, metrics = fitted.model, fitted.split, fitted.metrics
    features = model.feature_set
    X_train = features.matrix(dataset.iloc[split.train])
    y_train = dataset["label"].to_numpy(dtype="int64")[split.train]
    data_lineage = lineage(dataset, dagster_run_id)
    png = None
    if walk_forward is not None:
        png = walk_forward_png(walk_forward.result, f"walk-forward: {model.name} over {features.name}")

    experiment_id = registry.ensure_experiment(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    active = mlflow.active_run()
    # inside train_and_log's run (started before the fit), else a run of its own
    with (
        nullcontext(active)
        if active is not None
        else mlflow.start_run(
            experiment_id=experiment_id,
            run_name=run_name(dataset, model.name, features.name),
            tags=source_tags(),
        )
    ) as run:
        assert run is not None
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
        mlflow.log_metrics(fitted.skill.flat("holdout_"))
        mlflow.log_metrics(
            {
                "train_rows": float(len(split.train)),
                "fit_seconds": fitted.fit_seconds,
                "train_positive_rate": float(y_train.mean()),
            }
        )
        importances, importance_kind = model_importances(dataset, fitted)
        if importances:
            mlflow.log_metrics({f"importance_{k}": v for k, v in importances.items()})
            mlflow.log_dict({"kind": importance_kind, "importances": importances}, "feature_importances.json")
        mlflow.log_dict(
            {"labels": ["no reversal", "reversal"], "rows_true_cols_predicted": [list(r) for r in metrics.confusion]},
            "confusion_matrix.json",
        )
        version_tags = {
            "data.sha256": data_lineage["data.sha256"],
            "data.start": data_lineage["data.start"],
            "data.end": data_lineage["data.end"],
            "data.symbols": data_lineage["data.symbols"],
            "label.horizon": str(horizon),
            "holdout_accuracy": f"{metrics.accuracy:.6f}",
            "holdout_baseline_accuracy": f"{metrics.baseline_accuracy:.6f}",
            **skill_tags("holdout", fitted.skill),
            "dagster.run_id": dagster_run_id or "",
            **(extra_version_tags or {}),
        }
        if walk_forward is not None and png is not None:
            log_walk_forward(walk_forward, png)
            summary = walk_forward.result.summary()
            version_tags.update(
                {
                    **skill_tags("walk_forward.pooled", walk_forward.result.pooled),
                    "walk_forward.folds": str(len(walk_forward.folds)),
                    "walk_forward.folds_gain_ci_above_zero": str(int(summary["walk_forward_folds_gain_ci_above_zero"])),
                    "walk_forward.median_roc_auc": f"{summary['walk_forward_median_roc_auc']:.4f}",
                }
            )
        log_plots(dataset, fitted, importances, importance_kind)
        log_datasets(dataset)
        described = version_description(dataset, fitted)
        kept = {k: v for k, v in version_tags.items() if k in VERSION_TAGS}
        mlflow.log_dict(version_tags, VERSION_DETAILS)  # every fact, beside the few tags a version keeps
        version = registry.log_model_version(
            model,
            X_train=X_train,
            uri=tracking_uri,
            extra_version_tags=kept,
            description=described,
        )
        # the run's description (MLflow's run page): what it trained and scored, and its version
        mlflow.set_tag(
            registry.NOTE_TAG,
            described.replace("Awaiting the champion gate.", f"Registered as {registry.MODEL_NAME} v{version}."),
        )
    return TrainingResult(
        run.info.run_id,
        version,
        metrics,
        fitted.skill,
        split,
        importances,
        data_lineage,
        fitted.fit_seconds,
        experiment_id,
        model,
        walk_forward,
        png,
        importance_kind,
    )
