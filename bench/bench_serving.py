"""EnhanceSignal over gRPC on loopback: latency (sequential client) and sustained decisions/s
(concurrent client processes). Prints one JSON object.

Set-up, all in a temporary folder: a real champion (the seed's GradientBoostingClassifier, fitted
on real BTCUSDT 5-minute features from ../shared/data/candles and registered in a SQLite MLflow
store), an empty memory store, and the server started as a subprocess with ``mem serve``.

``server_side`` reads the server's own histograms (/metrics: ML latency, memory time, handler
time; bucket upper bounds for p50/p99) to show where the time goes.

Every EnhanceSignal carries one new candle (the server keeps each symbol's recent history), no
ML prediction (the server predicts), so every call computes features, runs the model and
records a decision. Targets (DESIGN §8): p50 <= 2 ms, p99 <= 5 ms, >= 1,000 decisions/s.

    .venv/bin/python bench/bench_serving.py [--calls 3000] [--clients 4] [--seconds 10]
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CANDLES = ROOT.parent / "shared" / "data" / "candles"
TRAIN_ROWS = 8000


def _load(symbol: str, rows: int):
    import pandas as pd

    raw = pd.read_csv(CANDLES / f"{symbol}-5m.csv.gz", nrows=rows)
    frame = pd.DataFrame({"ts": pd.to_datetime(raw["open_time"], unit="ms", utc=True)})
    for col in ("open", "high", "low", "close", "volume"):
        frame[col] = raw[col].astype("float64")
    return frame


def _train_champion(uri: str, quick: bool) -> tuple[str, float]:
    from mem_pipelines.lib.features import compute_features
    from mem_pipelines.lib.labels import reversal_labels
    from mem_pipelines.training import registry, train

    candles = _load("BTCUSDT", TRAIN_ROWS)
    dataset = train.build_dataset({"BTCUSDT": (compute_features(candles), reversal_labels(candles))})
    params = {"n_estimators": 50} if quick else None  # None: the seed's 200 trees, depth 5
    started = time.perf_counter()
    result = train.train_and_log(dataset, tracking_uri=uri, estimator_params=params)
    registry.client(uri).set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, result.version)
    return result.version, time.perf_counter() - started


def _rows(offset: int, n: int) -> np.ndarray:
    """(n, 6) array ts_ms, o, h, l, c, v of real candles after the training window."""
    frame = _load("BTCUSDT", TRAIN_ROWS + offset + n).iloc[TRAIN_ROWS + offset :]
    ts = frame["ts"].astype("int64").to_numpy() // 1_000_000
    return np.column_stack([ts, frame[["open", "high", "low", "close", "volume"]].to_numpy()])


def _candle(pb, row) -> object:
    from google.protobuf.timestamp_pb2 import Timestamp

    ts = Timestamp()
    ts.FromMilliseconds(int(row[0]))
    return pb.Candle(ts=ts, open=row[1], high=row[2], low=row[3], close=row[4], volume=row[5])


def _client(address: str, symbol: str, rows: np.ndarray, history: int, calls: int | None, seconds: float | None,
            start_at: float | None, out) -> None:
    import grpc

    from mem_serving._gen.mem.v1 import mem_pb2 as pb
    from mem_serving._gen.mem.v1 import mem_pb2_grpc

    channel = grpc.insecure_channel(address)
    stub = mem_pb2_grpc.MemServiceStub(channel)
    stub.PredictReversal(pb.PredictReversalRequest(symbol=symbol, candles=[_candle(pb, r) for r in rows[:history]]), timeout=30)
    requests = [
        pb.EnhanceSignalRequest(
            symbol=symbol, action=pb.ACTION_BUY if i % 2 else pb.ACTION_SELL, base_confidence=0.65, price=float(r[4]),
            strategy="bench", candles=[_candle(pb, r)], session_id=symbol,
        )
        for i, r in enumerate(rows[history:])
    ]
    for r in requests[:50]:  # warm-up (not measured)
        stub.EnhanceSignal(r, timeout=5)
    todo = requests[50:]
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))
    latencies, errors, done = [], 0, 0
    end = time.perf_counter() + seconds if seconds else None
    for r in todo[: calls or len(todo)]:
        t = time.perf_counter()
        try:
            stub.EnhanceSignal(r, timeout=5)
            done += 1
        except grpc.RpcError:
            errors += 1
        latencies.append(time.perf_counter() - t)
        if end is not None and time.perf_counter() >= end:
            break
    elapsed = sum(latencies)
    channel.close()
    out.put({"symbol": symbol, "done": done, "errors": errors, "elapsed": elapsed, "latencies": latencies})


def _server_side(url: str) -> dict[str, dict[str, float]]:
    """Mean and bucket-estimated p50/p99 (ms) of the server's histograms, from /metrics."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(url, timeout=10).read().decode()
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        buckets = [(float(s.labels["le"]), s.value) for s in family.samples if s.name.endswith("_bucket")]
        count = next(s.value for s in family.samples if s.name.endswith("_count"))
        total = next(s.value for s in family.samples if s.name.endswith("_sum"))
        if not count:
            continue

        def quantile(q: float) -> float:
            for le, cum in buckets:
                if cum >= q * count:
                    return round(le * 1000.0, 3)
            return math.inf

        out[family.name.removeprefix("mem_").removesuffix("_seconds")] = {
            "count": int(count), "mean_ms": round(total / count * 1000.0, 3), "p50_ms_le": quantile(0.5), "p99_ms_le": quantile(0.99),
        }
    return out


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values) * 1000.0, q)), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=3000, help="sequential EnhanceSignal calls measured")
    ap.add_argument("--clients", type=int, default=4, help="concurrent client processes")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the concurrent phase")
    ap.add_argument("--workers", type=int, default=8, help="server worker threads")
    ap.add_argument("--quick", action="store_true", help="a 50-tree model instead of the seed's 200 (faster set-up)")
    args = ap.parse_args()

    from mem_pipelines.lib.features import SERVING_HISTORY

    tmp = Path(tempfile.mkdtemp(prefix="mem-bench-serving-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    version, fit_s = _train_champion(uri, args.quick)
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MEM_HOME": str(tmp), "PYTHONUNBUFFERED": "1"}
    env.pop("MEM_SERVING_TOKEN", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "mem_cli.main", "serve", "--port", "0", "--metrics-port", "0", "--memory-db", str(tmp / "memory.db"),
         "--tracking-uri", uri, "--workers", str(args.workers), "--model-poll", "5"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = server.stdout.readline()
        info = json.loads(line)
        address = info["grpc"]
        ctx = mp.get_context("spawn")
        out = ctx.Queue()

        # 1. latency: one sequential client, a new candle every call
        rows = _rows(0, SERVING_HISTORY + 50 + args.calls)
        proc = ctx.Process(target=_client, args=(address, "BTCUSDT", rows, SERVING_HISTORY, args.calls, None, None, out))
        proc.start()
        seq = out.get(timeout=600)
        proc.join()
        server_seq = _server_side(info["metrics"])

        # 2. throughput: several client processes, distinct symbols, the same real candles
        per_client = int(args.seconds * 1500) + 50
        rows = _rows(0, SERVING_HISTORY + per_client)
        start_at = time.time() + 8.0  # let every client connect and warm up first
        procs = [
            ctx.Process(target=_client, args=(address, f"SYM{k}", rows, SERVING_HISTORY, None, args.seconds, start_at, out))
            for k in range(args.clients)
        ]
        for p in procs:
            p.start()
        results = [out.get(timeout=600) for _ in procs]
        for p in procs:
            p.join()
        done = sum(r["done"] for r in results)
        wall = max(r["elapsed"] for r in results)
        all_lat = [x for r in results for x in r["latencies"]]
        report = {
            "benchmark": "serving",
            "model": {"version": version, "estimator": "GradientBoostingClassifier", "trees": 50 if args.quick else 200, "fit_s": round(fit_s, 2)},
            "cpus": os.cpu_count(),
            "server_workers": args.workers,
            "sequential": {
                "calls": len(seq["latencies"]), "errors": seq["errors"],
                "p50_ms": _pct(seq["latencies"], 50), "p90_ms": _pct(seq["latencies"], 90),
                "p99_ms": _pct(seq["latencies"], 99), "max_ms": _pct(seq["latencies"], 100),
                "calls_per_s": round(len(seq["latencies"]) / seq["elapsed"], 1),
            },
            "concurrent": {
                "clients": args.clients, "seconds": round(wall, 2), "decisions": done,
                "errors": sum(r["errors"] for r in results),
                "decisions_per_s": round(done / wall, 1),
                "p50_ms": _pct(all_lat, 50), "p99_ms": _pct(all_lat, 99),
            },
            "server_side": {"after_sequential": server_seq, "after_all": _server_side(info["metrics"])},
            "targets": {"p50_ms": 2.0, "p99_ms": 5.0, "decisions_per_s": 1000},
        }
        report["meets"] = {
            "p50": report["sequential"]["p50_ms"] <= 2.0,
            "p99": report["sequential"]["p99_ms"] <= 5.0,
            "throughput": report["concurrent"]["decisions_per_s"] >= 1000,
        }
        print(json.dumps(report, indent=2))
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
