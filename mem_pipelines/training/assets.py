"""Training assets: candles -> training_candles (checked) -> features, labels (every symbol) ->
training_dataset -> reversal_model (with its walk-forward) -> champion_gate. Bodies are thin; the
work is in mem_pipelines.lib and the training modules (dataset, fit, mlflow_logging, gate_runner,
render); the defaults in ``training.defaults``.

``candles`` is partitioned by symbol (ingestion and its checks work one symbol at a time);
``training_candles``, ``features`` and ``labels`` are not: each holds every symbol's frame
(``{symbol: DataFrame}``, one parquet file per symbol through the ``training_frames`` IO manager)
over the symbol's whole stored history (so no warm-up eats into a training window). A plain
launch of ``train_and_gate`` therefore refreshes every symbol and then trains on all of them. A
symbol without candles is skipped with a warning (logs and metadata), never a failed run; the
blocking checks of ``training_candles`` (``checks.py``) stop the run before any feature is computed
from bad candles. ``training_dataset`` cuts the time window (config: ``last_days`` or
``start``/``end``; default the last ``defaults.TRAIN_DAYS`` days) and may pick a subset of symbols.
"""

from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from mem_core import estimators, feature_sets, registry
from mem_core.labels import HORIZON, reversal_labels
from mem_core.questdb.store import read_candles
from mem_pipelines.lib.evaluation import HOLDOUT_FRACTION
from mem_pipelines.lib.gate import METRICS, GatePolicy
from mem_pipelines.resources import MlflowResource, QuestDBResource
from mem_pipelines.settings import mlflow_ui_url
from mem_pipelines.training import defaults
from mem_pipelines.training.dataset import (
    all_feature_names,
    assemble_dataset,
    data_hash,
    feature_columns,
    feature_frame,
    find_gaps,
    row_lookback,
    split_dataset,
)
from mem_pipelines.training.fit import window_folds
from mem_pipelines.training.gate_runner import GateError, run_gate
from mem_pipelines.training.mlflow_logging import train_and_log
from mem_pipelines.training.render import confusion_markdown, gaps_markdown, png_markdown, walk_forward_frame
from mem_pipelines.training.reuse import FINGERPRINT_TAG, Reused, find_version, fingerprint
from mem_pipelines.training.tables import gate_table, holdout_table, importance_table, walk_forward_table

GROUP = "training"
CANDLES = dg.AssetKey("candles")
CANDLE_COLUMNS = ["ts", "open", "high", "low", "close", "volume"]
LABEL_COLUMNS = ["ts", "label", "direction"]


def column_schema(frame: pd.DataFrame) -> dg.MetadataValue:
    """The frame's columns and dtypes as Dagster's column schema (the asset page's Columns)."""
    return dg.MetadataValue.table_schema(
        dg.TableSchema(columns=[dg.TableColumn(str(name), str(dtype)) for name, dtype in frame.dtypes.items()])
    )


def _per_symbol(
    context: dg.AssetExecutionContext,
    candles: dict[str, pd.DataFrame],
    compute: Callable[[pd.DataFrame], pd.DataFrame],
    empty_columns: list[str],
) -> tuple[dict[str, pd.DataFrame], dict[str, int], list[str]]:
    """``compute`` over each symbol's candles; symbols with too few candles get an empty frame."""
    need = row_lookback()
    out: dict[str, pd.DataFrame] = {}
    rows: dict[str, int] = {}
    skipped: list[str] = []
    for symbol, frame in candles.items():
        if len(frame) < need:
            context.log.warning(f"{symbol}: {len(frame)} candles, fewer than the {need} a row needs; skipped")
            out[symbol] = pd.DataFrame(columns=empty_columns)
            skipped.append(symbol)
        else:
            out[symbol] = compute(frame)
        rows[symbol] = len(out[symbol])
    return out, rows, skipped


