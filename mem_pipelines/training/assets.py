"""Training assets: candles -> features, labels (per symbol) -> training_dataset -> reversal_model
-> champion_gate. Bodies are thin; the work is in mem_pipelines.lib and the training modules
(dataset, fit, mlflow_logging, gate_runner, render).

``features`` and ``labels`` are partitioned by symbol like ``candles`` and computed over the
symbol's whole stored history (so the EMA warm-up never eats into a training window). They use
a single-run backfill policy and the ``training_frames`` IO manager (one parquet file per symbol),
so one run can refresh every symbol and then train: the ``train_and_gate`` job runs over the
full symbol range. ``training_dataset`` cuts the time window (config: ``last_days`` or
``start``/``end``).
"""

from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from mem_core import estimators, registry
from mem_core.feature_sets import SEED
from mem_core.labels import HORIZON, reversal_labels
from mem_core.questdb.store import read_candles
from mem_pipelines.lib.evaluation import HOLDOUT_FRACTION
from mem_pipelines.lib.gate import GatePolicy
from mem_pipelines.resources import MlflowResource, QuestDBResource
from mem_pipelines.training.dataset import build_dataset, data_hash
from mem_pipelines.training.gate_runner import GateError, run_gate
from mem_pipelines.training.mlflow_logging import train_and_log
from mem_pipelines.training.render import (
    confusion_markdown,
    importance_markdown,
    metrics_table,
)

GROUP = "training"
CANDLES = dg.AssetKey("candles")


def _per_symbol(
    context: dg.AssetExecutionContext, questdb: QuestDBResource, compute
) -> tuple[dict[str, pd.DataFrame], dict]:
    settings = questdb.settings()
    out, rows = {}, {}
    for symbol in context.partition_keys:
        candles = read_candles(settings, symbol)
        if candles.empty:
            raise ValueError(f"no candles for {symbol} in QuestDB; ingest them first")
        out[symbol] = compute(candles)
        rows[symbol] = len(out[symbol])
    return out, rows


