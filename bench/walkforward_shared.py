"""Monthly walk-forward of one training configuration on the shared candles (the acceptance's
protocol; the figures are in docs/ml.md, "Walk-forward on the shared candles").

For every CSV given (default ``../shared/data/candles/*.csv.gz``): the candles, the features of
the named set and the labels, computed as the training pipeline computes them
(``mem_pipelines.training.dataset``: ``feature_frame``, the reversal labels, rows reaching a gap
dropped). One fold per calendar month (UTC) from ``--first-month`` for ``--months`` months, each
trained on the ``--train-days`` before it (purge: the label horizon + 1 candle, embargo 1 day)
and tested on the month, all symbols pooled; skill per fold and pooled with 95% day-block
bootstrap intervals (``mem_pipelines.lib.walkforward``). The model is the estimator with its
type's parameters (``--params`` JSON overrides them).
``--max-train-rows`` fits on that many training rows of a fold drawn at random (for the seed's
slow GradientBoosting). Prints JSON, then the markdown table; ``--mlflow URI`` also logs a run
(experiment ``mem-reversal-walk-forward``) with the table, the plot and the metrics.

    .venv/bin/python bench/walkforward_shared.py [--feature-set regime_v1] [--estimator hist_gb]
        [--train-days 180] [--first-month 2025-07] [--months 7] [--max-train-rows N] [--mlflow URI]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: MEM_SHARED_DATA (a ``data`` folder) when set, else ``../shared/data`` beside this checkout.
SHARED = Path(os.environ.get("MEM_SHARED_DATA") or ROOT.parent / "shared" / "data") / "candles"
DEFAULT_CSV = str(SHARED / "*.csv.gz")
EXPERIMENT = "mem-reversal-walk-forward"


class _Fitted:
    """A fold's estimator that fits on at most ``max_rows`` training rows drawn at random (seeded;
    rows are ordered by time then symbol, so a stride would keep one symbol) and times its fit."""

    log: list[dict[str, float]] = []

    def __init__(self, estimator: Any, max_rows: int | None) -> None:
        self.estimator, self.max_rows = estimator, max_rows

    def fit(self, X: np.ndarray, y: np.ndarray) -> _Fitted:
        keep = np.arange(len(X))
        if self.max_rows is not None and len(X) > self.max_rows:
            keep = np.sort(np.random.default_rng(0).choice(len(X), self.max_rows, replace=False))
        started = time.perf_counter()
        self.estimator.fit(X[keep], y[keep])
        self.log.append({"rows_fitted": int(len(keep)), "fit_seconds": round(time.perf_counter() - started, 2)})
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.estimator.predict_proba(X)


def _dataset(paths: list[str], feature_set: str) -> tuple[Any, dict[str, Any]]:
    from mem_core import feature_sets
    from mem_core.labels import reversal_labels
    from mem_pipelines.ingest.csv_source import read_kline_csv
    from mem_pipelines.training.dataset import assemble_dataset, feature_frame, find_gaps, row_lookback

    fs = feature_sets.get(feature_set)
    per_symbol, gaps, spans = {}, {}, {}
    for path in paths:
        source = read_kline_csv(Path(path))
        candles = source.frame
        per_symbol[source.symbol] = (feature_frame(candles, [fs]), reversal_labels(candles))
        gaps[source.symbol] = find_gaps(candles["ts"])
        spans[source.symbol] = [candles["ts"].iloc[0].isoformat(), candles["ts"].iloc[-1].isoformat()]
    built = assemble_dataset(per_symbol, gaps=gaps, lookback=row_lookback([fs]))
    info = {"candles": spans, "gap_rows_dropped": built.dropped, "dataset_rows": int(len(built.data))}
    return built.data, info


def _summary(report: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": report.rows, "days": report.days}
    for name in (
        "roc_auc",
        "log_loss_gain_mnat",
        "brier_skill",
        "accuracy",
        "baseline_accuracy",
        "top_decile_precision",
        "top_decile_lift",
        "positive_rate",
    ):
        ci = report.intervals[name]
        out[name] = [round(report[name], 4), round(ci.low, 4), round(ci.high, 4)]
    return out


def main() -> None:
    from mem_pipelines.training import defaults

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", nargs="*", default=None, help=f"candle files (default {DEFAULT_CSV})")
    parser.add_argument("--feature-set", default=defaults.FEATURE_SET)
    parser.add_argument("--estimator", default=defaults.ESTIMATOR)
    parser.add_argument("--params", default="{}", help="JSON estimator parameters over the type's defaults")
    parser.add_argument("--train-days", type=float, default=float(defaults.TRAIN_DAYS))
    parser.add_argument("--first-month", default="2025-07")
    parser.add_argument("--months", type=int, default=7)
    parser.add_argument(
        "--max-train-rows", type=int, default=None, help="keep at most this many training rows per fold"
    )
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--mlflow", default=None, help="tracking URI to log the run to")
    args = parser.parse_args()
    paths = sorted(p for pattern in (args.csv or [DEFAULT_CSV]) for p in glob.glob(pattern))
    if not paths:
        parser.error(f"no candle files match {args.csv or DEFAULT_CSV}")

    from mem_pipelines.lib.walkforward import monthly_folds, walk_forward
    from mem_pipelines.training.fit import WalkForwardRun, limited_threads, new_model
    from mem_pipelines.training.render import walk_forward_markdown, walk_forward_png

    params = json.loads(args.params)
    load_started = time.perf_counter()
    data, info = _dataset(paths, args.feature_set)
    load_seconds = time.perf_counter() - load_started
    model = new_model(args.estimator, params, args.feature_set)
    folds = monthly_folds(args.first_month, args.months, train_days=args.train_days)

    def make() -> _Fitted:
        return _Fitted(new_model(args.estimator, params, args.feature_set).estimator, args.max_train_rows)

    started = time.perf_counter()
    with limited_threads():
        result = walk_forward(data, model.feature_names, make, folds, resamples=args.resamples)
    seconds = time.perf_counter() - started
    summary = result.summary()
    gains = [r.skill["log_loss_gain_mnat"] for r in result.folds]
    lows = [r.skill.intervals["log_loss_gain_mnat"].low for r in result.folds]
    report = {
        "benchmark": "walkforward_shared",
        "estimator": args.estimator,
        "params": model.params(),
        "feature_set": args.feature_set,
        "train_days": args.train_days,
        "max_train_rows": args.max_train_rows,
        "symbols": sorted(data["symbol"].unique()),
        **info,
        "folds": [
            {
                "test": r.fold.label,
                "train_start": r.fold.train_start.isoformat(),
                "train_end": r.fold.train_end.isoformat(),
                "train_rows": r.train_rows,
                "base_rate": round(r.base_rate, 4),
                **_Fitted.log[i],
                **_summary(r.skill),
            }
            for i, r in enumerate(result.folds)
        ],
        "pooled": _summary(result.pooled),
        "summary": {k: round(v, 4) for k, v in summary.items()},
        "acceptance": {
            "gain_positive_every_fold": all(g > 0 for g in gains),
            "pooled_gain_ci_low_above_0": result.pooled.intervals["log_loss_gain_mnat"].low > 0,
            "folds_ci_low_above_0": f"{sum(lo > 0 for lo in lows)}/{len(lows)}",
            "ci_low_above_0_in_80pct_of_folds": sum(lo > 0 for lo in lows) >= 0.8 * len(lows),
            "median_roc_auc_at_least_0.60": summary["walk_forward_median_roc_auc"] >= 0.60,
        },
        "seconds": {
            "dataset": round(load_seconds, 1),
            "walk_forward": round(seconds, 1),
            "fits": round(sum(f["fit_seconds"] for f in _Fitted.log), 1),
        },
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    title = f"{args.estimator} over {args.feature_set}, {args.train_days:g} days"
    if args.mlflow:
        import mlflow

        from mem_pipelines.training.mlflow_logging import log_walk_forward

        mlflow.set_tracking_uri(args.mlflow)
        experiment = mlflow.set_experiment(EXPERIMENT)
        with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=title) as run:
            mlflow.log_params(
                {
                    "estimator": args.estimator,
                    "feature_set": args.feature_set,
                    "max_train_rows": args.max_train_rows,
                    "first_month": args.first_month,
                    "months": args.months,
                    **{f"model.{k}": v for k, v in model.params().items()},
                }
            )
            log_walk_forward(
                WalkForwardRun(result, tuple(folds), args.train_days, seconds), walk_forward_png(result, title)
            )
            report["mlflow_run_id"] = run.info.run_id
    print(json.dumps(report, indent=2))
    print()
    print(
        f"**{title}**" + (f" (at most {args.max_train_rows:,} training rows per fold)" if args.max_train_rows else "")
    )
    print()
    print(walk_forward_markdown(result))


if __name__ == "__main__":
    main()