def build_symbol_assets(symbols: Sequence[str]) -> list[dg.AssetsDefinition]:
    """``training_candles``, ``features`` and ``labels`` over every one of ``symbols`` (the
    partitions of ``candles``): not partitioned themselves, so one plain run covers all symbols."""
    listed = list(symbols)
    symbols_metadata = {"symbols": dg.MetadataValue.json(listed)}

    @dg.asset(
        deps=[CANDLES],
        io_manager_key="training_frames",
        group_name=GROUP,
        kinds={"questdb", "pandas"},
        metadata=symbols_metadata,
    )
    def training_candles(
        context: dg.AssetExecutionContext, questdb: QuestDBResource
    ) -> dg.Output[dict[str, pd.DataFrame]]:
        """Every symbol's stored candles (whole history), read once per training run; checked by
        the blocking ``training_candles_quality`` before features and labels. A symbol without
        candles is skipped (an empty frame, a warning)."""
        settings = questdb.settings()
        out, rows, spans, gaps, skipped = {}, {}, {}, {}, []
        for symbol in listed:
            frame = read_candles(settings, symbol)
            if frame.empty:
                context.log.warning(
                    f"no candles for {symbol} in QuestDB; training goes on without it (ingest it first)"
                )
                skipped.append(symbol)
                frame = pd.DataFrame(
                    {c: pd.Series(dtype="datetime64[us, UTC]" if c == "ts" else "float64") for c in CANDLE_COLUMNS}
                )
            else:
                found = find_gaps(frame["ts"])
                spans[symbol] = [frame["ts"].iloc[0].isoformat(), frame["ts"].iloc[-1].isoformat()]
                gaps[symbol] = {"gaps": len(found), "missing_candles": sum(g.slots for g in found)}
            out[symbol] = frame[CANDLE_COLUMNS].reset_index(drop=True)
            rows[symbol] = len(frame)
        if not spans:
            raise dg.Failure(f"no candles in QuestDB for any of {listed}; ingest them first")
        return dg.Output(
            out,
            metadata={
                "dagster/row_count": dg.MetadataValue.int(sum(rows.values())),
                "rows_per_symbol": dg.MetadataValue.json(rows),
                "dagster/column_schema": column_schema(next(iter(out.values()))),
                "first_last_candle": dg.MetadataValue.json(spans),
                "gaps_per_symbol": dg.MetadataValue.json(gaps),
                "skipped_symbols": dg.MetadataValue.json(skipped),
            },
        )

    @dg.asset(
        ins={"training_candles": dg.AssetIn(input_manager_key="training_frames")},
        io_manager_key="training_frames",
        group_name=GROUP,
        kinds={"pandas"},
        metadata=symbols_metadata,
    )
    def features(
        context: dg.AssetExecutionContext, training_candles: dict[str, pd.DataFrame]
    ) -> dg.Output[dict[str, pd.DataFrame]]:
        """The columns of every known feature set (``mem_core.feature_sets``) per candle over each
        symbol's stored history, warm-up dropped; see docs/ml.md."""
        names = all_feature_names()
        frames, rows, skipped = _per_symbol(context, training_candles, feature_frame, ["ts", *names])
        last = {s: f[names].iloc[-1].round(6).to_dict() for s, f in frames.items() if len(f)}
        return dg.Output(
            frames,
            metadata={
                "dagster/row_count": dg.MetadataValue.int(sum(rows.values())),
                "rows_per_symbol": dg.MetadataValue.json(rows),
                "dagster/column_schema": column_schema(next(iter(frames.values()))),
                "feature_sets": dg.MetadataValue.json(
                    {fs.name: list(fs.names) for fs in feature_sets.FEATURE_SETS.values()}
                ),
                "newest_row": dg.MetadataValue.json(last),
                "skipped_symbols": dg.MetadataValue.json(skipped),
            },
        )

    @dg.asset(
        ins={"training_candles": dg.AssetIn(input_manager_key="training_frames")},
        io_manager_key="training_frames",
        group_name=GROUP,
        kinds={"pandas"},
        metadata=symbols_metadata,
    )
    def labels(
        context: dg.AssetExecutionContext, training_candles: dict[str, pd.DataFrame]
    ) -> dg.Output[dict[str, pd.DataFrame]]:
        """Reversal labels (horizon 10, k·σ·√H against the prior 20-candle trend); see docs/ml.md."""
        frames, rows, skipped = _per_symbol(context, training_candles, reversal_labels, LABEL_COLUMNS)
        rates = {s: round(float(f["label"].mean()), 4) if len(f) else None for s, f in frames.items()}
        return dg.Output(
            frames,
            metadata={
                "dagster/row_count": dg.MetadataValue.int(sum(rows.values())),
                "rows_per_symbol": dg.MetadataValue.json(rows),
                "dagster/column_schema": column_schema(next(iter(frames.values()))),
                "positive_rate_per_symbol": dg.MetadataValue.json(rates),
                "skipped_symbols": dg.MetadataValue.json(skipped),
            },
        )

    return [training_candles, features, labels]


