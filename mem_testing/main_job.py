"""One ``mem main`` as a new user runs it, in a fresh MEM_HOME with free ports and its own QuestDB:
its exit code, seconds, the line that failed, the champion's lines and the report's three rows
(``bench/bench_replay_main.py``)."""

from __future__ import annotations

import csv
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
