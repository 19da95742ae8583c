"""``mem main`` end to end, as a new user runs it, on the shipped sample or the seven shared files;
prints JSON: per run the command, its exit code, seconds, the line that failed (if any), the
champion's lines (model and gate), and the report's three rows (trades, win rate, total P&L per variant) from reports/comparison.csv.

Each run gets a fresh MEM_HOME in a temporary folder, free ports and its own QuestDB, so runs never
share a server's candle history or memory (docs/serving.md, "Candle history").

    .venv/bin/python bench/bench_replay_main.py sample --replay-days 1 2 5
    .venv/bin/python bench/bench_replay_main.py shared --replay-days 1        # the seven files of ../shared
    MEM_SHARED_DATA=/path/to/data .venv/bin/python bench/bench_replay_main.py shared

Minutes per run on 2 cores (training over the default 180 days dominates); a bench, not a test.
"""

from __future__ import annotations

import argparse
import json
import sys

from mem_testing.main_job import SHARED, run_main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", choices=("sample", "shared"), help="the shipped sample, or the seven shared files")
    parser.add_argument("--replay-days", type=float, nargs="+", default=[1.0])
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    opts = parser.parse_args()
    extra: list[str] = []
    if opts.data == "shared":
        files = sorted(SHARED.glob("*-5m.csv.gz"))
        if not files:
            raise SystemExit(f"no candle files in {SHARED} (set MEM_SHARED_DATA)")
        for f in files:
            extra += ["--csv", str(f)]
    runs = []
    for days in opts.replay_days:
        runs.append(run_main([*extra, "--replay-days", f"{days:g}"], opts.timeout))
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)  # progress: one line per run
    print(json.dumps({"data": opts.data, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
