"""Training and gating, callable without Dagster (the assets are thin wrappers around these).

* ``build_dataset``: per-symbol features and labels joined on ``ts``, cut to a time window,
  all symbols stacked and ordered by time.
* ``train_and_log``: time split with purge, fit, holdout metrics with the majority baseline,
  one MLflow run (params, metrics, feature importances, lineage, model) and a registered version
  with alias ``challenger``.
* ``run_gate``: champion and challenger scored on the same holdout rows of the current dataset;
  alias ``champion`` moves only per ``mem_pipelines.lib.gate``; the verdict is written to the
  challenger's version tags. Any error leaves the alias where it was, is recorded as a tag and
  re-raised.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier, RandomForestClassifier

from mem_core import labels as label_defs
from mem_pipelines.lib.evaluation import HOLDOUT_FRACTION, Metrics, Split, evaluate, time_split
from mem_core.features import FEATURE_NAMES, SERVING_HISTORY, feature_matrix
from mem_pipelines.lib.gate import GateDecision, GatePolicy, decide
from mem_core import registry

log = logging.getLogger(__name__)

#: The seed's model (DESIGN §4). Other estimators only when asked for by name in the config.
SEED_ESTIMATOR = "gradient_boosting"
SEED_PARAMS: dict[str, Any] = {
    "n_estimators": 200,
    "max_depth": 5,
    "learning_rate": 0.1,
    "min_samples_split": 20,
    "random_state": 42,
}
ESTIMATORS: dict[str, type] = {
    "gradient_boosting": GradientBoostingClassifier,
    "hist_gradient_boosting": HistGradientBoostingClassifier,
    "random_forest": RandomForestClassifier,
}

GATE_TAG_PREFIX = "gate."


def make_estimator(name: str = SEED_ESTIMATOR, params: Mapping[str, Any] | None = None) -> Any:
    """The named estimator; the seed's parameters for the seed's model unless overridden."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; choose one of {sorted(ESTIMATORS)}")
    base = dict(SEED_PARAMS) if name == SEED_ESTIMATOR else {}
    base.update(params or {})
    return ESTIMATORS[name](**base)


def build_dataset(
    per_symbol: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]],
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """``ts, symbol, <12 features>, label, direction`` over ``[start, end)``, ordered by time."""
    parts = []
    for symbol, (feats, labels) in sorted(per_symbol.items()):
        joined = feats.merge(labels, on="ts", how="inner")
        if start is not None:
            joined = joined[joined["ts"] >= start]
        if end is not None:
            joined = joined[joined["ts"] < end]
        joined.insert(1, "symbol", symbol)
        parts.append(joined)
    if not parts:
        raise ValueError("no symbols to build a dataset from")
    data = pd.concat(parts, ignore_index=True)
    data = data.sort_values(["ts", "symbol"], kind="stable").reset_index(drop=True)
    return data[["ts", "symbol", *FEATURE_NAMES, "label", "direction"]]