class WindowConfig(dg.Config):
    """The training window. ``last_days`` (counted back from the newest labelled candle) wins
    over ``start``/``end`` (ISO dates, UTC, half-open). Empty: the last ``defaults.TRAIN_DAYS``
    days."""

    last_days: int | None = Field(default=None, description=f"train on the last N days (default {defaults.TRAIN_DAYS})")
    start: str | None = Field(default=None, description="inclusive start, e.g. 2025-06-01")
    end: str | None = Field(default=None, description="exclusive end, e.g. 2025-09-01")
    symbols: list[str] | None = Field(default=None, description="subset of symbols; empty = all that have candles")


def _window(config: WindowConfig, latest: pd.Timestamp) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    if config.last_days is not None or not (config.start or config.end):
        days = defaults.TRAIN_DAYS if config.last_days is None else config.last_days
        if days <= 0:
            raise ValueError("last_days must be positive")
        return latest - pd.Timedelta(days=days), None
    start = pd.Timestamp(config.start, tz="UTC") if config.start else None
    end = pd.Timestamp(config.end, tz="UTC") if config.end else None
    if start is not None and end is not None and start >= end:
        raise ValueError("start must be before end")
    return start, end


@dg.asset(
    ins={
        "features": dg.AssetIn(key="features", input_manager_key="training_frames"),
        "labels": dg.AssetIn(key="labels", input_manager_key="training_frames"),
        "training_candles": dg.AssetIn(key="training_candles", input_manager_key="training_frames"),
    },
    group_name=GROUP,
    kinds={"pandas"},
)
def training_dataset(
    context: dg.AssetExecutionContext,
    config: WindowConfig,
    features: dict[str, pd.DataFrame],
    labels: dict[str, pd.DataFrame],
    training_candles: dict[str, pd.DataFrame],
) -> dg.Output[pd.DataFrame]:
    """All symbols' features joined with labels on ``ts``, cut to the window, ordered by time;
    rows whose candles reach a gap are dropped (counted and listed in the metadata)."""
    listed = sorted(config.symbols or features.keys())
    unknown = [s for s in listed if s not in features or s not in labels]
    if unknown:
        raise ValueError(f"no features/labels for {unknown}")
    symbols = [s for s in listed if len(features[s]) and len(labels[s])]
    skipped = sorted(set(listed) - set(symbols))
    if skipped:
        context.log.warning(f"no candles (or too few) for {skipped}: training on {symbols} only")
    if not symbols:
        raise ValueError(f"none of {listed} has candles to train on")
    latest = max(pd.Timestamp(labels[s]["ts"].max()) for s in symbols)
    start, end = _window(config, latest)
    gaps = {s: find_gaps(training_candles[s]["ts"]) for s in symbols if s in training_candles}
    built = assemble_dataset({s: (features[s], labels[s]) for s in symbols}, start, end, gaps)
    data = built.data
    if data.empty:
        raise ValueError(f"no rows in the window [{start}, {end})")
    per_symbol = data.groupby("symbol").size().to_dict()
    dropped = sum(built.dropped.values())
    if dropped:
        context.log.warning(f"dropped {dropped} rows whose candles reach a gap: {built.dropped}")
    first, last = pd.Timestamp(data["ts"].min()), pd.Timestamp(data["ts"].max())
    return dg.Output(
        data,
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(data)),
            "dagster/column_schema": column_schema(data),
            "rows_per_symbol": dg.MetadataValue.json({k: int(v) for k, v in per_symbol.items()}),
            "symbols": dg.MetadataValue.json(symbols),
            "skipped_symbols": dg.MetadataValue.json(skipped),
            "start": dg.MetadataValue.text(first.isoformat()),
            "end": dg.MetadataValue.text(last.isoformat()),
            "window_days": dg.MetadataValue.float(round((last - first) / pd.Timedelta(days=1), 2)),
            "positive_rate": dg.MetadataValue.float(round(float(data["label"].mean()), 4)),
            "feature_columns": dg.MetadataValue.json(feature_columns(data)),
            "gaps": dg.MetadataValue.md(gaps_markdown(built.gaps)),
            "gap_count": dg.MetadataValue.int(len(built.gaps)),
            "gap_rows_dropped": dg.MetadataValue.int(dropped),
            "gap_rows_dropped_per_symbol": dg.MetadataValue.json(built.dropped),
            "data_sha256": dg.MetadataValue.text(data_hash(data)),
        },
    )


