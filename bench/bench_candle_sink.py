"""EnhanceSignal latency with the candle write-behind on and off, measured in one run. Prints JSON.

Set-up, all in a temporary folder: a QuestDB on free ports, a real champion (the seed's
GradientBoostingClassifier fitted on real BTCUSDT candles, as bench_serving.py does), and two
``mem serve`` processes that differ only in ``MEM_SERVING_CANDLE_SINK`` (``off`` / ``on``, both
pointing at that QuestDB). Each gets the same 400-candle history, then one sequential client
sends EnhanceSignal calls carrying one new real candle each (so with the sink on every call queues
a candle and the background thread writes about one batch a second). The calls alternate between
the two servers in rounds (off, on, on, off, ...), so a change in the machine's load hits both
alike. Targets (DESIGN §8): p50 <= 2 ms, p99 <= 5 ms.

At the end the "on" server's metrics say what the write-behind did (queued, written, dropped,
failures) and QuestDB is counted: every candle sent must be there.

    .venv/bin/python bench/bench_candle_sink.py [--calls 3000] [--rounds 10] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_serving as bs  # the champion, the real candles, the server-side histograms

from mem_testing.serve_process import start_serve, stop

ROOT = Path(__file__).resolve().parents[1]


def _candles_dir() -> Path:
    if os.environ.get("MEM_SHARED_DATA"):
        return Path(os.environ["MEM_SHARED_DATA"]) / "candles"
    return ROOT.parent / "shared" / "data" / "candles"


def _start_server(
    name: str, sink: str, tmp: Path, uri: str, questdb, workers: int, flush_s: float
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "MEM_HOME": str(tmp / name),
        "PYTHONUNBUFFERED": "1",
        "MEM_SERVING_CANDLE_SINK": sink,
        "MEM_SERVING_CANDLE_FLUSH_S": str(flush_s),
        "MEM_QUESTDB_HTTP_PORT": str(questdb.http_port),
        "MEM_QUESTDB_PG_PORT": str(questdb.pg_port),
    }
    env.pop("MEM_SERVING_TOKEN", None)
    env.pop("MEM_QUESTDB_HOST", None)
    (tmp / name).mkdir()
    return start_serve(tmp / name / "memory.db", "--workers", str(workers), env=env, tracking_uri=uri, model_poll=5)


def _metric(url: str, name: str, labels: str = "") -> float:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(name + labels + " "):
            return float(line.rsplit(" ", 1)[1])
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=3000, help="measured EnhanceSignal calls per server")
    ap.add_argument("--rounds", type=int, default=10, help="alternations between the two servers")
    ap.add_argument("--workers", type=int, default=8, help="server thread-pool size")
    ap.add_argument(
        "--flush-s", type=float, default=1.0, help="MEM_SERVING_CANDLE_FLUSH_S of the server with the write-behind on"
    )
    ap.add_argument("--quick", action="store_true", help="a 50-tree model instead of the seed's 200 (faster set-up)")
    args = ap.parse_args()

    import grpc

    from mem_core.features import SERVING_HISTORY
    from mem_core.questdb.local import LocalQuestDB, default_jar, free_port
    from mem_core.questdb.store import count_candles
    from mem_serving.api import MemServiceStub, pb

    bs.CANDLES = _candles_dir()
    load_before = [round(x, 2) for x in os.getloadavg()]
    tmp = Path(tempfile.mkdtemp(prefix="mem-bench-sink-"))
    questdb = LocalQuestDB(root=tmp / "questdb", http_port=free_port(), pg_port=free_port(), jar=default_jar())
    servers: list[subprocess.Popen] = []
    try:
        settings = questdb.start()
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        version, fit_s = bs._train_champion(uri, args.quick)
        warmup = 50
        per_round = -(-args.calls // args.rounds)
        rows = bs._rows(0, SERVING_HISTORY + warmup + per_round * args.rounds)
        info, stubs, channels = {}, {}, []
        for name in ("off", "on"):
            proc, ready = _start_server(name, name, tmp, uri, settings, args.workers, args.flush_s)
            servers.append(proc)
            info[name] = ready
            channel = grpc.insecure_channel(ready["grpc"])
            channels.append(channel)
            stubs[name] = MemServiceStub(channel)
            history = [bs._candle(pb, r) for r in rows[:SERVING_HISTORY]]
            stubs[name].PredictReversal(pb.PredictReversalRequest(symbol="BTCUSDT", candles=history), timeout=30)
        requests = [
            pb.EnhanceSignalRequest(
                symbol="BTCUSDT",
                action=pb.ACTION_BUY if i % 2 else pb.ACTION_SELL,
                base_confidence=0.65,
                price=float(r[4]),
                strategy="bench",
                candles=[bs._candle(pb, r)],
                session_id="bench",
            )
            for i, r in enumerate(rows[SERVING_HISTORY:])
        ]
        for name in ("off", "on"):  # warm-up (not measured)
            for r in requests[:warmup]:
                stubs[name].EnhanceSignal(r, timeout=5)
        latencies: dict[str, list[float]] = {"off": [], "on": []}
        errors = {"off": 0, "on": 0}
        clock = time.perf_counter
        for k in range(args.rounds):
            order = ("off", "on") if k % 2 == 0 else ("on", "off")
            chunk = requests[warmup + k * per_round : warmup + (k + 1) * per_round]
            for name in order:
                stub, lat = stubs[name], latencies[name]
                for r in chunk:
                    t = clock()
                    try:
                        stub.EnhanceSignal(r, timeout=5)
                    except grpc.RpcError:
                        errors[name] += 1
                    lat.append(clock() - t)
        sent = SERVING_HISTORY + warmup + per_round * args.rounds
        on_metrics = info["on"]["metrics"]
        deadline = time.monotonic() + 60
        while _metric(on_metrics, "mem_candles_pending") > 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        from mem_core.questdb.store import wait_for_wal

        wait_for_wal(settings)
        stored = count_candles(settings, "BTCUSDT")

        def summary(name: str) -> dict:
            lat = latencies[name]
            return {
                "calls": len(lat),
                "errors": errors[name],
                "p50_ms": bs._pct(lat, 50),
                "p90_ms": bs._pct(lat, 90),
                "p99_ms": bs._pct(lat, 99),
                "max_ms": bs._pct(lat, 100),
                "mean_ms": round(float(np.mean(lat)) * 1000.0, 3),
                "server_side": {
                    k: v
                    for k, v in bs._server_side(info[name]["metrics"]).items()
                    if k in ("enhancement", "ml_latency", "memory_load")
                },
            }

        off, on = summary("off"), summary("on")
        report = {
            "benchmark": "candle_sink",
            "model": {
                "version": version,
                "estimator": "GradientBoostingClassifier",
                "trees": 50 if args.quick else 200,
                "fit_s": round(fit_s, 2),
            },
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "rounds": args.rounds,
            "flush_s": args.flush_s,
            "sink_off": off,
            "sink_on": on,
            "delta_on_minus_off_ms": {q: round(on[q] - off[q], 3) for q in ("p50_ms", "p90_ms", "p99_ms", "mean_ms")},
            "write_behind": {
                "queued": _metric(on_metrics, "mem_candles_queued_total"),
                "written": _metric(on_metrics, "mem_candles_written_total"),
                "dropped": {
                    r: _metric(on_metrics, "mem_candles_dropped_total", f'{{reason="{r}"}}')
                    for r in ("queue_full", "shutdown", "error")
                },
                "write_failures": _metric(on_metrics, "mem_candles_write_failures_total"),
                "candles_sent": sent,
                "candles_in_questdb": stored,
            },
            "targets": {"p50_ms": 2.0, "p99_ms": 5.0},
        }
        report["meets"] = {
            "p50_on": on["p50_ms"] <= 2.0,
            "p99_on": on["p99_ms"] <= 5.0,
            "p50_off": off["p50_ms"] <= 2.0,
            "p99_off": off["p99_ms"] <= 5.0,
            "every_candle_in_questdb": stored == sent,
        }
        for channel in channels:
            channel.close()
        print(json.dumps(report, indent=2))
    finally:
        for proc in servers:
            stop(proc, timeout=30)
        questdb.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