def data_hash(dataset: pd.DataFrame) -> str:
    """sha256 over the rows the model sees (ts, symbol, features, label)."""
    cols = ["ts", "symbol", *FEATURE_NAMES, "label"]
    hashed = pd.util.hash_pandas_object(dataset[cols], index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def lineage(dataset: pd.DataFrame, dagster_run_id: str | None = None) -> dict[str, str]:
    return {
        "data.symbols": ",".join(sorted(dataset["symbol"].unique())),
        "data.start": pd.Timestamp(dataset["ts"].min()).isoformat(),
        "data.end": pd.Timestamp(dataset["ts"].max()).isoformat(),
        "data.rows": str(len(dataset)),
        "data.sha256": data_hash(dataset),
        "dagster.run_id": dagster_run_id or "",
    }


def split_dataset(dataset: pd.DataFrame, holdout_fraction: float = HOLDOUT_FRACTION,
                  horizon: int = label_defs.HORIZON) -> Split:
    return time_split(dataset["ts"], holdout_fraction, purge=horizon)


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
    model: Any = field(repr=False)


def train_and_log(
    dataset: pd.DataFrame,
    *,
    tracking_uri: str,
    estimator: str = SEED_ESTIMATOR,
    estimator_params: Mapping[str, Any] | None = None,
    holdout_fraction: float = HOLDOUT_FRACTION,
    horizon: int = label_defs.HORIZON,
    dagster_run_id: str | None = None,
) -> TrainingResult:
    """Fit on the training part, score the holdout, log one MLflow run, register a challenger."""
    import mlflow

    split = split_dataset(dataset, holdout_fraction, horizon)
    X = feature_matrix(dataset)
    y = dataset["label"].to_numpy(dtype="int64")
    model = make_estimator(estimator, estimator_params)
    started = time.perf_counter()
    model.fit(X[split.train], y[split.train])
    fit_seconds = time.perf_counter() - started
    metrics = evaluate(y[split.holdout], model.predict_proba(X[split.holdout]))
    importances = _importances(model)
    data_lineage = lineage(dataset, dagster_run_id)

    experiment_id = registry.ensure_experiment(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"reversal-{data_lineage['data.end'][:10]}") as run:
        mlflow.log_params(
            {
                "estimator": estimator,
                **{f"model.{k}": v for k, v in model.get_params().items() if _loggable(v)},
                "label.horizon": horizon,
                "label.k": label_defs.DEFAULT_K,
                "label.trend_lookback": label_defs.TREND_LOOKBACK,
                "label.vol_window": label_defs.VOL_WINDOW,
                "features": ",".join(FEATURE_NAMES),
                "features.serving_history": SERVING_HISTORY,
                "split.holdout_fraction": holdout_fraction,
                "split.purge": horizon,
                **{k: v for k, v in data_lineage.items() if k != "dagster.run_id"},
            }
        )
        mlflow.set_tags({**data_lineage, "split.holdout_start": split.holdout_start.isoformat(),
                         "split.train_end": split.train_end.isoformat()})
        mlflow.log_metrics({f"holdout_{k}": v for k, v in metrics.scalars().items()})
        mlflow.log_metrics({"train_rows": float(len(split.train)), "fit_seconds": fit_seconds,
                            "train_positive_rate": float(y[split.train].mean())})
        if importances:
            mlflow.log_metrics({f"importance_{k}": v for k, v in importances.items()})
            mlflow.log_dict(importances, "feature_importances.json")
        mlflow.log_dict(
            {"labels": ["no reversal", "reversal"], "rows_true_cols_predicted": [list(r) for r in metrics.confusion]},
            "confusion_matrix.json",
        )
        version = registry.log_model_version(
            model,
            X_train=X[split.train],
            feature_names=FEATURE_NAMES,
            tracking_uri=tracking_uri,
            extra_version_tags={
                "data.sha256": data_lineage["data.sha256"],
                "holdout_accuracy": f"{metrics.accuracy:.6f}",
                "holdout_baseline_accuracy": f"{metrics.baseline_accuracy:.6f}",
                "dagster.run_id": dagster_run_id or "",
            },
        )
    return TrainingResult(run.info.run_id, version, metrics, split, importances, data_lineage,
                          fit_seconds, experiment_id, model)


def _loggable(v: Any) -> bool:
    return v is None or isinstance(v, (int, float, str, bool))


def _importances(model: Any) -> dict[str, float]:
    values = getattr(model, "feature_importances_", None)
    if values is None:
        return {}
    return {name: float(v) for name, v in zip(FEATURE_NAMES, values)}


class GateError(RuntimeError):
    """The gate could not reach a verdict; the champion alias was left untouched."""


@dataclass(frozen=True)
class GateOutcome:
    decision: GateDecision
    challenger_version: str
    champion_before: str | None
    champion_after: str | None
    holdout_start: str

    def as_dict(self) -> dict[str, object]:
        return {
            **self.decision.as_dict(),
            "challenger_version": self.challenger_version,
            "champion_before": self.champion_before,
            "champion_after": self.champion_after,
            "holdout_start": self.holdout_start,
        }


def run_gate(
    dataset: pd.DataFrame,
    challenger_version: str,
    *,
    tracking_uri: str,
    policy: GatePolicy = GatePolicy(),
    holdout_fraction: float = HOLDOUT_FRACTION,
    horizon: int = label_defs.HORIZON,
    model_name: str = registry.MODEL_NAME,
) -> GateOutcome:
    """Score champion and challenger on the same holdout rows; move ``champion`` per the gate.

    Moving the alias is the very last step: any error before it leaves the champion in place,
    is recorded on the challenger's version (``gate.verdict=error``, ``gate.error``) and re-raised
    as ``GateError``.
    """
    client = registry.client(tracking_uri)
    champion_before: str | None = None
    try:
        champion_mv = registry.version_by_alias(registry.CHAMPION, tracking_uri, model_name)
        champion_before = None if champion_mv is None else str(champion_mv.version)
        split = split_dataset(dataset, holdout_fraction, horizon)
        rows, seen = _rows_unseen_by(client, champion_mv, dataset, split.holdout, horizon)
        if len(rows) == 0:
            raise GateError(f"every holdout row was in the champion's (v{champion_before}) training data")
        X = feature_matrix(dataset.iloc[rows])
        y = dataset["label"].to_numpy(dtype="int64")[rows]
        challenger = registry.load_version(challenger_version, tracking_uri, model_name)
        challenger_pred = _predict(challenger, X)
        if champion_before is None:
            champion_pred = None
        elif champion_before == str(challenger_version):
            raise GateError(f"version {challenger_version} is already the champion")
        else:
            champion_pred = _predict(registry.load_version(champion_before, tracking_uri, model_name), X)
        decision = decide(y, challenger_pred, champion_pred, policy)
        tags = {
            "verdict": "promoted" if decision.promote else "rejected",
            "reason": decision.reason,
            "challenger_accuracy": f"{decision.challenger_accuracy:.6f}",
            "champion_accuracy": "" if decision.champion_accuracy is None else f"{decision.champion_accuracy:.6f}",
            "champion_version": champion_before or "",
            "margin": "" if decision.margin is None else f"{decision.margin:.6f}",
            "p_value": "" if decision.p_value is None else f"{decision.p_value:.6g}",
            "test": decision.test or "",
            "holdout_rows": str(decision.rows),
            "holdout_rows_seen_by_champion": str(seen),
            "holdout_start": split.holdout_start.isoformat(),
            "min_margin": str(policy.min_margin),
            "alpha": str(policy.alpha),
        }
        for key, value in tags.items():
            client.set_model_version_tag(model_name, str(challenger_version), GATE_TAG_PREFIX + key, value)
        if decision.promote:
            client.set_registered_model_alias(model_name, registry.CHAMPION, str(challenger_version))
    except Exception as exc:
        _record_failure(client, model_name, challenger_version, exc)
        if isinstance(exc, GateError):
            raise
        raise GateError(f"gate failed for version {challenger_version}; champion kept at {champion_before}: {exc}") from exc
    after = registry.version_by_alias(registry.CHAMPION, tracking_uri, model_name)
    return GateOutcome(decision, str(challenger_version), champion_before,
                       None if after is None else str(after.version), split.holdout_start.isoformat())


def _rows_unseen_by(client: Any, champion_mv: Any, dataset: pd.DataFrame, holdout: np.ndarray,
                    horizon: int) -> tuple[np.ndarray, int]:
    """Holdout rows the champion never trained on (nor on a label reaching them).

    A champion trained on another window (a data scientist's custom run) may have trained on part
    of today's holdout; those rows would flatter it. Rows up to its ``split.train_end`` + H candles
    are left out of the comparison. Champions without that tag are compared on every row.
    """
    if champion_mv is None or not champion_mv.run_id:
        return holdout, 0
    train_end = client.get_run(champion_mv.run_id).data.tags.get("split.train_end")
    if not train_end:
        return holdout, 0
    stamps = pd.Series(pd.unique(dataset["ts"])).sort_values()
    bar = stamps.diff().median() if len(stamps) > 1 else pd.Timedelta(0)
    end = pd.Timestamp(train_end)
    end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    ts = pd.to_datetime(dataset["ts"].iloc[holdout], utc=True)
    keep = (ts > end + horizon * bar).to_numpy()
    return holdout[keep], int((~keep).sum())


def _predict(model: registry.LoadedModel, X: np.ndarray) -> np.ndarray:
    if model.feature_names and list(model.feature_names) != list(FEATURE_NAMES):
        raise GateError(f"version {model.version} expects features {model.feature_names}")
    proba = model.predict_proba(X)
    if proba.ndim != 2 or proba.shape[0] != len(X) or not np.isfinite(proba).all():
        raise GateError(f"version {model.version} returned unusable probabilities {proba.shape}")
    return (proba[:, 1] >= 0.5).astype(int)


def _record_failure(client: Any, model_name: str, version: str, exc: Exception) -> None:
    try:
        client.set_model_version_tag(model_name, str(version), GATE_TAG_PREFIX + "verdict", "error")
        client.set_model_version_tag(model_name, str(version), GATE_TAG_PREFIX + "error", f"{type(exc).__name__}: {exc}"[:4000])
    except Exception:  # noqa: BLE001 - the original error is what must surface
        log.exception("could not record the gate failure on version %s", version)


def metrics_table(metrics: Metrics) -> str:
    """Markdown for Dagster metadata."""
    rows = ["| metric | value |", "|---|---|"]
    for k, v in metrics.scalars().items():
        rows.append(f"| {k} | {v:.4f} |" if k != "rows" else f"| rows | {int(v)} |")
    return "\n".join(rows)


def confusion_markdown(metrics: Metrics) -> str:
    (tn, fp), (fn, tp) = metrics.confusion
    return (
        "| true \\ predicted | no reversal | reversal |\n|---|---|---|\n"
        f"| no reversal | {tn} | {fp} |\n| reversal | {fn} | {tp} |"
    )


def importance_markdown(importances: Mapping[str, float]) -> str:
    rows = ["| feature | importance |", "|---|---|"]
    for name, value in sorted(importances.items(), key=lambda kv: -kv[1]):
        rows.append(f"| {name} | {value:.4f} |")
    return "\n".join(rows)


def to_json(obj: Any) -> str:
    return json.dumps(obj, default=str, sort_keys=True)
