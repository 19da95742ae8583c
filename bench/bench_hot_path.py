"""EnhanceSignal's own cost on the server's event loop, without the transport. Prints one JSON object.

``mem serve``'s application (``build_app``: the champion, the memory engine with its writer
process, the handlers) runs in this process; the requests go through the servicer's steps
(parse, convert, ``Handlers.enhance`` of one item, reply) on the server's loop thread, but not through
gRPC. Reported: that thread's CPU per call (``time.thread_time`` on the loop) in three modes:

- ``concurrent``: 8 calls in flight (decisions share commits of the writer process);
- ``sequential``: one call at a time (every decision its own commit);
- ``paced``: one call every ``--gap-ms`` (as under a paced load: caches cool between calls).

Set-up as in ``bench_serving.py``: a champion (default ``hist_gb`` over ``regime_v1``) fitted on
real BTCUSDT candles in a temporary SQLite MLflow store, 16 symbols seeded with their history,
then each call brings one new candle; the process runs as ``mem serve`` does (its GIL switch
interval, ``settle_heap`` after the seeding). gRPC's own cost per call is the difference to the
sustained bench's loop figure (docs/serving.md, "Performance").

    .venv/bin/python bench/bench_hot_path.py [--calls 3000] [--gap-ms 2]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import bench_serving as common

SYMBOLS = 16


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=3000, help="measured calls per mode")
    ap.add_argument("--gap-ms", type=float, default=2.0, help="pause between calls in the paced mode")
    ap.add_argument("--estimator", default="hist_gb")
    ap.add_argument("--feature-set", default="regime_v1")
    ap.add_argument("--quick", action="store_true", help="a smaller champion (faster set-up)")
    args = ap.parse_args()

    from mem_core.features import SERVING_HISTORY
    from mem_serving import converters as conv
    from mem_serving.api import pb
    from mem_serving.handlers import Budget
    from mem_serving.server import GIL_SWITCH_INTERVAL_S, build_app, settle_heap
    from mem_serving.settings import ServingSettings

    tmp = Path(tempfile.mkdtemp(prefix="mem-bench-hot-"))
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
        warmup = 300
        per_symbol = -(-(warmup + 3 * args.calls) // SYMBOLS) + 1
        rows = common._rows(0, SERVING_HISTORY + per_symbol)
        symbols = [f"S{j}" for j in range(SYMBOLS)]

        async def inline(fn: Callable[[], object]) -> object:
            return fn()

        for s in symbols:  # each symbol's history, so every call brings just its new candle
            req = pb.PredictReversalRequest(symbol=s, candles=[common._candle(pb, r) for r in rows[:SERVING_HISTORY]])
            asyncio.run_coroutine_threadsafe(
                h.predict(conv.predict_query(req, mx), Budget(None), inline), app.loop
            ).result()
        settle_heap()  # as ``mem serve`` does after its start (a full GC otherwise lands in one mode or another)
        by_symbol = [common._enhance_bytes(pb, s, rows[SERVING_HISTORY:]) for s in symbols]
        payloads = iter([by_symbol[i % SYMBOLS][i // SYMBOLS] for i in range(SYMBOLS * (per_symbol - 1))])

        async def one() -> None:
            q = conv.enhance_query(pb.EnhanceSignalRequest.FromString(next(payloads)), mx)
            (result,) = await h.enhance([q], Budget(None), inline)
            assert not isinstance(result, Exception), result
            pb.EnhancedSignal(**conv.signal_fields(result)).SerializeToString()

        async def concurrent(n: int) -> None:
            sem = asyncio.Semaphore(8)

            async def limited() -> None:
                async with sem:
                    await one()

            await asyncio.gather(*(limited() for _ in range(n)))

        async def sequential(n: int) -> None:
            for _ in range(n):
                await one()

        async def paced(n: int) -> None:
            for _ in range(n):
                await one()
                await asyncio.sleep(args.gap_ms / 1000.0)

        def measure(mode: Callable[[int], Awaitable[None]], n: int) -> dict[str, float]:
            async def timed() -> tuple[float, float]:
                cpu, wall = time.thread_time(), time.perf_counter()
                await mode(n)
                return time.thread_time() - cpu, time.perf_counter() - wall

            cpu, wall = asyncio.run_coroutine_threadsafe(timed(), app.loop).result()
            return {"loop_cpu_ms_per_call": round(cpu / n * 1000, 4), "wall_ms_per_call": round(wall / n * 1000, 4)}

        measure(concurrent, warmup)
        report = {
            "benchmark": "hot_path",
            "model": {"version": version, "estimator": args.estimator, "feature_set": args.feature_set, "fit_s": fit_s},
            "calls_per_mode": args.calls,
            "concurrent_8": measure(concurrent, args.calls),
            "sequential": measure(sequential, args.calls),
            f"paced_every_{args.gap_ms:g}_ms": measure(paced, args.calls),
        }
    finally:
        app.stop(1)
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
