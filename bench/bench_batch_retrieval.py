"""The memory engine's decisions for one batch (``MemoryEngine._prepare``: retrieval, ``decide_many``,
encoding for the store), by how many closed trades the similarity window holds, and their apply
to the index once committed. Prints one JSON object.

A memory store in a temporary directory; its BUY window is filled with ``--closed`` random trades
over 14 features (each its own run), then ``--items`` BUY requests with random snapshots of the
same features are prepared ``--repeat`` times, and each time the decisions are applied to the
index as after their commit. Reported per window size: the CPU of one preparation and of one
apply (best and median, ``time.thread_time``). Nothing is committed: the bench reaches into the
engine (its index's BUY ring, ``_prepare``, ``_after_commit`` with made-up event ids) to time
the engine's own work alone.

    .venv/bin/python bench/bench_batch_retrieval.py [--items 1000] [--closed 0 2000 10000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from mem_memory.engine import MemoryEngine
from mem_memory.store import MemoryStore
from mem_memory.types import SignalRequest

FEATURES = [f"f{i}" for i in range(14)]


def run(closed: int, items: int, repeat: int) -> dict[str, float]:
    """CPU ms of one ``_prepare`` of ``items`` requests with ``closed`` trades in the BUY window."""
    rnd = random.Random(closed)
    with tempfile.TemporaryDirectory(prefix="mem-bench-retrieval-") as tmp:
        store = MemoryStore.open(Path(tmp) / "memory.db")
        try:
            engine = MemoryEngine(store)
            ring = engine._wm.rings["BUY"]
            for i in range(closed):
                ring.add(f"d{i}", {k: rnd.gauss(0, 1) for k in FEATURES}, rnd.random() < 0.5)
            now = datetime.now(UTC)
            requests = [
                SignalRequest(
                    symbol=f"C{j:04d}USDT",
                    action="BUY",
                    base_confidence=0.65,
                    price=100.0 + j,
                    time=now,
                    strategy="bench",
                    ml_confidence=rnd.random(),
                    ml_direction="bullish",
                    features={k: rnd.gauss(0, 1) for k in FEATURES},
                )
                for j in range(items)
            ]
            fingerprints = [""] * items
            cpu, apply = [], []
            for _ in range(repeat):
                start = time.thread_time()
                made = engine._prepare(requests, fingerprints)
                cpu.append((time.thread_time() - start) * 1000)
                before = engine._last_seen
                written = [(engine._index(d), before + 1 + i) for i, (d, _) in enumerate(made)]
                start = time.thread_time()
                engine._after_commit(before, before + len(made), written)
                apply.append((time.thread_time() - start) * 1000)
            engine.close()
        finally:
            store.close()
    return {
        "closed": closed,
        "cpu_ms_best": round(min(cpu), 2),
        "cpu_ms_median": round(statistics.median(cpu), 2),
        "apply_cpu_ms_best": round(min(apply), 2),
        "apply_cpu_ms_median": round(statistics.median(apply), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--closed", type=int, nargs="+", default=[0, 2000, 10000])
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    load = [round(x, 2) for x in os.getloadavg()]
    runs = [run(n, args.items, args.repeat) for n in args.closed]
    report = {"benchmark": "batch_retrieval", "items": args.items, "runs": runs, "load_average_before": load}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
