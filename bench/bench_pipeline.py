"""Benchmark: the daily retrain, default model against the seed's, side by side in one run.

Starts its own QuestDB on free ports and an MLflow SQLite store in a temporary folder, ingests the
last ``--history-days`` (default: the training window + 3 days of warm-up) of the 7 shared candle
files (not timed), then times two in-process runs of the ``train_and_gate`` job over all symbols
with the daily schedule's run config (the last ``defaults.TRAIN_DAYS`` days):

* ``default``: ``hist_gb`` over ``regime_v1`` with its walk-forward (5 rolling folds), and
* ``seed``: the seed's ``seed_gbc`` over ``seed``; its walk-forward would take ~5 more of its
  fits, so by default it runs without (``--seed-walk-forward`` runs it) and the JSON says so,
  with an estimate from its own fit time.

Each run is the whole job: candles from QuestDB and their blocking checks, features, labels,
dataset, fit, walk-forward, MLflow run and registered version, the gate (the second run's
challenger meets the first run's champion, if any). Prints JSON: per configuration the wall
time, the time of each step, fit and walk-forward seconds, holdout and walk-forward skill and
the gate's verdict; the target is the default's daily retrain <= 300 s on 2 cores.

    .venv/bin/python bench/bench_pipeline.py [--history-days 183] [--seed-walk-forward]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: MEM_SHARED_DATA (a ``data`` folder) when set, else ``../shared/data`` beside this checkout.
SHARED = Path(os.environ.get("MEM_SHARED_DATA") or ROOT.parent / "shared" / "data") / "candles"
TARGET_SECONDS = 300.0


def _ingest(settings: Any, days: float) -> dict[str, dict[str, Any]]:
    from mem_core.questdb.store import write_candles
    from mem_pipelines.ingest.csv_source import read_kline_csv

    out = {}
    for path in sorted(glob.glob(str(SHARED / "*-5m.csv.gz"))):
        source = read_kline_csv(path)
        frame = source.frame
        frame = frame[frame["ts"] > frame["ts"].max() - pd.Timedelta(days=days)].reset_index(drop=True)
        write_candles(settings, frame)
        out[source.symbol] = {
            "rows": len(frame),
            "first": frame["ts"].iloc[0].isoformat(),
            "last": frame["ts"].iloc[-1].isoformat(),
        }
    if not out:
        raise SystemExit(f"no shared candles in {SHARED}")
    return out


def _step_seconds(instance: Any, run_id: str) -> dict[str, float]:
    """Wall time of each step of a run, from its event log."""
    started: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or entry.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            started[entry.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and entry.step_key in started:
            seconds[entry.step_key] = round(entry.timestamp - started[entry.step_key], 2)
    return seconds


def _values(result: Any, node: str) -> dict[str, Any]:
    return {k: v.value for k, v in result.asset_materializations_for_node(node)[0].metadata.items()}


def _run(job: Any, instance: Any, run_config: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    result = job.execute_in_process(instance=instance, run_config=run_config)
    seconds = time.perf_counter() - started
    model = _values(result, "reversal_model")
    gate = _values(result, "champion_gate")
    dataset = _values(result, "training_dataset")
    out: dict[str, Any] = {
        "estimator": model["estimator"],
        "feature_set": model["feature_set"],
        "pipeline_seconds": round(seconds, 1),
        "step_seconds": _step_seconds(instance, result.run_id),
        "fit_seconds": model["fit_seconds"],
        "dataset_rows": dataset["rows"],
        "train_rows": model["train_rows"],
        "holdout_rows": model["holdout_rows"],
        "holdout": {
            "roc_auc": model.get("roc_auc"),
            "log_loss_gain_mnat": [
                model["holdout_log_loss_gain_mnat"],
                model["holdout_log_loss_gain_ci_low"],
                model["holdout_log_loss_gain_ci_high"],
            ],
            "brier_skill": model["holdout_brier_skill"],
            "top_decile_lift": model["holdout_top_decile_lift"],
            "accuracy": model["accuracy"],
            "baseline_accuracy": model["baseline_accuracy"],
        },
        "gate": {"verdict": gate["verdict"], "sentence": gate["sentence"], "champion_after": gate["champion_after"]},
    }
    if "walk_forward_seconds" in model:
        out["walk_forward_seconds"] = model["walk_forward_seconds"]
        out["walk_forward"] = {
            "folds": model["walk_forward_folds"],
            "train_days": model["walk_forward_train_days"],
            "folds_gain_positive": model["walk_forward_folds_gain_positive"],
            "folds_gain_ci_above_zero": model["walk_forward_folds_gain_ci_above_zero"],
            "pooled_log_loss_gain_mnat": [
                model["walk_forward_pooled_log_loss_gain_mnat"],
                model["walk_forward_pooled_log_loss_gain_ci_low"],
                model["walk_forward_pooled_log_loss_gain_ci_high"],
            ],
            "median_roc_auc": model["walk_forward_median_roc_auc"],
            "pooled_roc_auc": model["walk_forward_pooled_roc_auc"],
        }
    fits = out["fit_seconds"] + out.get("walk_forward_seconds", 0.0)
    out["seconds_outside_model_fits"] = round(seconds - fits, 1)
    return out


def main() -> None:
    from mem_pipelines.training import defaults

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history-days", type=float, default=defaults.TRAIN_DAYS + 3)
    parser.add_argument(
        "--seed-walk-forward", action="store_true", help="run the seed's model with its walk-forward too"
    )
    args = parser.parse_args()

    import dagster as dg

    from mem_core import registry
    from mem_core.questdb.local import LocalQuestDB, default_jar, free_port
    from mem_pipelines.definitions import build_definitions
    from mem_pipelines.resources import MlflowResource, TrainingFramesIOManager
    from mem_pipelines.settings import PipelineSettings
    from mem_pipelines.training.schedules import daily_run_config

    load_before = [round(x, 2) for x in os.getloadavg()]
    configs: dict[str, dict[str, Any]] = {
        "default": {},
        "seed": {
            "estimator": "seed_gbc",
            "feature_set": "seed",
            **({} if args.seed_walk_forward else {"walk_forward_folds": 0}),
        },
    }
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        tmp_path = Path(tmp)
        server = LocalQuestDB(root=tmp_path / "questdb", http_port=free_port(), pg_port=free_port(), jar=default_jar())
        settings = server.start()
        try:
            sources = _ingest(settings, args.history_days)
            symbols = tuple(sorted(sources))
            uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
            registry.ensure_experiment(uri)  # an existing store, as in production (schema creation not timed)
            defs = build_definitions(
                PipelineSettings(symbols=symbols, questdb=settings),
                resources={
                    "mlflow": MlflowResource(tracking_uri=uri),
                    "training_frames": TrainingFramesIOManager(base_dir=str(tmp_path / "frames")),
                },
            )
            job = defs.resolve_job_def("train_and_gate")
            (tmp_path / "dagster").mkdir()
            with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
                for name, model_config in configs.items():
                    run_config = daily_run_config()
                    if model_config:
                        run_config["ops"]["reversal_model"] = {"config": model_config}
                    results[name] = _run(job, instance, run_config)
        finally:
            server.stop()

    default, seed = results["default"], results["seed"]
    if "walk_forward" not in seed:
        wf = default["walk_forward"]
        # the main fit trains on the window's first 80%; each fold on ``train_days`` of it
        estimate = seed["fit_seconds"] * wf["folds"] * wf["train_days"] / (0.8 * defaults.TRAIN_DAYS)
        seed["walk_forward"] = (
            f"not run: {wf['folds']} folds of the seed's GradientBoosting on {wf['train_days']:g} days each would add "
            f"~{estimate:.0f} s (its fit time scales with rows); the timing above is the same job on the same rows "
            "without walk-forward (--seed-walk-forward runs it)"
        )
        seed["estimated_walk_forward_seconds"] = round(estimate)
    report = {
        "benchmark": "daily_retrain",
        "symbols": list(sources),
        "history_days": args.history_days,
        "window_days": defaults.TRAIN_DAYS,
        "candles": sources,
        "threads_per_fit": defaults.THREADS,
        "target_seconds": TARGET_SECONDS,
        "default_meets_target": default["pipeline_seconds"] <= TARGET_SECONDS,
        "configs": results,
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
