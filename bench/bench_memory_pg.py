"""Decisions/s and latency of ``mem serve`` replicas sharing one memory store: 1 and 2 replicas on
PostgreSQL, against 1 and 2 on SQLite (same machine). Prints one JSON object.

Set-up, all in a temporary folder: a throwaway PostgreSQL cluster (``mem_testing/pg_cluster.py``; fsync
and full-page writes ON, as deployed: every acknowledged decision is a commit flushed to disk),
or a SQLite file; ``replicas`` processes ``mem serve --memory-db <store>`` on their own ports, an
empty MLflow registry (no champion: the ML part is the client's ``ml_prediction``, so what is
measured is the server's memory path: combine, decision record, group commit, the store).

Per configuration: a sequential phase (one client process, ``--calls`` EnhanceSignal calls, p50 /
p99) and a concurrent phase (``--clients`` client processes spread round-robin over the replicas
for ``--seconds``: decisions/s, p50/p99). Client processes run on the same 2 cores as the servers
and PostgreSQL; figures are for this machine, shared with other jobs.

    .venv/bin/python bench/bench_memory_pg.py [--calls 2000] [--clients 4] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mem_testing.serve_process import start_serve, stop  # noqa: E402


def _client(address: str, symbol: str, calls: int | None, seconds: float | None, start_at: float, out) -> None:
    import grpc

    from mem_serving.api import MemServiceStub, pb

    channel = grpc.insecure_channel(address)
    stub = MemServiceStub(channel)
    ml = pb.MlPrediction(confidence=0.7, direction=pb.DIRECTION_BULLISH, model_version="bench")

    def req(i: int) -> object:
        return pb.EnhanceSignalRequest(
            symbol=f"{symbol}{i % 50}",
            action=pb.ACTION_BUY if i % 2 else pb.ACTION_SELL,
            base_confidence=0.7,
            price=100.0 + i % 7,
            strategy="bench",
            ml_prediction=ml,
        )

    for i in range(50):  # warm-up (not measured)
        stub.EnhanceSignal(req(i), timeout=10)
    time.sleep(max(0.0, start_at - time.time()))
    latencies: list[float] = []
    errors = 0
    end = time.perf_counter() + seconds if seconds else None
    i = 50
    while True:
        t = time.perf_counter()
        try:
            stub.EnhanceSignal(req(i), timeout=10)
        except grpc.RpcError:
            errors += 1
        latencies.append(time.perf_counter() - t)
        i += 1
        if calls is not None and i - 50 >= calls:
            break
        if end is not None and time.perf_counter() >= end:
            break
    channel.close()
    out.put({"latencies": latencies, "errors": errors})


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))] * 1000.0, 3) if s else float("nan")


def _serve(store: str, tmp: Path, n: int) -> list[tuple[subprocess.Popen, str]]:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
        "MEM_HOME": str(tmp),
        "PYTHONUNBUFFERED": "1",
        "MEM_SERVING_CANDLE_SINK": "off",
    }
    env.pop("MEM_SERVING_TOKEN", None)
    out = []
    for _ in range(n):
        proc, info = start_serve(store, env=env, model_poll=30)
        out.append((proc, info["grpc"]))
    return out


def _phase(addresses: list[str], clients: int, calls: int | None, seconds: float | None, tag: str) -> dict:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 8.0  # every client warmed up and waiting
    procs = [
        ctx.Process(target=_client, args=(addresses[k % len(addresses)], f"{tag}{k}_", calls, seconds, start_at, out))
        for k in range(clients)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(60)
    lat = [x for r in results for x in r["latencies"]]
    wall = max(sum(r["latencies"]) for r in results)
    return {
        "clients": clients,
        "decisions": len(lat),
        "errors": sum(r["errors"] for r in results),
        "decisions_per_s": round(len(lat) / wall, 1) if wall else None,
        "p50_ms": _pct(lat, 0.50),
        "p99_ms": _pct(lat, 0.99),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000, help="sequential EnhanceSignal calls measured")
    ap.add_argument("--clients", type=int, default=4, help="concurrent client processes")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the concurrent phase")
    ap.add_argument("--configs", default="sqlite:1,sqlite:2,postgresql:1,postgresql:2")
    args = ap.parse_args()

    from mem_memory import MemoryStore
    from mem_testing.pg_cluster import PgCluster

    cluster = PgCluster.start(durable=True)
    report: dict = {
        "machine": {"cpus": os.cpu_count(), "loadavg_before": os.getloadavg()},
        "postgresql": {"fsync": "on", "synchronous_commit": "on", "server": "local, loopback TCP"},
        "runs": [],
    }
    try:
        for spec in args.configs.split(","):
            backend, n = spec.split(":")
            with tempfile.TemporaryDirectory(prefix="mem-bench-pg-") as folder:
                tmp = Path(folder)
                store = cluster.create_db("bench") if backend == "postgresql" else str(tmp / "memory" / "memory.db")
                servers = _serve(store, tmp, int(n))
                try:
                    addresses = [a for _, a in servers]
                    seq = _phase(addresses[:1], 1, args.calls, None, "S")
                    conc = _phase(addresses, args.clients, None, args.seconds, "C")
                finally:
                    for proc, _ in servers:
                        stop(proc)
                check = MemoryStore.open(store)
                try:
                    ids = [e.event_id for e in check.iter_events()]
                    consecutive = ids == list(range(1, len(ids) + 1))
                    decisions = check.counts()["decisions"]
                finally:
                    check.close()
                report["runs"].append(
                    {
                        "store": backend,
                        "replicas": int(n),
                        "sequential": seq,
                        "concurrent": conc,
                        "stored_decisions": decisions,
                        "event_ids_consecutive": consecutive,
                    }
                )
                print(json.dumps(report["runs"][-1]), file=sys.stderr, flush=True)
    finally:
        cluster.stop()
    report["machine"]["loadavg_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
