"""Memory benchmark: hot-path retrieval with 1,000,000 stored decisions, and append throughput.

    .venv/bin/python bench/bench_memory.py [--decisions 1000000] [--key] [--db PATH]

Prints one JSON object. Retrieval = ``engine.recent_decisions(symbol, 50)`` + ``engine.similar(
action, features)`` through the real query API on the in-process index (DESIGN §8 target: p99 <=
0.5 ms). History is bulk-loaded with ``MemoryStore.bulk_append`` (executemany, one transaction
per chunk) because appending 1M decisions one durable transaction at a time would take an hour;
append throughput is then measured separately through ``engine.enhance`` /
``engine.record_outcome`` from one thread (each call one durable, fsync'ed commit) and through
``engine.enhance`` from several threads at once (group commit: the calls queued while a commit
is in progress share the next transaction and its one fsync; each returns once its own record is
durable).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mem_memory import MemoryEngine, MemoryStore, Outcome, SignalRequest  # noqa: E402
from mem_testing import records  # noqa: E402

FEATURES = (
    "sma5",
    "sma20",
    "sma50",
    "rsi14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_position",
    "volume_ratio",
    "hl_range",
    "close_position",
    "oc_range",
)
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _features(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=(n, len(FEATURES)))
    x[:, 3] = rng.uniform(0, 100, n)  # rsi14
    x[:, 9] = np.abs(x[:, 9]) * 0.005  # hl_range
    x[:, 1] *= 0.005
    return x


def load(store: MemoryStore, n: int, symbols: list[str], closed_fraction: float, chunk: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    done = 0
    while done < n:
        m = min(chunk, n - done)
        feats = _features(rng, m)
        acts = rng.random(m) < 0.5
        wins = rng.random(m) < 0.5
        closed = rng.random(m) < closed_fraction
        decisions, outcomes = [], []
        for j in range(m):
            i = done + j
            action = "BUY" if acts[j] else "SELL"
            t = T0 + timedelta(seconds=30 * i)
            d = records.decision(
                i,
                decision_id=f"b{i:09d}",
                time=t,
                symbol=symbols[i % len(symbols)],
                action=action,
                price=100.0 + (i % 1000) / 10,
                reasoning="bulk-loaded history",
                features=dict(zip(FEATURES, feats[j].tolist())),
            )
            decisions.append(d)
            if closed[j]:
                pnl = 0.01 if wins[j] else -0.01
                outcomes.append(
                    Outcome(
                        d.decision_id,
                        d.price,
                        d.price * (1 + pnl),
                        0.02,
                        pnl * 200,
                        pnl,
                        "tp",
                        t + timedelta(minutes=5),
                    )
                )
        store.bulk_append(decisions, outcomes)
        done += m
    return {"decisions": n, "seconds": round(time.perf_counter() - started, 1)}


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs), q))


def _async_appends(
    store: MemoryStore, queries: list, symbols: list[str], callers_list: list[int], n: int
) -> list[dict]:
    """``enhance_async`` through the writer process (what the gRPC server's event loop calls),
    with 1 and 16 concurrent callers on one event loop."""
    import asyncio

    engine = MemoryEngine(store, writer_process=True)
    engine.start_writer()
    results = []
    perf = time.perf_counter
    for callers in callers_list:
        per = max(1, n // callers)
        before = engine.group_stats
        lat: list[float] = []

        async def caller(k: int) -> None:
            for i in range(per):
                f = queries[(k * per + i) % len(queries)][2]
                req = SignalRequest(
                    symbols[(k + i) % len(symbols)],
                    "BUY",
                    0.7,
                    100.0,
                    T0 + timedelta(days=600 + k, seconds=i),
                    "momentum",
                    0.75,
                    "bullish",
                    "1",
                    f,
                )
                t = perf()
                await engine.enhance_async(req)
                lat.append(perf() - t)

        async def run() -> float:
            t0 = perf()
            await asyncio.gather(*(caller(k) for k in range(callers)))
            return perf() - t0

        wall = asyncio.run(run())
        after = engine.group_stats
        commits = after["commits"] - before["commits"]
        results.append(
            {
                "callers": callers,
                "decisions": len(lat),
                "enhance_per_s": round(len(lat) / wall, 1),
                "enhance_p50_ms": round(pct(lat, 50) * 1000, 3),
                "enhance_p99_ms": round(pct(lat, 99) * 1000, 3),
                "commits": commits,
                "decisions_per_commit": round(len(lat) / commits, 2) if commits else None,
            }
        )
        engine.close()
        engine = MemoryEngine(store, writer_process=True)  # a new loop next round: a new engine binds to it
        engine.start_writer()
    engine.close()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decisions", type=int, default=1_000_000)
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument("--closed-fraction", type=float, default=0.6)
    ap.add_argument("--queries", type=int, default=20_000)
    ap.add_argument("--appends", type=int, default=300)
    ap.add_argument("--threads", type=int, nargs="*", default=[4, 8], help="concurrent enhance() callers")
    ap.add_argument("--concurrent-appends", type=int, default=2000, help="decisions per concurrent run")
    ap.add_argument(
        "--async-callers",
        type=int,
        nargs="*",
        default=[1, 16],
        help="concurrent enhance_async() callers (writer process)",
    )
    ap.add_argument("--chunk", type=int, default=50_000)
    ap.add_argument("--key", action="store_true", help="encrypt the store (AES-GCM)")
    ap.add_argument("--db", type=Path, default=None, help="reuse/keep a store here (default: a temp dir, deleted)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    tmp = None
    if args.db is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-memory-")
        args.db = Path(tmp.name) / "memory.db"
    key = os.urandom(32) if args.key else None
    symbols = [f"SYM{i:03d}" for i in range(args.symbols)]
    out: dict = {
        "benchmark": "memory",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "encrypted": bool(key),
    }

    store = MemoryStore.open(args.db, key=key)
    have = store.counts()["decisions"]
    if have < args.decisions:
        out["bulk_load"] = load(store, args.decisions - have, symbols, args.closed_fraction, args.chunk, args.seed)
    out["stored"] = store.counts()
    out["db_mb"] = round(args.db.stat().st_size / 1e6, 1)
    store.close()

    started = time.perf_counter()
    store = MemoryStore.open(args.db, key=key)
    engine = MemoryEngine(store)
    out["open_and_index_seconds"] = round(time.perf_counter() - started, 2)

    rng = np.random.default_rng(args.seed + 1)
    feats = _features(rng, args.queries)
    qsyms = rng.integers(0, len(symbols), args.queries)
    actions = np.where(rng.random(args.queries) < 0.5, "BUY", "SELL")
    queries = [(symbols[s], a, dict(zip(FEATURES, f.tolist()))) for s, a, f in zip(qsyms, actions, feats)]
    for sym, act, f in queries[:500]:  # warm-up
        engine.recent_decisions(sym, 50)
        engine.similar(act, f)
    lat = []
    found = 0
    perf = time.perf_counter
    for sym, act, f in queries:
        t = perf()
        recent = engine.recent_decisions(sym, 50)
        sim = engine.similar(act, f)
        lat.append(perf() - t)
        found += len(recent) == 50 and sim.n > 0
    us = [x * 1e6 for x in lat]
    out["retrieval_last50_plus_similar"] = {
        "queries": len(us),
        "p50_ms": round(pct(us, 50) / 1000, 4),
        "p99_ms": round(pct(us, 99) / 1000, 4),
        "mean_ms": round(statistics.fmean(us) / 1000, 4),
        "max_ms": round(max(us) / 1000, 3),
        "target_p99_ms": 0.5,
        "answered": found,
        "similar_window_per_action": engine.config.closed_window,
    }

    times_d, times_o = [], []
    for i in range(args.appends):
        f = queries[i % len(queries)][2]
        req = SignalRequest(
            symbols[i % len(symbols)],
            "BUY",
            0.7,
            100.0,
            T0 + timedelta(days=400, seconds=i),
            "momentum",
            0.75,
            "bullish",
            "1",
            f,
        )
        t = perf()
        d = engine.enhance(req)
        times_d.append(perf() - t)
        t = perf()
        engine.record_outcome(
            Outcome(d.decision_id, 100.0, 101.0, 0.02, 2.0, 0.01, "tp", req.time + timedelta(minutes=5))
        )
        times_o.append(perf() - t)
    out["append"] = {
        "decisions": args.appends,
        "enhance_per_s": round(len(times_d) / sum(times_d), 1),
        "enhance_p50_ms": round(pct(times_d, 50) * 1000, 3),
        "enhance_p99_ms": round(pct(times_d, 99) * 1000, 3),
        "record_outcome_per_s": round(len(times_o) / sum(times_o), 1),
        "record_outcome_p50_ms": round(pct(times_o, 50) * 1000, 3),
        "durability": "synchronous=FULL: every call returns after the fsync'ed commit holding its records",
    }
    out["append_concurrent"] = []
    for threads in args.threads:
        per = max(1, args.concurrent_appends // threads)
        before = engine.group_stats
        lat_c: list[list[float]] = [[] for _ in range(threads)]
        gate = threading.Barrier(threads + 1)

        def run(k: int) -> None:
            mine = lat_c[k]
            gate.wait()
            for i in range(per):
                f = queries[(k * per + i) % len(queries)][2]
                req = SignalRequest(
                    symbols[(k + i) % len(symbols)],
                    "SELL",
                    0.7,
                    100.0,
                    T0 + timedelta(days=500 + k, seconds=i),
                    "momentum",
                    0.75,
                    "bearish",
                    "1",
                    f,
                )
                t = perf()
                engine.enhance(req)
                mine.append(perf() - t)

        workers = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
        for w in workers:
            w.start()
        gate.wait()
        t0 = perf()
        for w in workers:
            w.join()
        wall = perf() - t0
        after = engine.group_stats
        flat = [x for xs in lat_c for x in xs]
        commits = after["commits"] - before["commits"]
        out["append_concurrent"].append(
            {
                "threads": threads,
                "decisions": len(flat),
                "enhance_per_s": round(len(flat) / wall, 1),
                "enhance_p50_ms": round(pct(flat, 50) * 1000, 3),
                "enhance_p99_ms": round(pct(flat, 99) * 1000, 3),
                "commits": commits,
                "decisions_per_commit": round(len(flat) / commits, 2) if commits else None,
            }
        )
    out["append_async_writer_process"] = _async_appends(
        store, queries, symbols, args.async_callers, args.concurrent_appends
    )
    ids = store.events_since(store.last_event_id() - 5000, limit=10_000)
    out["event_ids_consecutive"] = all(b.event_id == a.event_id + 1 for a, b in zip(ids, ids[1:]))
    store.close()
    out["load_average_1m"] = round(os.getloadavg()[0], 2)  # 2 shared cores: other jobs inflate the tails
    print(json.dumps(out, indent=2))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