class ModelConfig(dg.Config):
    """The model type (``mem_core.estimators``) and its feature set (``mem_core.feature_sets``).
    Default: ``hist_gb`` over ``regime_v1`` with training's parameters (``training.defaults``);
    the seed's model is ``estimator: seed_gbc, feature_set: seed``. Both names show in the MLflow
    params and the version's tags. The walk-forward uses the same type, parameters and set."""

    estimator: str = Field(default=defaults.ESTIMATOR, description=" | ".join(estimators.names()))
    feature_set: str = Field(default=defaults.FEATURE_SET, description="a name of mem_core.feature_sets")
    params: dict[str, Any] = Field(default_factory=dict, description="estimator parameters overriding the defaults")
    holdout_fraction: float = HOLDOUT_FRACTION
    walk_forward_folds: int = Field(
        default=defaults.WALK_FORWARD_FOLDS, description="rolling folds over the window; 0 = none"
    )
    walk_forward_train_days: float | None = Field(
        default=None, description="days each fold trains on (default: half the window)"
    )


def _round(x: float, digits: int = 4) -> float:
    return float(round(x, digits))


@dg.asset(group_name=GROUP, kinds={"sklearn", "mlflow"})
def reversal_model(
    context: dg.AssetExecutionContext, config: ModelConfig, mlflow: MlflowResource, training_dataset: pd.DataFrame
) -> dg.Output[dict[str, Any]]:
    """Fit, score the purged time holdout, walk forward over the window, log one MLflow run,
    register a ``challenger`` version."""
    uri = mlflow.uri()
    folds = config.walk_forward_folds
    if folds > 0:
        try:
            window_folds(training_dataset, folds, config.walk_forward_train_days)
        except ValueError as exc:
            context.log.warning(f"walk-forward skipped: {exc}")
            folds = 0
    fp = fingerprint(
        training_dataset,
        estimator=config.estimator,
        feature_set=config.feature_set,
        params=config.params,
        holdout_fraction=config.holdout_fraction,
        horizon=HORIZON,
        walk_forward_folds=folds,
        walk_forward_train_days=config.walk_forward_train_days,
    )
    earlier = find_version(uri, fp)
    if earlier is not None:  # a re-execution, or a retrain without new candles: the same model
        return _reused_output(context, earlier, config, uri, training_dataset)
    result = train_and_log(
        training_dataset,
        tracking_uri=uri,
        estimator=config.estimator,
        estimator_params=config.params,
        feature_set=config.feature_set,
        holdout_fraction=config.holdout_fraction,
        horizon=HORIZON,
        walk_forward_folds=folds,
        walk_forward_train_days=config.walk_forward_train_days,
        dagster_run_id=context.run_id,
        extra_version_tags={FINGERPRINT_TAG: fp},
    )
    m, skill = result.metrics, result.skill
    bar = pd.Series(training_dataset["ts"].unique()).sort_values().diff().median()
    value = {
        "run_id": result.run_id,
        "version": result.version,
        "experiment_id": result.experiment_id,
        "tracking_uri": uri,
        "estimator": result.model.name,
        "feature_set": result.model.feature_set.name,
        "holdout_fraction": config.holdout_fraction,
        "horizon": HORIZON,
        **result.split.summary(),
        "bar_seconds": float(pd.Timedelta(bar).total_seconds()),
        "metrics": m.as_dict(),
    }
    gain = skill.intervals["log_loss_gain_mnat"]
    ui = mlflow_ui_url(uri)
    wf = result.walk_forward
    headline = (
        f"{registry.MODEL_NAME} v{result.version}: holdout log-loss gain {skill['log_loss_gain_mnat']:+.1f} mnat "
        f"[95% CI {gain.low:+.1f}, {gain.high:+.1f}] over the constant base rate {skill.base_rate:.3f} (the training "
        f"rows' reversal rate) on {m.rows:,} holdout rows from {result.split.holdout_start:%Y-%m-%d}; "
        f"ROC-AUC {skill['roc_auc']:.3f}; accuracy {m.accuracy:.3f} vs majority {m.baseline_accuracy:.3f}"
    )
    if wf is not None:
        pooled = wf.result.pooled
        headline += f"; walk-forward pooled gain {pooled['log_loss_gain_mnat']:+.1f} mnat over {len(wf.folds)} folds"
    # headline figures first (the UI lists metadata in this order), then the tables, then details
    metadata: dict[str, Any] = {
        "headline": dg.MetadataValue.text(headline),
        "model_version": dg.MetadataValue.text(result.version),
        "holdout_log_loss_gain_mnat": dg.MetadataValue.float(_round(skill["log_loss_gain_mnat"], 2)),
        "holdout_log_loss_gain_ci_low": dg.MetadataValue.float(_round(gain.low, 2)),
        "holdout_log_loss_gain_ci_high": dg.MetadataValue.float(_round(gain.high, 2)),
        "holdout_base_rate": dg.MetadataValue.float(_round(skill.base_rate)),
        "accuracy": dg.MetadataValue.float(_round(m.accuracy)),
        "baseline_accuracy": dg.MetadataValue.float(_round(m.baseline_accuracy)),
    }
    if m.roc_auc is not None:
        metadata["roc_auc"] = dg.MetadataValue.float(_round(m.roc_auc))
    metadata["mlflow_run"] = dg.MetadataValue.url(f"{ui}/#/experiments/{result.experiment_id}/runs/{result.run_id}")
    metadata["mlflow_model_version"] = dg.MetadataValue.url(
        f"{ui}/#/models/{registry.MODEL_NAME}/versions/{result.version}"
    )
    metadata["holdout"] = holdout_table(m, skill)
    metadata["feature_importances"] = (
        importance_table(result.importances, result.importance_kind)
        if result.importances
        else dg.MetadataValue.text("none: the holdout has a single class")
    )
    if wf is not None and result.walk_forward_png is not None:
        summary = wf.result.summary()
        pooled_gain = wf.result.pooled.intervals["log_loss_gain_mnat"]
        metadata.update(
            {
                "walk_forward": walk_forward_table(walk_forward_frame(wf.result)),
                "walk_forward_plot": dg.MetadataValue.md(
                    png_markdown(result.walk_forward_png, "walk-forward log-loss gain and ROC-AUC")
                ),
                "walk_forward_pooled_log_loss_gain_mnat": dg.MetadataValue.float(
                    _round(wf.result.pooled["log_loss_gain_mnat"], 2)
                ),
                "walk_forward_pooled_log_loss_gain_ci_low": dg.MetadataValue.float(_round(pooled_gain.low, 2)),
                "walk_forward_pooled_log_loss_gain_ci_high": dg.MetadataValue.float(_round(pooled_gain.high, 2)),
                "walk_forward_folds": dg.MetadataValue.int(len(wf.folds)),
                "walk_forward_folds_gain_ci_above_zero": dg.MetadataValue.int(
                    int(summary["walk_forward_folds_gain_ci_above_zero"])
                ),
                "walk_forward_train_days": dg.MetadataValue.float(_round(wf.train_days, 2)),
                "walk_forward_folds_gain_positive": dg.MetadataValue.int(
                    int(summary["walk_forward_folds_gain_positive"])
                ),
                "walk_forward_median_roc_auc": dg.MetadataValue.float(_round(summary["walk_forward_median_roc_auc"])),
                "walk_forward_pooled_roc_auc": dg.MetadataValue.float(_round(wf.result.pooled["roc_auc"])),
                "walk_forward_seconds": dg.MetadataValue.float(_round(wf.seconds, 2)),
            }
        )
    else:
        metadata["walk_forward"] = dg.MetadataValue.text(
            "skipped: the window is too short for the folds (see the run's logs)"
            if config.walk_forward_folds > 0
            else "off (walk_forward_folds = 0)"
        )
    metadata.update(
        {
            "confusion_matrix": dg.MetadataValue.md(confusion_markdown(m)),
            "estimator": dg.MetadataValue.text(result.model.name),
            "feature_set": dg.MetadataValue.text(result.model.feature_set.name),
            "holdout_rows": dg.MetadataValue.int(m.rows),
            "train_rows": dg.MetadataValue.int(len(result.split.train)),
            "holdout_brier_skill": dg.MetadataValue.float(_round(skill["brier_skill"])),
            "holdout_top_decile_lift": dg.MetadataValue.float(_round(skill["top_decile_lift"], 3)),
            "fit_seconds": dg.MetadataValue.float(_round(result.fit_seconds, 2)),
            "mlflow_run_id": dg.MetadataValue.text(result.run_id),
            "mlflow_experiment_id": dg.MetadataValue.text(result.experiment_id),
            "mlflow_model": dg.MetadataValue.text(f"models:/{registry.MODEL_NAME}/{result.version}"),
        }
    )
    if not uri.startswith("http"):
        metadata["mlflow_ui"] = dg.MetadataValue.text("bash scripts/ui.sh mlflow (serves the links above)")
    context.log.info(headline)
    return dg.Output(value, metadata=metadata)


