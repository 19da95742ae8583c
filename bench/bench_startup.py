"""``mem serve`` start-up: seconds from spawning the process to its first answer of SERVING with
the champion loaded, with the local model cache empty (cold) and filled by the previous start
(warm). Prints one JSON object.

Set-up as in bench_serving.py: a champion (default ``hist_gb`` over ``regime_v1``, the training
job's defaults) fitted on real BTCUSDT candles and registered in a temporary SQLite MLflow store;
an empty memory store; ``MEM_HOME`` in the same temporary folder, so the model cache
(``<MEM_HOME>/.mem/cache/models``) starts empty. numba's on-disk cache of the compiled kernels
is the installation's, as on any machine that ran ``mem serve`` once.

Each start: the clock starts just before ``mem serve`` is spawned; the bench asks
``grpc.health.v1.Health/Check`` every 10 ms until it answers SERVING, then ``GetModelInfo``
until it names the champion's version; that moment is the figure. The server is then stopped
(SIGTERM). ``--cold`` starts each empty the cache first; the ``--warm`` starts after them find it
filled. The server's own account of its start (the ``started in`` log line: wall and CPU
seconds of the imports, the memory store, the feature kernels, the champion, the gRPC server) is
reported beside each: its CPU seconds are the figure that a busy machine disturbs least. The
floor, measured in the same run: spawning ``python -c 'import grpc'`` until it exits.

    .venv/bin/python bench/bench_startup.py [--cold 3] [--warm 3] [--estimator hist_gb] [--feature-set regime_v1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_serving as common

ROOT = Path(__file__).resolve().parents[1]


def _until_serving(address: str, version: str, timeout: float) -> tuple[float, float]:
    """Poll until SERVING, then until GetModelInfo names ``version``; the two moments
    (``time.perf_counter``)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from mem_serving.api import MemServiceStub, pb

    deadline = time.perf_counter() + timeout
    serving_at = None
    # retry the connection every 20 ms: gRPC's default backoff (1 s, growing) would add seconds
    fast_retry = [
        ("grpc.initial_reconnect_backoff_ms", 20),
        ("grpc.min_reconnect_backoff_ms", 20),
        ("grpc.max_reconnect_backoff_ms", 20),
    ]
    with grpc.insecure_channel(address, options=fast_retry) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        stub = MemServiceStub(channel)
        while time.perf_counter() < deadline:
            try:
                if serving_at is None:
                    status = health.Check(health_pb2.HealthCheckRequest(service="mem.v1.MemService"), timeout=1)
                    if status.status != health_pb2.HealthCheckResponse.SERVING:
                        raise RuntimeError("not serving yet")
                    serving_at = time.perf_counter()
                info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=1)
                if info.ml_usable and info.champion_version == version:
                    return serving_at, time.perf_counter()
            except (grpc.RpcError, RuntimeError):
                pass
            time.sleep(0.01)
    raise TimeoutError(f"mem serve did not serve champion {version} within {timeout:.0f} s")


def _start(env: dict[str, str], port: int, version: str, log: Path, timeout: float) -> dict:
    """One start of ``mem serve``: seconds to SERVING and to the champion; the server's log line."""
    args = ["--port", str(port), "--metrics-port", "-1", "--memory-db", env["MEM_HOME"] + "/memory.db"]
    with open(log, "w") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "mem_cli.main", "serve", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            serving_at, champion_at = _until_serving(f"127.0.0.1:{port}", version, timeout)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    text = log.read_text()
    own = re.search(r"started in (.*)", text)
    cpu = re.search(r"CPU ([0-9.]+) s", own.group(1)) if own else None
    return {
        "serving_s": round(serving_at - started, 3),
        "serving_with_champion_s": round(champion_at - started, 3),
        "server_cpu_s": float(cpu.group(1)) if cpu else None,
        "server_says": own.group(1).strip() if own else None,
        "downloaded": "downloading champion" in text,
    }


def _floor(runs: int) -> dict:
    """Seconds to spawn ``python -c 'import grpc'`` and see it exit (median of ``runs``)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import grpc"], check=True)
        times.append(time.perf_counter() - started)
    return {"command": "python -c 'import grpc'", "median_s": round(statistics.median(times), 3), "runs": runs}


def _summary(starts: list[dict]) -> dict:
    """Medians of a list of starts, and the starts themselves."""

    def median(key: str) -> float | None:
        values = [s[key] for s in starts if s[key] is not None]
        return round(statistics.median(values), 3) if values else None

    return {
        "median_serving_with_champion_s": median("serving_with_champion_s"),
        "median_server_cpu_s": median("server_cpu_s"),
        "starts": starts,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cold", type=int, default=3, help="starts with the model cache emptied first")
    ap.add_argument("--warm", type=int, default=3, help="starts with the cache filled (after the cold ones)")
    ap.add_argument("--estimator", default="hist_gb")
    ap.add_argument("--feature-set", default="regime_v1")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds a start may take before the bench gives up")
    args = ap.parse_args()

    from mem_core.questdb.local import free_port

    tmp = Path(tempfile.mkdtemp(prefix="mem-bench-startup-"))
    try:
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        version, _ = common._train_champion(uri, False, args.estimator, args.feature_set)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MEM_SERVING", "MEM_MEMORY", "MEM_QUESTDB"))}
        env.update(
            MLFLOW_TRACKING_URI=uri,
            MEM_HOME=str(tmp),
            PYTHONUNBUFFERED="1",
            MEM_QUESTDB_PG_PORT=str(free_port()),
            MEM_SERVING_CANDLE_SINK="off",
        )
        load_before = [round(x, 2) for x in os.getloadavg()]
        floor = _floor(5)
        cold = []
        for i in range(max(1, args.cold)):
            shutil.rmtree(tmp / ".mem" / "cache", ignore_errors=True)
            cold.append(_start(env, free_port(), version, tmp / f"serve-cold{i}.log", args.timeout))
        warm = [_start(env, free_port(), version, tmp / f"serve-warm{i}.log", args.timeout) for i in range(args.warm)]
        report = {
            "benchmark": "startup",
            "model": {"version": version, "estimator": args.estimator, "feature_set": args.feature_set},
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "floor": floor,
            "cold": _summary(cold),
            "warm": _summary(warm) if warm else None,
            "target_s": 5.0,
        }
        cold_s = report["cold"]["median_serving_with_champion_s"]
        warm_s = report["warm"]["median_serving_with_champion_s"] if warm else None
        report["meets"] = {"warm": warm_s is not None and warm_s <= 5.0, "cold": cold_s <= 5.0}
        print(json.dumps(report, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
