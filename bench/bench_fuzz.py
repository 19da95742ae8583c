"""Fuzz at scale: generated requests across every RPC against ``mem serve`` run as a process.
Prints one JSON object (the figures in docs/serving.md).

Set-up in a temporary folder: a small real champion (GradientBoosting, 40 trees, fitted on real
BTCUSDT features from the shared candles), an empty memory store, ``mem serve`` with no QuestDB
behind it (calls that would read candles from QuestDB get UNAVAILABLE). The requests come from
the seeded generator of mem_testing/fuzz.py (the CI test runs 1,500 of them): valid ones,
ones with one to three fields broken, garbled bytes, random bytes and retries. Checked: no
INTERNAL, counted apart for requests that decode and bytes that do not (those get
INVALID_ARGUMENT), health SERVING at every 100th request, and after the run the store holds
exactly the decisions and outcomes of the successful calls.

    .venv/bin/python bench/bench_fuzz.py [--requests 10000] [--seed 20261124]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from mem_testing.serve_process import start_serve, stop

ROOT = Path(__file__).resolve().parents[1]
CANDLES = Path(os.environ.get("MEM_SHARED_DATA", ROOT.parent / "shared" / "data")) / "candles"
TRAIN_ROWS, SERVE_ROWS = 6000, 20000
SYMBOLS = ("FZA", "FZB", "FZC")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=20261124)
    args = ap.parse_args()

    import grpc
    import numpy as np

    from mem_core.features import SERVING_HISTORY
    from mem_core.questdb.local import free_port
    from mem_memory import MemoryStore
    from mem_testing.fuzz import Generator, run, seed_histories
    from mem_testing.models import V1_PARAMS, load_candles, promote, train_version

    load_before = [round(x, 2) for x in os.getloadavg()]
    tmp = Path(tempfile.mkdtemp(prefix="mem-bench-fuzz-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    frame = load_candles(CANDLES, "BTCUSDT", TRAIN_ROWS + SERVE_ROWS)
    promote(uri, train_version(frame.iloc[:TRAIN_ROWS].reset_index(drop=True), uri, V1_PARAMS))
    serve = frame.iloc[TRAIN_ROWS:].reset_index(drop=True)
    ts = serve["ts"].dt.as_unit("ms").astype("int64").to_numpy()  # whatever the stored resolution
    rows = np.column_stack([ts, serve[["open", "high", "low", "close", "volume"]].to_numpy()])

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEM_SERVING", "MEM_MEMORY", "MEM_QUESTDB"))}
    env.update(MLFLOW_TRACKING_URI=uri, MEM_HOME=str(tmp), PYTHONUNBUFFERED="1", MEM_QUESTDB_PG_PORT=str(free_port()))
    db = tmp / "memory.db"
    server, info = start_serve(db, env=env, metrics_port=-1, model_poll=5)
    try:
        address = info["grpc"]
        with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 16 * 1024 * 1024)]) as channel:
            seed_histories(channel, rows, SYMBOLS, SERVING_HISTORY)
            report = run(channel, Generator(args.seed, rows, SYMBOLS, SERVING_HISTORY), args.requests)
        stop(server, timeout=30)
        store = MemoryStore.open(db)
        try:
            stored = store.counts()
            missing = len(report.decisions) - len(store.decision_event_ids(sorted(report.decisions)))
        finally:
            store.close()
        result = {
            "benchmark": "fuzz",
            "seed": args.seed,
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            **report.as_dict(),
            "store": stored,
            "acknowledged_decisions_missing": missing,
            "nothing_stored_from_refused_calls": stored == report.expected_counts(),
            "server_exit_code": server.returncode,
        }
        result["meets"] = {
            "no_internal_for_decodable": result["internal_decodable"] == 0,
            "no_internal_for_undecodable": result["internal_undecodable"] == 0,
            "no_unexpected_status": result["unexpected"] == 0,
            "serving_throughout": result["health_not_serving"] == 0,
            "nothing_stored_from_refused_calls": result["nothing_stored_from_refused_calls"] and missing == 0,
        }
        print(json.dumps(result, indent=2))
    finally:
        stop(server, timeout=0)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