def _reused_output(
    context: dg.AssetExecutionContext, earlier: Reused, config: ModelConfig, uri: str, dataset: pd.DataFrame
) -> dg.Output[dict[str, Any]]:
    """The output of a training whose model ``earlier`` already is: its version, and the figures
    its training logged (nothing is trained or registered)."""
    m = earlier.metrics
    said = (
        f"{registry.MODEL_NAME} v{earlier.version} already holds this model (the same rows, model type, "
        f"parameters and feature set; MLflow run {earlier.run_id}): not trained or registered again"
    )
    context.log.info(said)
    value = {
        "run_id": earlier.run_id,
        "version": earlier.version,
        "experiment_id": earlier.experiment_id,
        "tracking_uri": uri,
        "estimator": config.estimator,
        "feature_set": config.feature_set,
        "holdout_fraction": config.holdout_fraction,
        "horizon": HORIZON,
        **split_dataset(dataset, config.holdout_fraction, HORIZON).summary(),
        "bar_seconds": float(
            pd.Timedelta(pd.Series(dataset["ts"].unique()).sort_values().diff().median()).total_seconds()
        ),
        "metrics": {k.removeprefix("holdout_"): v for k, v in m.items() if k.startswith("holdout_")},
        "reused": True,
    }
    figures = {
        "accuracy": "holdout_accuracy",
        "baseline_accuracy": "holdout_baseline_accuracy",
        "holdout_log_loss_gain_mnat": "holdout_log_loss_gain_mnat",
        "holdout_log_loss_gain_ci_low": "holdout_log_loss_gain_mnat_ci_low",
        "holdout_log_loss_gain_ci_high": "holdout_log_loss_gain_mnat_ci_high",
        "roc_auc": "holdout_roc_auc",
        "holdout_base_rate": "train_positive_rate",  # the constant the gain is measured against
    }
    metadata: dict[str, Any] = {
        "reused": dg.MetadataValue.text(said),
        "model_version": dg.MetadataValue.text(earlier.version),
        **{k: dg.MetadataValue.float(_round(m[v])) for k, v in figures.items() if v in m},
        "estimator": dg.MetadataValue.text(config.estimator),
        "feature_set": dg.MetadataValue.text(config.feature_set),
        "mlflow_run_id": dg.MetadataValue.text(earlier.run_id),
        "mlflow_model": dg.MetadataValue.text(f"models:/{registry.MODEL_NAME}/{earlier.version}"),
    }
    ui = mlflow_ui_url(uri)
    metadata["mlflow_run"] = dg.MetadataValue.url(f"{ui}/#/experiments/{earlier.experiment_id}/runs/{earlier.run_id}")
    metadata["mlflow_model_version"] = dg.MetadataValue.url(
        f"{ui}/#/models/{registry.MODEL_NAME}/versions/{earlier.version}"
    )
    return dg.Output(value, metadata=metadata)


