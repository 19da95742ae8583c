"""Benchmark: candle ingest throughput and PG-wire read time, on a QuestDB started for the run.

Prints JSON:
- ingest_synthetic_rows_per_s: write_candles (ILP/HTTP + waiting for the WAL) of 90 days x 4 symbols
- ingest_csv_rows_per_s: parse + validate + write of one shared real file (if ../shared/data is there)
- read_90d_x4_s_median: read_candles of 90 days for each of 4 symbols (sequential), median of N runs
- read_latest_300_ms_median: read_latest(symbol, 300), median

Usage: .venv/bin/python bench/bench_ingest.py [--reads 7] [--days 90]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from mem_core.questdb.local import LocalQuestDB, default_jar, free_port
from mem_core.questdb.store import read_candles, read_latest, write_candles
from mem_pipelines.ingest.load import ingest_csv_files
from mem_pipelines.ingest.synthetic import synthetic_candles

SYMBOLS = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "XRPUSDT"]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "candles" / "BTCUSDT-5m.csv.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=7, help="read repetitions (median reported)")
    parser.add_argument("--days", type=float, default=90.0, help="days per symbol")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mem-bench-") as tmp:
        server = LocalQuestDB(root=Path(tmp) / "qdb", http_port=free_port(), pg_port=free_port(), jar=default_jar())
        settings = server.start()
        try:
            frame = synthetic_candles(SYMBOLS, args.days, 1, "2026-01-01T00:00:00Z")
            t0 = time.perf_counter()
            write_candles(settings, frame)
            ingest_s = time.perf_counter() - t0

            reads = []
            for _ in range(args.reads):
                t0 = time.perf_counter()
                rows = sum(len(read_candles(settings, s)) for s in SYMBOLS)
                reads.append(time.perf_counter() - t0)
            assert rows == len(frame), (rows, len(frame))

            latest = []
            for _ in range(max(args.reads, 20)):
                t0 = time.perf_counter()
                read_latest(settings, "BTCUSDT", 300)
                latest.append(time.perf_counter() - t0)

            result = {
                "rows": len(frame),
                "symbols": len(SYMBOLS),
                "days": args.days,
                "ingest_synthetic_s": round(ingest_s, 3),
                "ingest_synthetic_rows_per_s": round(len(frame) / ingest_s),
                "read_90d_x4_s_median": round(statistics.median(reads), 4),
                "read_90d_x4_s_min": round(min(reads), 4),
                "read_latest_300_ms_median": round(statistics.median(latest) * 1000, 2),
            }
            if SHARED.is_file():
                t0 = time.perf_counter()
                n = sum(r.rows for r in ingest_csv_files(settings, [SHARED]))
                csv_s = time.perf_counter() - t0
                result.update(ingest_csv_rows=n, ingest_csv_s=round(csv_s, 3), ingest_csv_rows_per_s=round(n / csv_s))
        finally:
            server.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
