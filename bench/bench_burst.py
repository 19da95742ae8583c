"""The candle close as bursts of single calls: N concurrent EnhanceSignal calls (one new candle
each) against ``mem serve``, beside the same N calls against a do-nothing grpc.aio servicer of the
same RPC (the floor). Prints one JSON object.

Set-up as in bench_sustained.py: a champion (default ``hist_gb`` over ``regime_v1``) fitted on
real BTCUSDT candles in a temporary SQLite MLflow store, ``mem serve`` run as a process with its
writer process. The floor is a process serving ``mem.v1.MemService/EnhanceSignal`` with grpc.aio
that decodes the request and answers an empty ``EnhancedSignal`` (``bench/floor_server.py``).
One client process, one grpc.aio channel per server: each round sends N calls at once (every symbol's next candle) to
the floor, then to ``mem serve``, and times first send to last answer; beside each burst, the CPU
it cost the server (``mem serve`` and its writer process; the floor's one process) and the
client (/proc, process times). Target (issue 27): the median burst within 2x of the floor's.

    .venv/bin/python bench/bench_burst.py [--symbols 1000] [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import bench_serving as common
import floor_server

from mem_testing.serve_process import children, proc_cpu, start_serve, stop

ENHANCE = "/mem.v1.MemService/EnhanceSignal"


async def _bursts(
    real: str,
    floor: str,
    rounds: list[list[bytes]],
    history: list[bytes],
    pids: dict[str, list[int]],
    metrics: str,
) -> dict[str, list[float]]:
    """Each round: the burst to the floor, then to mem serve; per burst its wall time, the CPU
    of the server's processes (``pids``: ``real`` mem serve and its writer, ``floor`` the
    do-nothing servicer) and of this client process; and the batches mem's handlers ran for each
    burst (the count of ``mem_enhancement_seconds``, observed once per batch, from ``metrics``)."""
    import grpc

    async with grpc.aio.insecure_channel(real) as rch, grpc.aio.insecure_channel(floor) as fch:
        r_call = rch.unary_unary(ENHANCE)
        f_call = fch.unary_unary(ENHANCE)
        for k in range(0, len(history), 50):  # every symbol's history, 50 calls at a time
            await asyncio.gather(*(r_call(h, timeout=120) for h in history[k : k + 50]))
        seen = common._server_side(metrics)["enhancement"]["count"]
        out: dict[str, list[float]] = {
            f"{key}_{what}": [] for key in ("floor", "real") for what in ("ms", "server_cpu_ms", "client_cpu_ms")
        }
        out["real_batches"] = []
        out["floor_failed"], out["real_failed"] = [], []
        codes: dict[str, collections.Counter[str]] = {"floor": collections.Counter(), "real": collections.Counter()}
        for burst in rounds:
            for key, call in (("floor", f_call), ("real", r_call)):
                server0, client0, t = sum(proc_cpu(p) for p in pids[key]), time.process_time(), time.perf_counter()
                answers = await asyncio.gather(*(call(b, timeout=120) for b in burst), return_exceptions=True)
                out[f"{key}_ms"].append(round((time.perf_counter() - t) * 1000, 1))
                failed = [a for a in answers if isinstance(a, BaseException)]
                out[f"{key}_failed"].append(len(failed))
                for a in failed:  # a status (RESOURCE_EXHAUSTED: more calls in flight than the limit) or a bug
                    codes[key][str(a.code().name) if isinstance(a, grpc.aio.AioRpcError) else repr(a)] += 1
                out[f"{key}_client_cpu_ms"].append(round((time.process_time() - client0) * 1000, 1))
                await asyncio.sleep(0.05)  # the servers' last answers' bookkeeping, before their CPU is read
                out[f"{key}_server_cpu_ms"].append(round((sum(proc_cpu(p) for p in pids[key]) - server0) * 1000, 1))
            batches = common._server_side(metrics)["enhancement"]["count"]
            out["real_batches"].append(batches - seen)
            seen = batches
        return out | {"failed_codes": {k: dict(v) for k, v in codes.items()}}  # type: ignore[dict-item]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="a smaller champion (faster set-up)")
    ap.add_argument("--estimator", default="hist_gb")
    ap.add_argument("--feature-set", default="regime_v1")
    args = ap.parse_args()

    from mem_core.features import SERVING_HISTORY
    from mem_core.questdb.local import free_port
    from mem_serving.api import pb

    tmp = Path(tempfile.mkdtemp(prefix="mem-bench-burst-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    version, fit_s = common._train_champion(uri, args.quick, args.estimator, args.feature_set)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEM_SERVING", "MEM_MEMORY", "MEM_QUESTDB"))}
    env.update(MLFLOW_TRACKING_URI=uri, MEM_HOME=str(tmp), PYTHONUNBUFFERED="1", MEM_QUESTDB_PG_PORT=str(free_port()))
    env["MEM_SERVING_CANDLE_SINK"] = "off"
    rows = common._rows(0, SERVING_HISTORY + args.rounds)
    symbols = [f"B{j:04d}USDT" for j in range(args.symbols)]
    past = [common._candle(pb, r) for r in rows[:SERVING_HISTORY]]

    def enhance(symbol: str, candles: list[object], price: float) -> bytes:
        return pb.EnhanceSignalRequest(
            symbol=symbol, action=pb.ACTION_BUY, base_confidence=0.65, price=price, strategy="burst", candles=candles
        ).SerializeToString()

    history = [enhance(s, past, float(rows[SERVING_HISTORY - 1][4])) for s in symbols]
    rounds = [
        [
            enhance(s, [common._candle(pb, rows[SERVING_HISTORY + k])], float(rows[SERVING_HISTORY + k][4]))
            for s in symbols
        ]
        for k in range(args.rounds)
    ]
    server, info = start_serve(tmp / "memory.db", env=env, tracking_uri=uri, stderr=open(tmp / "serve.log", "w"))  # noqa: SIM115
    floor, floor_address = floor_server.start(env)
    try:
        load_before = [round(x, 2) for x in os.getloadavg()]
        pids = {"real": [server.pid, *children(server.pid)], "floor": [floor.pid]}
        # the set-up's objects (the training data, MLflow's modules) out of this client's cyclic GC:
        # a full collection of them in the middle of a burst added ~250 ms to that burst's figure
        gc.collect()
        gc.freeze()
        got = asyncio.run(_bursts(info["grpc"], floor_address, rounds, history, pids, info["metrics"]))
        load_after = [round(x, 2) for x in os.getloadavg()]
    finally:
        floor_server.finish(floor)
        stop(server)
        shutil.rmtree(tmp, ignore_errors=True)
    real, flo = statistics.median(got["real_ms"]), statistics.median(got["floor_ms"])
    med = {k: statistics.median(v) for k, v in got.items() if k != "failed_codes"}
    print(
        json.dumps(
            {
                "benchmark": "burst",
                "model": {"version": version, "estimator": args.estimator, "feature_set": args.feature_set},
                "fit_s": round(fit_s, 2),
                "symbols": args.symbols,
                "rounds": args.rounds,
                "load_average_before": load_before,
                "load_average_after": load_after,
                "burst_ms_median": real,
                "floor_ms_median": flo,
                "ratio_to_floor": round(real / flo, 2),
                "burst_ms": got["real_ms"],
                "floor_ms": got["floor_ms"],
                "cpu_ms_per_burst_median": {
                    "mem_serve_and_writer": med["real_server_cpu_ms"],
                    "floor_server": med["floor_server_cpu_ms"],
                    "client_calling_mem": med["real_client_cpu_ms"],
                    "client_calling_floor": med["floor_client_cpu_ms"],
                },
                "handler_batches_per_burst_median": med["real_batches"],
                "failed_calls": {"mem": sum(got["real_failed"]), "floor": sum(got["floor_failed"])},
                "per_burst": got,
                "target_ratio": 2.0,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
