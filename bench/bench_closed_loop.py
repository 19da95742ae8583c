"""Does memory learn? The planted-edge experiment and its control, and the shared-data replays,
through the real server (docs/closed_loop.md, "Does memory learn?").

Starts its own QuestDB on free ports in a temporary folder, then

* ``planted``: the planted-edge market (``mem_pipelines.replay.planted``) — a champion trained on
  its first days, a fresh memory, the replay of the rest — and the same market with the condition
  shuffled (the control);
* ``shared``: BTCUSDT + ETHUSDT from the shared candles: the seed's GradientBoosting trained on
  2025-04-01 .. 2025-05-31, replays of June, July and August 2025 (each on a fresh memory) and of
  June - August as one window.

Prints JSON (per run: the comparison table, every per-trade difference with its 95% CI and
verdict, the decomposition, the learned strategies) and writes each run's report under ``--out``.

    .venv/bin/python bench/bench_closed_loop.py planted [--days 60] [--train-days 12] [--seed 11]
    MEM_SHARED_DATA=/path/to/data .venv/bin/python bench/bench_closed_loop.py shared
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: The shared real candles: $MEM_SHARED_DATA/candles, else ../shared/data/candles beside the checkout.
SHARED = (
    Path(os.environ["MEM_SHARED_DATA"]) / "candles"
    if os.environ.get("MEM_SHARED_DATA")
    else ROOT.parent / "shared" / "data" / "candles"
)


def summary(report, seconds: float) -> dict:
    from mem_pipelines.replay.stats import after

    half = report.second_half
    return {
        "window": [report.start.isoformat(), report.end.isoformat()],
        "seconds": round(seconds, 1),
        "table": report.table_markdown(),
        "verdict": report.verdict(),
        "differences": report.differences_frame().to_dict(orient="records"),
        "decomposition": report.decomposition_frame().to_dict(orient="records"),
        "second_half_trades": {v.name: len(after(v.trades, half)) for v in report.variants},
        "learned_strategies": report.final_strategies,
        "events": [e.__dict__ | {"ts": e.ts.isoformat()} for e in report.events if e.kind.startswith("strategy")],
    }


def planted(args, settings, tmp: Path, out: Path) -> dict:
    from mem_cli.planted_job import PlantedRun, control_of, run_planted
    from mem_pipelines.replay.planted import PlantedMarket

    run = PlantedRun(PlantedMarket(days=args.days, seed=args.seed), train_days=args.train_days)
    results = {"market": {k: str(v) for k, v in asdict(run.market).items()}, "train_days": run.train_days}
    for name, r in (("planted", run), ("control", control_of(run))):
        started = time.monotonic()
        report = run_planted(r, settings, tmp / name)
        report.write(out / name)
        results[name] = summary(report, time.monotonic() - started)
        print(f"{name}: done in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return results


def shared(args, settings, tmp: Path, out: Path) -> dict:
    from mem_core import registry
    from mem_core.features import compute_features
    from mem_core.labels import reversal_labels
    from mem_core.questdb.store import write_candles
    from mem_pipelines.ingest.csv_source import read_kline_csv
    from mem_pipelines.replay.runner import ReplayConfig, run_replay
    from mem_pipelines.training.dataset import build_dataset
    from mem_pipelines.training.mlflow_logging import train_and_log
    from mem_serving.server import build_app
    from mem_serving.settings import ServingSettings

    symbols = ("BTCUSDT", "ETHUSDT")
    train_start, train_end = pd.Timestamp("2025-04-01", tz="UTC"), pd.Timestamp("2025-06-01", tz="UTC")
    per_symbol = {}
    for symbol in symbols:
        frame = read_kline_csv(SHARED / f"{symbol}-5m.csv.gz").frame
        frame = frame[
            (frame["ts"] >= train_start - pd.Timedelta(days=3)) & (frame["ts"] < pd.Timestamp("2025-09-01", tz="UTC"))
        ]
        write_candles(settings, frame.reset_index(drop=True))
        part = frame[frame["ts"] < train_end].reset_index(drop=True)
        per_symbol[symbol] = (compute_features(part), reversal_labels(part))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    dataset = build_dataset(per_symbol, start=train_start)
    # The last label looks 10 candles ahead: end the labelled rows an hour before the replays.
    dataset = dataset[dataset["ts"] < train_end - pd.Timedelta(hours=1)].reset_index(drop=True)
    result = train_and_log(dataset, tracking_uri=uri, estimator="seed_gbc", feature_set="seed")
    registry.client(uri).set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, result.version)
    results = {
        "champion": {
            "rows": len(dataset),
            "holdout_accuracy": result.metrics.accuracy,
            "baseline_accuracy": result.metrics.baseline_accuracy,
            **result.lineage,
        }
    }
    windows = {
        "2025-06": ("2025-06-01", "2025-07-01"),
        "2025-07": ("2025-07-01", "2025-08-01"),
        "2025-08": ("2025-08-01", "2025-09-01"),
        "2025-06..08": ("2025-06-01", "2025-09-01"),
    }
    for name in args.windows.split(","):
        start, end = windows[name]
        memory_db = tmp / name / "memory.db"
        running = build_app(
            ServingSettings(
                port=0, metrics_port=-1, memory_db=memory_db, tracking_uri=uri, model_poll_s=60.0, max_workers=4
            ),
            start_metrics=False,
        )
        started = time.monotonic()
        try:
            report = run_replay(
                ReplayConfig(
                    symbols=symbols,
                    start=start,
                    end=end,
                    server=f"127.0.0.1:{running.port}",
                    fee_bps=10,
                    slippage_bps=5,
                    questdb=settings,
                )
            )
        finally:
            running.stop(grace=1.0)
        report.write(out / f"shared-{name}")
        results[name] = summary(report, time.monotonic() - started)
        print(f"{name}: done in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("experiment", choices=["planted", "shared"])
    parser.add_argument("--days", type=float, default=60.0)
    parser.add_argument("--train-days", type=float, default=12.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--windows", default="2025-06,2025-07,2025-08,2025-06..08")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "closed_loop")
    args = parser.parse_args()
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)

    from mem_core.questdb.local import LocalQuestDB, default_jar, free_port

    with tempfile.TemporaryDirectory(prefix="mem-closed-loop-") as folder:
        tmp = Path(folder)
        server = LocalQuestDB(root=tmp / "questdb", http_port=free_port(), pg_port=free_port(), jar=default_jar())
        settings = server.start()
        try:
            results = (planted if args.experiment == "planted" else shared)(args, settings, tmp, args.out)
        finally:
            server.stop()
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
