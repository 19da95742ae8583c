"""EnhanceSignals at the candle close, in process: the server's own time for one batch. Prints one JSON object.

``mem serve``'s application (``build_app``: the champion, the memory engine with its writer
process, the handlers) runs in this process. ``--symbols`` symbols are seeded with their history,
then each round every symbol brings one new candle in ONE EnhanceSignals request, which goes
through the servicer's steps (parse, validate, ``Handlers.enhance``: one feature pass, one model
call, one commit; build and serialize the reply) on the server's loop thread, without gRPC's
transport. Reported: the median and worst wall time per batch, and the loop thread's CPU per item.
The transport's share is what ``../shared/tools/burst_over_grpc.py`` adds on top.

    .venv/bin/python bench/bench_candle_close.py [--symbols 1000] [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import bench_serving as common


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--estimator", default="hist_gb")
    ap.add_argument("--feature-set", default="regime_v1")
    ap.add_argument("--quick", action="store_true", help="a smaller champion (faster set-up)")
    args = ap.parse_args()

    from mem_core.features import SERVING_HISTORY
    from mem_serving import converters as conv
    from mem_serving.api import pb
    from mem_serving.handlers import Budget
    from mem_serving.server import build_app
    from mem_serving.settings import ServingSettings

    tmp = Path(tempfile.mkdtemp(prefix="mem-bench-close-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    version, fit_s = common._train_champion(uri, args.quick, args.estimator, args.feature_set)
    settings = ServingSettings.from_env(
        {"MEM_HOME": str(tmp), "MLFLOW_TRACKING_URI": uri, "MEM_SERVING_CANDLE_SINK": "off"}
    )
    settings = dataclasses.replace(settings, port=0, metrics_port=-1, memory_db=tmp / "memory.db", tracking_uri=uri)
    app = build_app(settings, start_metrics=False)
    try:
        h, mx = app.handlers, settings.max_candles
        rows = common._rows(0, SERVING_HISTORY + args.rounds + 1)
        symbols = [f"C{j:04d}USDT" for j in range(args.symbols)]

        async def inline(fn: Callable[[], object]) -> object:
            return fn()

        history = [common._candle(pb, r) for r in rows[:SERVING_HISTORY]]
        for s in symbols:  # each symbol's history (the same candles: the cost does not depend on them)
            query = conv.predict_query(pb.PredictReversalRequest(symbol=s, candles=history), mx)
            asyncio.run_coroutine_threadsafe(h.predict(query, Budget(None), inline), app.loop).result()

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

        async def one(data: bytes) -> tuple[float, float, int]:
            cpu, wall = time.thread_time(), time.perf_counter()
            items = conv.enhance_queries(pb.EnhanceSignalsRequest.FromString(data), mx, conv.MAX_BATCH_ITEMS)
            queries = [q for q in items if not isinstance(q, Exception)]
            answers = await h.enhance(queries, Budget(None), inline)
            reply = conv.enhance_results_pb(list(answers), "EnhanceSignals").SerializeToString()
            ok = sum(not isinstance(a, Exception) for a in answers)
            assert reply and ok == len(symbols), [a for a in answers if isinstance(a, Exception)][:3]
            return time.perf_counter() - wall, time.thread_time() - cpu, ok

        walls, cpus = [], []
        for k in range(args.rounds):
            wall, cpu, _ = asyncio.run_coroutine_threadsafe(one(batch(k)), app.loop).result()
            walls.append(wall * 1000)
            cpus.append(cpu * 1000 / len(symbols))
        report = {
            "benchmark": "candle_close",
            "model": {"version": version, "estimator": args.estimator, "feature_set": args.feature_set, "fit_s": fit_s},
            "symbols": args.symbols,
            "rounds": args.rounds,
            "batch_ms_median": round(statistics.median(walls), 2),
            "batch_ms_max": round(max(walls), 2),
            "loop_cpu_ms_per_item_median": round(statistics.median(cpus), 4),
            "group_commit": app.handlers.engine.group_stats,  # type: ignore[attr-defined]
        }
    finally:
        app.stop(1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
