"""What the transport alone costs here: paced health checks against ``mem serve`` (grpc.aio) and
against a Go gRPC server, with the sustained bench's clients. Prints one JSON object.

The sustained bench (``bench_sustained.py``) asks for p99 <= 5 ms at 1,000 EnhanceSignal calls/s.
This bench sends the cheapest call there is, ``grpc.health.v1.Health/Check`` (no handler code of
ours), with the same 4 paced, interleaved Go clients (``bench/loadgen``) at the same rate, to

- ``python``: ``mem serve`` (an empty memory store, no champion), and
- ``go``: ``bench/loadgen -serve-health``, a Go server with only the health service,

in alternating runs. For ``mem serve`` it also reports the CPU per call of its busiest thread
(the event loop's) and of the whole process, from /proc. What the Go server does in a run is the
floor of the machine and the clients; what ``mem serve`` adds is grpc.aio's own cost.

    .venv/bin/python bench/bench_transport_floor.py [--rate 1000] [--seconds 10] [--runs 3]
        [--model-poll S]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench_sustained import _loadgen, _pct

from mem_testing.serve_process import start_serve, stop

HEALTH_CHECK = "/grpc.health.v1.Health/Check"


def _thread_ticks(pid: int) -> dict[str, int]:
    """CPU clock ticks (user + system) of each thread of ``pid``."""
    ticks = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        ticks[task.name] = int(fields[11]) + int(fields[12])
    return ticks


def _run(binary: Path, address: str, rate: float, clients: int, warmup: float, seconds: float, pid: int | None) -> dict:
    """One paced run of ``clients`` health-check clients; the measured phase's latencies and,
    with ``pid``, that server's CPU per call."""
    per_client = rate / clients
    total = int(round(per_client * (warmup + seconds)))
    with tempfile.NamedTemporaryFile(prefix="mem-floor-", delete=False) as f:
        f.write((0).to_bytes(4, "little") * total)  # an empty HealthCheckRequest per call
    start = time.time() + 1.0
    try:
        procs = [
            subprocess.Popen(
                [
                    str(binary),
                    f"-addr={address}",
                    f"-payloads={f.name}",
                    f"-rate={per_client}",
                    f"-measured-from={int(round(per_client * warmup))}",
                    f"-start={start + k / rate}",
                    f"-method={HEALTH_CHECK}",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for k in range(clients)
        ]
        cpu = None
        if pid is not None:
            time.sleep(max(0.0, start + warmup - time.time()))
            before, t0 = _thread_ticks(pid), time.time()
            time.sleep(seconds - 0.5)
            after, elapsed = _thread_ticks(pid), time.time() - t0
            tick_ms = 1000.0 / os.sysconf("SC_CLK_TCK")
            used = {t: (after[t] - before.get(t, 0)) * tick_ms for t in after}
            calls = rate * elapsed
            cpu = {
                "busiest_thread_ms_per_call": round(max(used.values()) / calls, 3),
                "process_ms_per_call": round(sum(used.values()) / calls, 3),
            }
        results = [json.loads(p.communicate()[0]) for p in procs]
    finally:
        os.unlink(f.name)
    sent = [x / 1000.0 for r in results for x in (r["sent"] or [])]  # loadgen reports ms, _pct takes s
    errors = sum(sum(r["errors"].values()) for r in results)
    latency = {f"p{q}": _pct(sent, q) for q in (50, 90, 99, 99.9)} | {"max": _pct(sent, 100)}
    return {"ok": len(sent), "errors": errors, "latency_ms": latency} | ({"cpu": cpu} if cpu else {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=1000.0, help="calls per second, all clients together")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    ap.add_argument("--runs", type=int, default=3, help="runs per server, alternating")
    ap.add_argument("--model-poll", type=float, default=None, help="mem serve's champion poll (s; 0: off)")
    args = ap.parse_args()

    from mem_core.questdb.local import free_port

    binary = _loadgen()
    tmp = Path(tempfile.mkdtemp(prefix="mem-bench-floor-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEM_SERVING", "MEM_MEMORY", "MEM_QUESTDB"))}
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    env.update(MEM_HOME=str(tmp), MLFLOW_TRACKING_URI=uri, MEM_QUESTDB_PG_PORT=str(free_port()))
    env["MEM_SERVING_CANDLE_SINK"] = "off"
    py, info = start_serve(tmp / "memory.db", env=env, tracking_uri=uri, metrics_port=-1, model_poll=args.model_poll)
    go = subprocess.Popen([str(binary), "-serve-health"], stdout=subprocess.PIPE, text=True)
    try:
        go_address = go.stdout.readline().strip()  # type: ignore[union-attr]
        runs: dict[str, list[dict]] = {"python": [], "go": []}
        for _ in range(args.runs):
            runs["python"].append(
                _run(binary, info["grpc"], args.rate, args.clients, args.warmup, args.seconds, py.pid)
            )
            runs["go"].append(_run(binary, go_address, args.rate, args.clients, args.warmup, args.seconds, None))
    finally:
        stop(py)
        go.kill()
        go.wait()

    def median(server: str, key: str) -> float:
        return round(statistics.median(r["latency_ms"][key] for r in runs[server]), 3)

    report = {
        "benchmark": "transport_floor",
        "rpc": HEALTH_CHECK,
        "cpus": os.cpu_count(),
        "offered_rate_per_s": args.rate,
        "clients": args.clients,
        "measured_s_per_run": args.seconds,
        "model_poll_s": args.model_poll,
        "median_of_runs": {
            server: {key: median(server, key) for key in ("p50", "p99", "p99.9", "max")} for server in runs
        },
        "mem_serve_loop_cpu_ms_per_call_median": round(
            statistics.median(r["cpu"]["busiest_thread_ms_per_call"] for r in runs["python"]), 3
        ),
        "runs": runs,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
