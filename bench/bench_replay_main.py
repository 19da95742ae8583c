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
import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The shared real candles: $MEM_SHARED_DATA/candles, else ../shared/data/candles beside the checkout.
SHARED = (
    Path(os.environ["MEM_SHARED_DATA"]) / "candles"
    if os.environ.get("MEM_SHARED_DATA")
    else ROOT.parent / "shared" / "data" / "candles"
)
ROWS = ("Base strategy alone", "Base + ML filter", "Base + ML + memory (full system)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_main(args: list[str], timeout: float) -> dict:
    """One ``mem main`` with ``args`` in a fresh MEM_HOME; what it printed and reported."""
    with tempfile.TemporaryDirectory(prefix="mem-main-bench-") as tmp:
        home = Path(tmp)
        env = {
            **os.environ,
            "MEM_HOME": str(home),
            "DAGSTER_HOME": str(home),
            "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
            "MEM_QUESTDB_HTTP_PORT": str(_free_port()),
            "MEM_QUESTDB_PG_PORT": str(_free_port()),
        }
        for var in ("MEM_QUESTDB_HOST", "MEM_MEMORY_DB", "MEM_SYMBOLS"):
            env.pop(var, None)
        command = [sys.executable, "-m", "mem_cli.main", "main", *args]
        started = time.monotonic()
        try:
            proc = subprocess.run(command, cwd=home, env=env, capture_output=True, text=True, timeout=timeout)
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            code, out, err = -1, str(exc.stdout or ""), f"timed out after {timeout:.0f}s"
        seconds = time.monotonic() - started
        comparison = home / "reports" / "comparison.csv"
        rows = list(csv.DictReader(comparison.open())) if comparison.is_file() else []
        report = home / "reports" / "report.md"
        text = report.read_text() if report.is_file() else ""
        lines = (out + err).strip().splitlines()
        failed = [line for line in lines if line.startswith("error")] or ([] if code == 0 else lines[-1:])
        return {
            "command": "mem main " + " ".join(a if "/" not in a else Path(a).name for a in args),
            "exit_code": code,
            "seconds": round(seconds, 1),
            "three_rows": all(f"| {row} |" in text for row in ROWS),
            "error": failed[-1] if failed else "",
            # the champion the replay was served by (the gate's verdict), or why there is none
            "model": [line.split("] ", 1)[-1] for line in lines if "] model v" in line or "] gate: " in line],
            "variants": [
                {k: r.get(k) for k in ("variant", "signals", "trades", "win_rate", "total_pnl")} for r in rows
            ],
        }


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