class GateConfig(dg.Config):
    """The gate's comparison with the champion (after the skill floor, which always applies)."""

    metric: str = Field(default="accuracy", description=" | ".join(METRICS))
    min_margin: float | None = Field(
        default=None,
        description="what the challenger must gain: accuracy points (default 0.02), mnat of log loss or Brier (default 0: any significant gain)",
    )
    alpha: float = Field(
        default=0.05, description="significance level (McNemar for accuracy, paired day-block bootstrap otherwise)"
    )

    def policy(self) -> GatePolicy:
        margin = self.min_margin if self.min_margin is not None else (0.02 if self.metric == "accuracy" else 0.0)
        return GatePolicy(min_margin=margin, alpha=self.alpha, metric=self.metric)


@dg.asset(group_name=GROUP, kinds={"mlflow"})
def champion_gate(
    context: dg.AssetExecutionContext,
    config: GateConfig,
    mlflow: MlflowResource,
    training_dataset: pd.DataFrame,
    reversal_model: dict[str, Any],
) -> dg.MaterializeResult:
    """Champion vs challenger on the same holdout rows; alias ``champion`` moves only per the
    verdict (skill floor, then the configured comparison), whose sentence becomes the version's
    description.

    On any error the alias is untouched, the failure is recorded (version description, tag
    ``gate.error``, the metadata of the step's failure) and the step fails.
    """
    uri = mlflow.uri()
    version = str(reversal_model["version"])
    policy = config.policy()
    if reversal_model.get("reused"):
        earlier = _earlier_verdict(version, uri)
        if earlier is not None:
            context.log.info(earlier["sentence"].value)
            return dg.MaterializeResult(metadata=earlier)
    try:
        outcome = run_gate(
            training_dataset,
            version,
            tracking_uri=uri,
            policy=policy,
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
    v = outcome.verdict
    verdict = "promoted" if v.promote else "rejected"
    context.log.info(f"gate: {v.sentence} Champion: v{outcome.champion_after}")
    gain = v.skill.intervals["log_loss_gain_mnat"]
    metadata: dict[str, Any] = {
        "verdict": dg.MetadataValue.text(verdict),
        "sentence": dg.MetadataValue.text(v.sentence),
        "metric": dg.MetadataValue.text(v.metric),
        "challenger_version": dg.MetadataValue.text(version),
        "champion_before": dg.MetadataValue.text(outcome.champion_before or "none"),
        "champion_after": dg.MetadataValue.text(outcome.champion_after or "none"),
        "holdout_rows": dg.MetadataValue.int(outcome.rows),
        "holdout_rows_seen_by_champion": dg.MetadataValue.int(outcome.rows_seen_by_champion),
        "holdout_start": dg.MetadataValue.text(outcome.holdout_start),
        "base_rate": dg.MetadataValue.float(_round(outcome.base_rate)),
        "log_loss_gain_mnat": dg.MetadataValue.float(_round(v.skill["log_loss_gain_mnat"], 2)),
        "log_loss_gain_ci_low": dg.MetadataValue.float(_round(gain.low, 2)),
        "log_loss_gain_ci_high": dg.MetadataValue.float(_round(gain.high, 2)),
        "roc_auc": dg.MetadataValue.float(_round(v.skill["roc_auc"])),
        "challenger_accuracy": dg.MetadataValue.float(_round(v.skill["accuracy"])),
        "min_margin": dg.MetadataValue.float(policy.min_margin),
        "alpha": dg.MetadataValue.float(policy.alpha),
    }
    if v.accuracy is not None and v.accuracy.champion_accuracy is not None:
        metadata["champion_accuracy"] = dg.MetadataValue.float(_round(v.accuracy.champion_accuracy))
        metadata["accuracy_margin"] = dg.MetadataValue.float(_round(float(v.accuracy.margin or 0.0)))
    if v.improvement is not None:
        metadata["improvement"] = dg.MetadataValue.float(_round(v.improvement))
    if v.p_value is not None:
        metadata["p_value"] = dg.MetadataValue.float(float(f"{v.p_value:.4g}"))
    metadata["comparison"] = gate_table(_gate_rows(v, policy))
    return dg.MaterializeResult(metadata=metadata)


def _gate_rows(v: Any, policy: GatePolicy) -> list[dict[str, Any]]:
    """The gate's evidence as table rows: the skill floor, the accuracy rule, the configured
    metric's paired comparison (when it is not accuracy)."""
    gain = v.skill.intervals["log_loss_gain_mnat"]
    rows: list[dict[str, Any]] = [
        {
            "measure": "skill floor: holdout log-loss gain over the constant base rate (mnat)",
            "challenger": v.skill["log_loss_gain_mnat"],
            "ci_or_p": f"95% CI [{gain.low:+.1f}, {gain.high:+.1f}]",
            "needs": "> 0 with the CI above 0",
        }
    ]
    acc = v.accuracy
    if acc is not None:
        rows.append(
            {
                "measure": "accuracy (the seed's rule)",
                "challenger": acc.challenger_accuracy,
                "champion": acc.champion_accuracy,
                "difference": acc.margin,
                "ci_or_p": f"McNemar p = {acc.p_value:.3g}" if acc.p_value is not None else "",
                "needs": f"+{acc.min_margin:g} with p < {acc.alpha:g}",
            }
        )
    if v.metric != "accuracy" and v.improvement is not None:
        low, high = v.interval or (float("nan"), float("nan"))
        rows.append(
            {
                "measure": f"{v.metric.replace('_', ' ')} improvement (paired, day blocks)",
                "difference": v.improvement,
                "ci_or_p": f"95% CI [{low:+.4f}, {high:+.4f}], p = {v.p_value:.3g}",
                "needs": f"{policy.min_margin:g} with p < {policy.alpha:g}",
            }
        )
    return rows


def _earlier_verdict(version: str, uri: str) -> dict[str, Any] | None:
    """The verdict the gate recorded on ``version`` when it was registered (a reused version is not
    gated twice), or None when it never got one."""
    mv = registry.client(uri).get_model_version(registry.MODEL_NAME, version)
    tags = mv.tags or {}
    outcome = tags.get("gate.outcome")
    if outcome not in ("promoted", "rejected"):
        return None
    champion = registry.champion_version(uri)
    return {
        "verdict": dg.MetadataValue.text(outcome),
        "sentence": dg.MetadataValue.text(
            f"v{version} was gated when it was registered ({outcome}); not gated again. Its verdict: {mv.description}"
        ),
        "challenger_version": dg.MetadataValue.text(version),
        "champion_after": dg.MetadataValue.text(str(champion) if champion else "none"),
    }