def build_symbol_assets(partitions_def: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """``features`` and ``labels``, partitioned exactly like ``candles``."""

    @dg.asset(
        partitions_def=partitions_def,
        deps=[CANDLES],
        backfill_policy=dg.BackfillPolicy.single_run(),
        io_manager_key="training_frames",
        group_name=GROUP,
        kinds={"pandas"},
    )
    def features(context: dg.AssetExecutionContext, questdb: QuestDBResource) -> dg.Output[dict[str, pd.DataFrame]]:
        """The 12 scale-free features per candle (pandas-ta) over the symbol's stored history,
        warm-up dropped; see docs/ml.md."""
        frames, rows = _per_symbol(context, questdb, SEED.frame)
        last = {s: f[list(SEED.names)].iloc[-1].round(6).to_dict() for s, f in frames.items() if len(f)}
        return dg.Output(
            frames,
            metadata={
                "rows": dg.MetadataValue.int(sum(rows.values())),
                "rows_per_symbol": dg.MetadataValue.json(rows),
                "features": dg.MetadataValue.json(list(SEED.names)),
                "newest_row": dg.MetadataValue.json(last),
            },
        )

    @dg.asset(
        partitions_def=partitions_def,
        deps=[CANDLES],
        backfill_policy=dg.BackfillPolicy.single_run(),
        io_manager_key="training_frames",
        group_name=GROUP,
        kinds={"pandas"},
    )
    def labels(context: dg.AssetExecutionContext, questdb: QuestDBResource) -> dg.Output[dict[str, pd.DataFrame]]:
        """Reversal labels (horizon 10, k·σ·√H against the prior 20-candle trend); see docs/ml.md."""
        frames, rows = _per_symbol(context, questdb, reversal_labels)
        rates = {s: round(float(f["label"].mean()), 4) if len(f) else None for s, f in frames.items()}
        return dg.Output(
            frames,
            metadata={
                "rows": dg.MetadataValue.int(sum(rows.values())),
                "positive_rate_per_symbol": dg.MetadataValue.json(rates),
            },
        )

    return [features, labels]


class WindowConfig(dg.Config):
    """The training window. ``last_days`` (counted back from the newest labelled candle) wins
    over ``start``/``end`` (ISO dates, UTC, half-open). Empty: everything stored."""

    last_days: int | None = Field(default=None, description="train on the last N days")
    start: str | None = Field(default=None, description="inclusive start, e.g. 2025-06-01")
    end: str | None = Field(default=None, description="exclusive end, e.g. 2025-09-01")
    symbols: list[str] | None = Field(default=None, description="subset of symbols; empty = all")


def _window(config: WindowConfig, latest: pd.Timestamp) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    if config.last_days is not None:
        if config.last_days <= 0:
            raise ValueError("last_days must be positive")
        return latest - pd.Timedelta(days=config.last_days), None
    start = pd.Timestamp(config.start, tz="UTC") if config.start else None
    end = pd.Timestamp(config.end, tz="UTC") if config.end else None
    if start is not None and end is not None and start >= end:
        raise ValueError("start must be before end")
    return start, end


@dg.asset(
    ins={
        "features": dg.AssetIn(key="features", input_manager_key="training_frames"),
        "labels": dg.AssetIn(key="labels", input_manager_key="training_frames"),
    },
    group_name=GROUP,
    kinds={"pandas"},
)
def training_dataset(
    context: dg.AssetExecutionContext,
    config: WindowConfig,
    features: dict[str, pd.DataFrame],
    labels: dict[str, pd.DataFrame],
) -> dg.Output[pd.DataFrame]:
    """All symbols' features joined with labels on ``ts``, cut to the window, ordered by time."""
    symbols = sorted(config.symbols or features.keys())
    unknown = [s for s in symbols if s not in features or s not in labels]
    if unknown:
        raise ValueError(f"no features/labels for {unknown}")
    latest = max(pd.Timestamp(labels[s]["ts"].max()) for s in symbols if len(labels[s]))
    start, end = _window(config, latest)
    data = build_dataset({s: (features[s], labels[s]) for s in symbols}, start, end)
    if data.empty:
        raise ValueError(f"no rows in the window [{start}, {end})")
    per_symbol = data.groupby("symbol").size().to_dict()
    return dg.Output(
        data,
        metadata={
            "rows": dg.MetadataValue.int(len(data)),
            "rows_per_symbol": dg.MetadataValue.json({k: int(v) for k, v in per_symbol.items()}),
            "start": dg.MetadataValue.text(pd.Timestamp(data["ts"].min()).isoformat()),
            "end": dg.MetadataValue.text(pd.Timestamp(data["ts"].max()).isoformat()),
            "positive_rate": dg.MetadataValue.float(float(data["label"].mean())),
            "data_sha256": dg.MetadataValue.text(data_hash(data)),
        },
    )


class ModelConfig(dg.Config):
    """The model type (``mem_core.estimators``). Default: the seed's GradientBoostingClassifier
    with the seed's parameters; another one only when named here (it shows in the MLflow params
    and the version's tags)."""

    estimator: str = Field(default=estimators.DEFAULT, description=" | ".join(estimators.names()))
    params: dict[str, Any] = Field(default_factory=dict, description="estimator parameters overriding the defaults")
    holdout_fraction: float = HOLDOUT_FRACTION


@dg.asset(group_name=GROUP, kinds={"sklearn", "mlflow"})
def reversal_model(
    context: dg.AssetExecutionContext, config: ModelConfig, mlflow: MlflowResource, training_dataset: pd.DataFrame
) -> dg.Output[dict[str, Any]]:
    """Fit, score the purged time holdout, log one MLflow run, register a ``challenger`` version."""
    uri = mlflow.uri()
    result = train_and_log(
        training_dataset,
        tracking_uri=uri,
        estimator=config.estimator,
        estimator_params=config.params,
        holdout_fraction=config.holdout_fraction,
        horizon=HORIZON,
        dagster_run_id=context.run_id,
    )
    m = result.metrics
    bar = pd.Series(training_dataset["ts"].unique()).sort_values().diff().median()
    value = {
        "run_id": result.run_id,
        "version": result.version,
        "experiment_id": result.experiment_id,
        "tracking_uri": uri,
        "holdout_fraction": config.holdout_fraction,
        "horizon": HORIZON,
        **result.split.summary(),
        "bar_seconds": float(pd.Timedelta(bar).total_seconds()),
        "metrics": m.as_dict(),
    }
    metadata: dict[str, Any] = {
        "accuracy": dg.MetadataValue.float(m.accuracy),
        "baseline_accuracy": dg.MetadataValue.float(m.baseline_accuracy),
        "accuracy_over_baseline": dg.MetadataValue.float(m.accuracy - m.baseline_accuracy),
        "precision": dg.MetadataValue.float(m.precision),
        "recall": dg.MetadataValue.float(m.recall),
        "f1": dg.MetadataValue.float(m.f1),
        "holdout_rows": dg.MetadataValue.int(m.rows),
        "train_rows": dg.MetadataValue.int(len(result.split.train)),
        "fit_seconds": dg.MetadataValue.float(result.fit_seconds),
        "metrics": dg.MetadataValue.md(metrics_table(m)),
        "confusion_matrix": dg.MetadataValue.md(confusion_markdown(m)),
        "feature_importances": dg.MetadataValue.md(importance_markdown(result.importances)),
        "mlflow_run_id": dg.MetadataValue.text(result.run_id),
        "mlflow_experiment_id": dg.MetadataValue.text(result.experiment_id),
        "model_version": dg.MetadataValue.text(result.version),
        "mlflow_model": dg.MetadataValue.text(f"models:/{registry.MODEL_NAME}/{result.version}"),
    }
    if m.roc_auc is not None:
        metadata["roc_auc"] = dg.MetadataValue.float(m.roc_auc)
    if uri.startswith("http"):
        metadata["mlflow_run"] = dg.MetadataValue.url(
            f"{uri.rstrip('/')}/#/experiments/{result.experiment_id}/runs/{result.run_id}"
        )
    else:
        metadata["mlflow_ui"] = dg.MetadataValue.text(f"mlflow ui --backend-store-uri {uri}")
    context.log.info(
        f"registered {registry.MODEL_NAME} v{result.version}: accuracy {m.accuracy:.4f} vs baseline {m.baseline_accuracy:.4f}"
    )
    return dg.Output(value, metadata=metadata)


class GateConfig(dg.Config):
    min_margin: float = Field(default=0.02, description="accuracy the challenger must gain")
    alpha: float = Field(default=0.05, description="McNemar significance level")


@dg.asset(group_name=GROUP, kinds={"mlflow"})
def champion_gate(
    context: dg.AssetExecutionContext,
    config: GateConfig,
    mlflow: MlflowResource,
    training_dataset: pd.DataFrame,
    reversal_model: dict[str, Any],
) -> dg.MaterializeResult:
    """Champion vs challenger on the same holdout rows; alias ``champion`` moves only per the gate.

    On any error the alias is untouched, the failure is recorded (version tag ``gate.error`` and
    the metadata of the step's failure) and the step fails.
    """
    uri = mlflow.uri()
    version = str(reversal_model["version"])
    try:
        outcome = run_gate(
            training_dataset,
            version,
            tracking_uri=uri,
            policy=GatePolicy(min_margin=config.min_margin, alpha=config.alpha),
            holdout_fraction=float(reversal_model.get("holdout_fraction", HOLDOUT_FRACTION)),
            horizon=int(reversal_model.get("horizon", HORIZON)),
        )
    except GateError as exc:
        # fail the step loudly; the failure's metadata shows in the run's step failure event
        raise dg.Failure(
            description=f"champion gate failed; alias {registry.CHAMPION!r} untouched: {exc}",
            metadata={
                "verdict": "error",
                "error": str(exc),
                "challenger_version": version,
                "champion_version": str(registry.champion_version(uri)),
            },
        ) from exc
    d = outcome.decision
    verdict = "promoted" if d.promote else "rejected"
    context.log.info(f"gate: {verdict} v{version} ({d.reason}); champion is v{outcome.champion_after}")
    metadata: dict[str, Any] = {
        "verdict": dg.MetadataValue.text(verdict),
        "reason": dg.MetadataValue.text(d.reason),
        "challenger_version": dg.MetadataValue.text(version),
        "champion_before": dg.MetadataValue.text(outcome.champion_before or "none"),
        "champion_after": dg.MetadataValue.text(outcome.champion_after or "none"),
        "challenger_accuracy": dg.MetadataValue.float(d.challenger_accuracy),
        "holdout_rows": dg.MetadataValue.int(d.rows),
        "holdout_start": dg.MetadataValue.text(outcome.holdout_start),
        "min_margin": dg.MetadataValue.float(d.min_margin),
        "alpha": dg.MetadataValue.float(d.alpha),
    }
    if d.champion_accuracy is not None:
        metadata["champion_accuracy"] = dg.MetadataValue.float(d.champion_accuracy)
        metadata["margin"] = dg.MetadataValue.float(float(d.margin))
        metadata["p_value"] = dg.MetadataValue.float(float(d.p_value))
    return dg.MaterializeResult(metadata=metadata)
