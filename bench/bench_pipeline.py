"""Benchmark: the full training pipeline from QuestDB to a gated champion vs the bare model fit.

Starts its own QuestDB on free ports and an MLflow SQLite store in a temporary folder, ingests
4 symbols x 90 days of 5-minute candles (the shared real candles where present, synthetic
otherwise; ingestion is not timed), then times

* ``pipeline_seconds``: one in-process run of the ``train_and_gate`` job over all symbols
  (features and labels from QuestDB, dataset, the seed's GradientBoostingClassifier, MLflow run and
  registered version, the blocking checks, the champion gate), and
* ``bare_fit_seconds``: ``GradientBoostingClassifier(seed params).fit`` on the same training rows,

and prints JSON with both, their ratio (DESIGN §8 target <= 1.3), and the champion's holdout
accuracy against the majority baseline per symbol.

    .venv/bin/python bench/bench_pipeline.py [--days 90] [--symbols BTCUSDT,ETHUSDT,SOLUSDT,DOGEUSDT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "data" / "candles"


def _ingest(settings, symbols: list[str], days: int) -> dict[str, str]:
    from mem_core.questdb.store import write_candles
    from mem_pipelines.ingest.csv_source import read_kline_csv
    from mem_pipelines.ingest.load import ingest_synthetic

    sources = {}
    synthetic = []
    for symbol in symbols:
        path = SHARED / f"{symbol}-5m.csv.gz"
        if path.exists():
            frame = read_kline_csv(path).frame
            cut = frame["ts"].max() - pd.Timedelta(days=days)
            write_candles(settings, frame[frame["ts"] >= cut].reset_index(drop=True))
            sources[symbol] = "shared"
        else:
            synthetic.append(symbol)
    if synthetic:
        ingest_synthetic(settings, synthetic, days=days, seed=7, end=pd.Timestamp("2026-01-01", tz="UTC"))
        sources.update({s: "synthetic" for s in synthetic})
    return sources


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--symbols", default="BTCUSDT,DOGEUSDT,ETHUSDT,SOLUSDT")
    args = parser.parse_args()
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]

    import dagster as dg

    from mem_core import estimators, registry
    from mem_core.features import feature_matrix
    from mem_core.questdb.local import LocalQuestDB, default_jar, free_port
    from mem_pipelines.definitions import build_definitions
    from mem_pipelines.lib.evaluation import evaluate
    from mem_pipelines.resources import MlflowResource, TrainingFramesIOManager
    from mem_pipelines.settings import PipelineSettings
    from mem_pipelines.training.dataset import split_dataset
    from mem_pipelines.training.schedules import all_symbols_tags

    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        tmp_path = Path(tmp)
        server = LocalQuestDB(root=tmp_path / "questdb", http_port=free_port(), pg_port=free_port(), jar=default_jar())
        settings = server.start()
        try:
            sources = _ingest(settings, symbols, args.days)
            uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
            registry.ensure_experiment(uri)  # an existing store, as in production (schema creation not timed)
            defs = build_definitions(
                PipelineSettings(symbols=tuple(symbols), questdb=settings),
                resources={
                    "mlflow": MlflowResource(tracking_uri=uri),
                    "training_frames": TrainingFramesIOManager(base_dir=str(tmp_path / "frames")),
                },
            )
            job = defs.resolve_job_def("train_and_gate")
            partitions = job.partitions_def or dg.StaticPartitionsDefinition(sorted(symbols))
            (tmp_path / "dagster").mkdir()
            with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
                started = time.perf_counter()
                result = job.execute_in_process(
                    instance=instance,
                    tags=all_symbols_tags(partitions),
                    run_config={"ops": {"training_dataset": {"config": {"last_days": args.days}}}},
                )
                pipeline_seconds = time.perf_counter() - started
                dataset: pd.DataFrame = result.output_for_node("training_dataset")
                model_meta = result.asset_materializations_for_node("reversal_model")[0].metadata
                gate_meta = result.asset_materializations_for_node("champion_gate")[0].metadata

            split = split_dataset(dataset)
            X, y = feature_matrix(dataset), dataset["label"].to_numpy()
            bare = estimators.create()
            started = time.perf_counter()
            bare.fit(X[split.train], y[split.train])
            bare_fit_seconds = time.perf_counter() - started

            champion = registry.load_champion(uri)
            hold = dataset.iloc[split.holdout]
            per_symbol = {}
            for symbol, rows in hold.groupby("symbol"):
                m = evaluate(rows["label"].to_numpy(), champion.predict_proba(feature_matrix(rows)))
                per_symbol[symbol] = {
                    "holdout_rows": m.rows,
                    "accuracy": round(m.accuracy, 4),
                    "baseline_accuracy": round(m.baseline_accuracy, 4),
                    "precision": round(m.precision, 4),
                    "recall": round(m.recall, 4),
                    "roc_auc": None if m.roc_auc is None else round(m.roc_auc, 4),
                    "source": sources[symbol],
                }
        finally:
            server.stop()

    report = {
        "benchmark": "pipeline_vs_bare_fit",
        "symbols": symbols,
        "days": args.days,
        "sources": sources,
        "dataset_rows": int(len(dataset)),
        "train_rows": int(len(split.train)),
        "holdout_rows": int(len(split.holdout)),
        "positive_rate": round(float(dataset["label"].mean()), 4),
        "pipeline_seconds": round(pipeline_seconds, 2),
        "fit_seconds_inside_pipeline": round(float(model_meta["fit_seconds"].value), 2),
        "bare_fit_seconds": round(bare_fit_seconds, 2),
        "ratio": round(pipeline_seconds / bare_fit_seconds, 3),
        "target_ratio": 1.3,
        "meets_target": pipeline_seconds / bare_fit_seconds <= 1.3,
        "holdout_accuracy": round(float(model_meta["accuracy"].value), 4),
        "holdout_baseline_accuracy": round(float(model_meta["baseline_accuracy"].value), 4),
        "gate_verdict": gate_meta["verdict"].value,
        "champion_version": gate_meta["champion_after"].value,
        "per_symbol_holdout": per_symbol,
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
