"""EnhanceSignals at the candle close, in process: the server's own time for one batch. Prints one JSON object.

``mem serve``'s application (``build_app``: the champion, the memory engine with its writer
process, the handlers) runs in this process. ``--symbols`` symbols are seeded with their history,
then each round every symbol brings one new candle in ONE EnhanceSignals request, which goes
through the servicer's steps (parse, validate, ``Handlers.enhance``: one feature pass, one model
call, one commit; build and serialize the reply) on the server's loop thread, without gRPC's
transport. Reported: the median and worst wall time per batch, and the loop thread's CPU per item
and per batch by step (parse and validate, the handlers, the reply). The process runs as ``mem
serve`` does (its GIL switch interval; ``settle_heap`` after the symbols are seeded).

Beside it, in the same run, the floor of the same batch: in process, a do-nothing servicer
(parse the request bytes, build one minimal ``EnhancedSignal`` per item with its fields echoed,
serialize); over gRPC, that servicer as a grpc.aio process, called by a client process with the
same next-candle batches as ``mem serve``'s own port (``over_grpc``: median wall per batch, first
send to answer). ``ratio_to_floor`` is mem's figure over the floor's.

``--stored-closes N`` first runs N candle closes through the same path, unmeasured: the memory
store then holds N x symbols decisions more, as a server's does after N closes (e.g. 150: 12.5 h).

    .venv/bin/python bench/bench_candle_close.py [--symbols 1000] [--rounds 5] [--stored-closes 0] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import bench_serving as common

ENHANCE_MANY = "/mem.v1.MemService/EnhanceSignals"


def floor_reply(data: bytes) -> bytes:
    """The do-nothing servicer of EnhanceSignals: parse, one minimal signal per item (symbol,
    action and confidence echoed), serialize."""
    from mem_serving.api import pb

    req = pb.EnhanceSignalsRequest.FromString(data)
    return pb.EnhanceSignalsResponse(
        results=[
            pb.EnhanceSignalResult(
                signal=pb.EnhancedSignal(
                    symbol=r.symbol, action=r.action, confidence=r.base_confidence, base_confidence=r.base_confidence
                )
            )
            for r in req.requests
        ]
    ).SerializeToString()


async def _floor_server() -> None:
    """``floor_reply`` as a grpc.aio servicer: prints its port, serves until stdin closes."""
    import grpc

    async def enhance_many(request: bytes, context: object) -> bytes:
        return floor_reply(request)

    from floor_server import serve  # this script's folder is on sys.path

    await serve("EnhanceSignals", grpc.unary_unary_rpc_method_handler(enhance_many))  # bytes in, bytes out


async def _client(job: Path) -> None:
    """Each batch of ``job`` to the floor, then to mem; prints the wall ms of each as JSON."""
    import grpc

    spec = pickle.loads(job.read_bytes())
    out: dict[str, list[float]] = {"floor_ms": [], "mem_ms": []}
    async with grpc.aio.insecure_channel(spec["floor"]) as fch, grpc.aio.insecure_channel(spec["mem"]) as mch:
        calls = {"floor_ms": fch.unary_unary(ENHANCE_MANY), "mem_ms": mch.unary_unary(ENHANCE_MANY)}
        await calls["floor_ms"](spec["batches"][0], timeout=60)  # the connection, warm
        for data in spec["batches"]:
            for key, call in calls.items():
                t = time.perf_counter()
                await call(data, timeout=60)
                out[key].append(round((time.perf_counter() - t) * 1000, 2))
    print(json.dumps(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--stored-closes", type=int, default=0, help="unmeasured candle closes first")
    ap.add_argument("--estimator", default="hist_gb")
    ap.add_argument("--feature-set", default="regime_v1")
    ap.add_argument("--quick", action="store_true", help="a smaller champion (faster set-up)")
    ap.add_argument("--floor-server", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--client", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.floor_server:
        asyncio.run(_floor_server())
        return
    if args.client:
        asyncio.run(_client(args.client))
        return

    from mem_core.features import SERVING_HISTORY
    from mem_serving import converters as conv
    from mem_serving.api import pb
    from mem_serving.handlers import Budget
    from mem_serving.server import GIL_SWITCH_INTERVAL_S, build_app, settle_heap
    from mem_serving.settings import ServingSettings

    tmp = Path(tempfile.mkdtemp(prefix="mem-bench-close-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    version, fit_s = common._train_champion(uri, args.quick, args.estimator, args.feature_set)
    settings = ServingSettings.from_env(
        {"MEM_HOME": str(tmp), "MLFLOW_TRACKING_URI": uri, "MEM_SERVING_CANDLE_SINK": "off"}
    )
    settings = dataclasses.replace(settings, port=0, metrics_port=-1, memory_db=tmp / "memory.db", tracking_uri=uri)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)  # as ``mem serve`` runs
    app = build_app(settings, start_metrics=False)
    try:
        h, mx = app.handlers, settings.max_candles
        rows = common._rows(0, SERVING_HISTORY + args.stored_closes + 2 * args.rounds + 1)
        symbols = [f"C{j:04d}USDT" for j in range(args.symbols)]

        async def inline(fn: Callable[[], object]) -> object:
            return fn()

        history = [common._candle(pb, r) for r in rows[:SERVING_HISTORY]]
        for s in symbols:  # each symbol's history (the same candles: the cost does not depend on them)
            query = conv.predict_query(pb.PredictReversalRequest(symbol=s, candles=history), mx)
            asyncio.run_coroutine_threadsafe(h.predict(query, Budget(None), inline), app.loop).result()

        settle_heap()  # as ``mem serve`` does after its start (the seeded histories included here)

        def batch(k: int) -> bytes:
            row = rows[SERVING_HISTORY + k]
            items = [
                pb.EnhanceSignalRequest(
                    symbol=s,
                    action=pb.ACTION_BUY,
                    base_confidence=0.65,
                    price=float(row[4]),
                    strategy="bench",
                    candles=[common._candle(pb, row)],
                )
                for s in symbols
            ]
            return pb.EnhanceSignalsRequest(requests=items).SerializeToString()

        async def one(data: bytes) -> tuple[float, list[float]]:
            """Wall seconds, and the loop's CPU seconds for: parse and validate, the handlers, the reply."""
            cpu, wall = [time.thread_time()], time.perf_counter()
            items = conv.enhance_queries(pb.EnhanceSignalsRequest.FromString(data), mx, conv.MAX_BATCH_ITEMS)
            queries = [q for q in items if not isinstance(q, Exception)]
            cpu.append(time.thread_time())
            made = conv.ReplyAhead()
            answers = await h.enhance(queries, Budget(None), inline, made.ahead)
            cpu.append(time.thread_time())
            reply = made.bytes_of(answers)
            cpu.append(time.thread_time())
            ok = sum(not isinstance(a, Exception) for a in answers)
            assert reply and ok == len(symbols), [a for a in answers if isinstance(a, Exception)][:3]
            return time.perf_counter() - wall, [b - a for a, b in zip(cpu, cpu[1:])]

        for k in range(args.stored_closes):
            asyncio.run_coroutine_threadsafe(one(batch(k)), app.loop).result()
        load_before = [round(x, 2) for x in os.getloadavg()]
        walls, cpus, floor_walls, floor_cpus, steps = [], [], [], [], []
        for k in range(args.stored_closes, args.stored_closes + args.rounds):
            data = batch(k)
            wall, step = asyncio.run_coroutine_threadsafe(one(data), app.loop).result()
            walls.append(wall * 1000)
            cpus.append(sum(step) * 1000 / len(symbols))
            steps.append(step)
            c0, w0 = time.thread_time(), time.perf_counter()
            floor_reply(data)
            floor_walls.append((time.perf_counter() - w0) * 1000)
            floor_cpus.append((time.thread_time() - c0) * 1000 / len(symbols))
        grpc_run = _over_grpc(
            tmp, f"127.0.0.1:{app.port}", [batch(args.stored_closes + args.rounds + k) for k in range(args.rounds)]
        )
        mem_ms, floor_ms = statistics.median(walls), statistics.median(floor_walls)
        report = {
            "benchmark": "candle_close",
            "model": {"version": version, "estimator": args.estimator, "feature_set": args.feature_set, "fit_s": fit_s},
            "symbols": args.symbols,
            "rounds": args.rounds,
            "stored_decisions_before": args.stored_closes * args.symbols,
            "batch_ms_median": round(statistics.median(walls), 2),
            "batch_ms_max": round(max(walls), 2),
            "loop_cpu_ms_per_item_median": round(statistics.median(cpus), 4),
            "loop_cpu_ms_per_batch_median": {  # the steps of the loop's CPU
                name: round(statistics.median(s[j] for s in steps) * 1000, 2)
                for j, name in enumerate(("parse_validate", "handlers", "reply"))
            },
            "group_commit": app.handlers.engine.group_stats,  # type: ignore[attr-defined]
            "floor_in_process": {
                "batch_ms_median": round(floor_ms, 2),
                "cpu_ms_per_item_median": round(statistics.median(floor_cpus), 4),
                "ratio_to_floor": round(mem_ms / floor_ms, 1),
                "cpu_ratio_to_floor": round(statistics.median(cpus) / statistics.median(floor_cpus), 1),
            },
            "over_grpc": grpc_run,
            "target_batch_ms": 50.0,
            "load_average_before": load_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        }
    finally:
        app.stop(1)
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(report, indent=2))


def _over_grpc(tmp: Path, mem: str, batches: list[bytes]) -> dict[str, float | list[float]]:
    """The batches to mem's port and to the floor's grpc.aio process, from a client process."""
    floor = subprocess.Popen(
        [sys.executable, __file__, "--floor-server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(floor.stdout.readline())  # type: ignore[union-attr]
        job = tmp / "client-job.pickle"
        job.write_bytes(pickle.dumps({"floor": f"127.0.0.1:{port}", "mem": mem, "batches": batches}))
        done = subprocess.run(
            [sys.executable, __file__, "--client", str(job)], capture_output=True, text=True, check=True, timeout=600
        )
    finally:
        floor.stdin.close()  # type: ignore[union-attr]
        floor.wait(timeout=10)
    got = json.loads(done.stdout)
    mem_ms, floor_ms = statistics.median(got["mem_ms"]), statistics.median(got["floor_ms"])
    return {
        "mem_batch_ms_median": round(mem_ms, 2),
        "floor_batch_ms_median": round(floor_ms, 2),
        "ratio_to_floor": round(mem_ms / floor_ms, 1),
        "mem_ms": got["mem_ms"],
        "floor_ms": got["floor_ms"],
    }


if __name__ == "__main__":
    main()
