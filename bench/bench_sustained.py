"""Sustained load: 4 clients paced at 1,000 EnhanceSignal calls/s in total, a new candle on every
call, against ``mem serve`` run as a process; and the server's memory over it. Prints one JSON
object (the figures in docs/serving.md).

The clients are Go processes (``bench/loadgen``, built on first use into ``.cache/bin``; one
connection each; ``--clients-per-process 4`` runs the four in one process, which takes less of
the machine's CPU), like the compiled C# engine the server is for. grpc.aio clients in Python
(``--client python``, kept for comparison) take nearly twice the CPU on the 2 cores the server is
measured on, and their own event loop's delays end up in the latency they measure. Either way
the requests are encoded here with the project's stubs.

Set-up as in bench_serving.py: the seed's champion (200-tree GradientBoostingClassifier fitted on
real BTCUSDT features), an empty memory store, ``mem serve`` with its writer process. Each client
has its own symbols (16) whose histories it seeds, then sends on a fixed schedule (open loop: call
k is due at t0 + k / rate, whether or not earlier calls have answered), so a slow server cannot
slow the offered load down. Client j's t0 is j / total rate after client 0's, so together they
send one call every 1 / total rate (until 2026-11-30 they started at the same instant and sent
in bursts of 4 simultaneous calls, which added the queueing of a burst to every latency).
Latency is reported from the send and from the due time (the latter includes any lateness of
the client itself).

Phases, back to back at the same rate: a warm-up of ``--warmup`` seconds (its calls fill the
server's per-symbol caches and working memory), then ``--seconds`` measured seconds. The server's
resident memory (the server process and, separately, its writer process, from /proc) is taken
after the warm-up and after the measured phase, which sends twice as many calls as the warm-up
by default; the difference is the growth (target <= 50 MB). Targets for the measured phase:
0 errors, p99 <= 5 ms.

    .venv/bin/python bench/bench_sustained.py [--rate 1000] [--clients 4] [--warmup 30] [--seconds 60]
        [--client go|python] [--servers 1] [--front grpc|go] [--clients-per-process 1] [--refused]

``--refused`` measures the floor under the same load: the same clients, requests and server, but
the requests carry no symbol, so the server refuses each one (INVALID_ARGUMENT, counted here as
the answer) as soon as it has decoded it: the transport, the front, the event loop and the
servicer's bookkeeping, without the features, the model and the memory's durable write.

``--front go`` runs ``mem serve`` behind its compiled gRPC front (``MEM_SERVING_FRONT=go``);
the front's CPU is reported apart from the server's.

``--servers n`` starts n ``mem serve`` replicas over the same memory store, and client k sends its
symbols to replica k mod n, as engines that route their symbols to replicas would (docs/deploy.md):
each symbol's candle history then stays with one replica.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_serving as common  # the champion, real candles, request bytes and /proc readers
import numpy as np

from mem_testing.serve_process import children, proc_cpu, rss_mb, start_serve, stop

ROOT = Path(__file__).resolve().parents[1]
SYMBOLS_PER_CLIENT = 16


def _comm(pid: int) -> str:
    """A process's command name (Linux /proc)."""
    return Path(f"/proc/{pid}/comm").read_text().strip()


def _seeded_payloads(
    address: str, k: int, rate: float, warmup: float, seconds: float, history: int, refused: bool = False
) -> list[bytes]:
    """Client ``k``'s requests in sending order (its symbols in turn, a new candle each), after
    giving the server each symbol's ``history``. ``refused``: the same requests without their
    symbol, which the server refuses (INVALID_ARGUMENT) as soon as it has decoded them, and no
    history is given."""
    from mem_serving.api import pb

    symbols = [f"S{k}_{j}" for j in range(SYMBOLS_PER_CLIENT)]
    total = int(round(rate * (warmup + seconds)))
    per_symbol = -(-total // len(symbols)) + 1
    rows = common._rows(0, history + per_symbol)
    if not refused:
        common._seed_history(address, symbols, rows[:history])
    by_symbol = [common._enhance_bytes(pb, "" if refused else s, rows[history:]) for s in symbols]
    return [by_symbol[i % len(symbols)][i // len(symbols)] for i in range(total)]


def _loadgen() -> Path:
    """The Go client (bench/loadgen), built once into .cache/bin from the Go module proxy (Go's
    module cache holds grpc after ``scripts/bootstrap.sh`` built grpcurl)."""
    src = ROOT / "bench" / "loadgen"
    binary = ROOT / ".cache" / "bin" / "mem-loadgen"
    newest = max(f.stat().st_mtime for f in src.iterdir())
    if not binary.exists() or binary.stat().st_mtime < newest:
        if shutil.which("go") is None:
            sys.exit("bench_sustained: Go is needed to build the client (bench/loadgen); or use --client python")
        binary.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["go", "build", "-buildvcs=false", "-o", str(binary), "."],
            cwd=src,
            check=True,
            env={**os.environ, "CGO_ENABLED": "0"},
        )
    return binary


def _go_clients(
    binary: Path,
    address: str,
    ks: list[int],
    rate: float,
    warmup: float,
    seconds: float,
    start_at: float,
    stagger: float,
    history: int,
    out,
    refused: bool = False,
) -> None:
    """Paced Go clients ``ks`` in one bench/loadgen process (one connection each; client ``ks[j]``
    starts ``j * stagger`` after ``start_at``): the payloads are seeded and encoded here.
    ``refused``: requests without a symbol, whose INVALID_ARGUMENT counts as the answer."""
    files = []
    try:
        for k in ks:
            payloads = _seeded_payloads(address, k, rate, warmup, seconds, history, refused)
            with tempfile.NamedTemporaryFile(prefix=f"mem-loadgen-{k}-", delete=False) as f:
                files.append(f.name)
                for data in payloads:
                    f.write(len(data).to_bytes(4, "little") + data)
        proc = subprocess.run(
            [
                str(binary),
                f"-addr={address}",
                f"-payloads={','.join(files)}",
                f"-rate={rate}",
                f"-measured-from={int(round(rate * warmup))}",
                f"-start={start_at}",
                f"-stagger={stagger}",
            ]
            + (["-answered=InvalidArgument"] if refused else []),
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        for name in files:
            os.unlink(name)
    for line in proc.stdout.splitlines():
        r = json.loads(line)
        out.put(
            {
                "sent": [x / 1000.0 for x in r["sent"] or []],
                "due": [x / 1000.0 for x in r["due"] or []],
                "errors": r["errors"],
                "details": r["details"],
                "late_max_s": r["late_max_ms"] / 1000.0,
                "late_p99_s": r["late_p99_ms"] / 1000.0,
                "calls": r["calls"],
                "cpu_s": r["cpu_s"],
            }
        )


def _client(
    address: str, k: int, rate: float, warmup: float, seconds: float, start_at: float, history: int, out
) -> None:
    """One paced client: seeds its symbols, then sends its share on schedule; reports the
    measured phase's latencies (from the send and from the due time) and errors."""
    import grpc

    payloads = _seeded_payloads(address, k, rate, warmup, seconds, history)
    measured_from = int(round(rate * warmup))

    async def main() -> dict:
        channel = grpc.aio.insecure_channel(address)
        call = channel.unary_unary(
            "/mem.v1.MemService/EnhanceSignal", request_serializer=None, response_deserializer=None
        )
        await channel.channel_ready()
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, start_at - time.time()))
        t0 = loop.time()
        sent_lat: list[float] = []
        due_lat: list[float] = []
        errors: dict[str, int] = {}
        details: dict[str, str] = {}  # the first message of each error code
        late: list[float] = []

        async def one(i: int, data: bytes) -> None:
            due = t0 + i / rate
            sent = loop.time()
            try:
                await call(data, timeout=5)
                code = None
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
                details.setdefault(code, exc.details())
            done = loop.time()
            if i >= measured_from:
                if code is None:
                    sent_lat.append(done - sent)
                    due_lat.append(done - due)
                else:
                    errors[code] = errors.get(code, 0) + 1
                late.append(sent - due)

        tasks = []
        cpu0 = time.process_time()
        for i, data in enumerate(payloads):
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(i, data)))
        await asyncio.gather(*tasks)
        cpu = time.process_time() - cpu0
        await channel.close()
        return {
            "sent": sent_lat,
            "due": due_lat,
            "errors": errors,
            "details": details,
            "late_max_s": max(late),
            "late_p99_s": float(np.percentile(late, 99)),
            "calls": len(payloads) - measured_from,
            "cpu_s": cpu,
        }

    out.put(asyncio.run(main()))


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values) * 1000.0, q)), 3) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=1000.0, help="calls per second, all clients together")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--warmup", type=float, default=30.0, help="seconds of warm-up at the same rate")
    ap.add_argument("--seconds", type=float, default=60.0, help="measured seconds")
    ap.add_argument("--quick", action="store_true", help="a 50-tree model instead of the seed's 200 (faster set-up)")
    ap.add_argument(
        "--candle-sink",
        choices=("on", "off"),
        default="off",
        help="write the calls' candles to QuestDB (none runs here: on measures a server whose QuestDB is down)",
    )
    ap.add_argument("--estimator", default="seed_gbc", help="model type of the champion (hist_gb: the default's)")
    ap.add_argument("--feature-set", default="seed", help="feature set of the champion (regime_v1: the default's)")
    ap.add_argument(
        "--client",
        choices=("go", "python"),
        default="go",
        help="go: bench/loadgen, a compiled client like the C# engine (default); python: grpc.aio clients",
    )
    ap.add_argument(
        "--servers",
        type=int,
        default=1,
        help="mem serve replicas sharing the memory store; client k sends its symbols to replica k mod n",
    )
    ap.add_argument(
        "--front",
        choices=("grpc", "go"),
        default="grpc",
        help="who holds the connections in mem serve (MEM_SERVING_FRONT): grpc.aio, or the compiled front",
    )
    ap.add_argument(
        "--clients-per-process",
        type=int,
        default=1,
        help="Go clients per bench/loadgen process (each still has its own connection); 1: a process each",
    )
    ap.add_argument(
        "--refused",
        action="store_true",
        help="the floor: requests without a symbol, refused (INVALID_ARGUMENT) right after decoding; "
        "their answers are what is measured",
    )
    args = ap.parse_args()
    if args.clients_per_process > 1 and (args.client != "go" or args.servers != 1):
        ap.error("--clients-per-process needs --client go and one server")
    if args.refused and args.client != "go":
        ap.error("--refused needs --client go")

    from mem_core.features import SERVING_HISTORY
    from mem_core.questdb.local import free_port

    tmp = Path(tempfile.mkdtemp(prefix="mem-bench-sustained-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    version, fit_s = common._train_champion(uri, args.quick, args.estimator, args.feature_set)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEM_SERVING", "MEM_MEMORY", "MEM_QUESTDB"))}
    env.update(MLFLOW_TRACKING_URI=uri, MEM_HOME=str(tmp), PYTHONUNBUFFERED="1", MEM_QUESTDB_PG_PORT=str(free_port()))
    env["MEM_SERVING_CANDLE_SINK"] = args.candle_sink
    env["MEM_SERVING_FRONT"] = args.front
    servers: list[tuple[subprocess.Popen[str], dict]] = []
    try:
        for i in range(args.servers):
            log = open(tmp / f"serve{i or ''}.log", "w")  # noqa: SIM115 - the server's log, kept with the run's files
            servers.append(start_serve(tmp / "memory.db", env=env, tracking_uri=uri, model_poll=5, stderr=log))
    except BaseException:  # one did not start: stop the others
        for p, _ in servers:
            stop(p)
        raise
    server, info = servers[0]  # its RSS is the one tracked
    try:
        fronts = [c for s, _ in servers for c in children(s.pid) if _comm(c) == "mem-front"]
        writer = next(c for c in children(server.pid) if c not in fronts)
        load_before = [round(x, 2) for x in os.getloadavg()]
        rss_start = {"server": rss_mb(server.pid), "writer": rss_mb(writer)}
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        binary = _loadgen() if args.client == "go" else None
        start_at = time.time() + 15.0  # every client seeds its symbols and connects first
        per_client = args.rate / args.clients
        # client k starts k/rate later: together one call every 1/rate, not 4 at once
        if binary is not None:
            groups = [
                list(range(k, min(k + args.clients_per_process, args.clients)))
                for k in range(0, args.clients, args.clients_per_process)
            ]
            procs = [
                ctx.Process(
                    target=_go_clients,
                    args=(
                        binary,
                        servers[ks[0] % len(servers)][1]["grpc"],
                        ks,
                        per_client,
                        args.warmup,
                        args.seconds,
                        start_at + ks[0] / args.rate,
                        1 / args.rate,
                        SERVING_HISTORY,
                        out,
                        args.refused,
                    ),
                )
                for ks in groups
            ]
        else:
            procs = [
                ctx.Process(
                    target=_client,
                    args=(
                        servers[k % len(servers)][1]["grpc"],
                        k,
                        per_client,
                        args.warmup,
                        args.seconds,
                        start_at + k / args.rate,
                        SERVING_HISTORY,
                        out,
                    ),
                )
                for k in range(args.clients)
            ]
        for p in procs:
            p.start()
        time.sleep(max(0.0, start_at - time.time()))
        samples = []
        rss_warm = None
        cpu0 = sum(proc_cpu(p.pid) for p, _ in servers)
        front_cpu0 = sum(proc_cpu(f) for f in fronts)
        t_end = start_at + args.warmup + args.seconds
        while time.time() < t_end:
            time.sleep(min(5.0, max(0.0, t_end - time.time())))
            elapsed = round(time.time() - start_at)
            samples.append({"s": elapsed, "server_mb": rss_mb(server.pid), "writer_mb": rss_mb(writer)})
            if rss_warm is None and elapsed >= args.warmup:
                rss_warm = {"server": samples[-1]["server_mb"], "writer": samples[-1]["writer_mb"], "at_s": elapsed}
        results = [out.get(timeout=600) for _ in range(args.clients)]
        server_cpu = sum(proc_cpu(p.pid) for p, _ in servers) - cpu0
        front_cpu = sum(proc_cpu(f) for f in fronts) - front_cpu0
        for p in procs:
            p.join()
        rss_end = {"server": rss_mb(server.pid), "writer": rss_mb(writer)}
        load_after = [round(x, 2) for x in os.getloadavg()]
        sent = [x for r in results for x in r["sent"]]
        due = [x for r in results for x in r["due"]]
        errors: dict[str, int] = {}
        for r in results:
            for code, n in r["errors"].items():
                errors[code] = errors.get(code, 0) + n
        details = {code: d for r in results for code, d in r["details"].items()}
        calls = sum(r["calls"] for r in results)
        growth = round(rss_end["server"] - rss_warm["server"], 1) if rss_warm else float("nan")
        report = {
            "benchmark": "sustained",
            "model": {
                "version": version,
                "estimator": args.estimator,
                "feature_set": args.feature_set,
                "fit_s": round(fit_s, 2),
            },
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "offered_rate_per_s": args.rate,
            "candle_sink": args.candle_sink,
            "clients": args.clients,
            "client": args.client,
            "clients_per_process": args.clients_per_process,
            "front": args.front,
            "refused_floor": args.refused,
            "servers": args.servers,
            "symbols": args.clients * SYMBOLS_PER_CLIENT,
            "warmup_s": args.warmup,
            "measured_s": args.seconds,
            "measured": {
                "calls": calls,
                "ok": len(sent),
                "errors": sum(errors.values()),
                "error_codes": errors,
                "error_details": details,
                "decisions_per_s": round(len(sent) / args.seconds, 1),
                "latency_from_send_ms": {
                    "p50": _pct(sent, 50),
                    "p90": _pct(sent, 90),
                    "p99": _pct(sent, 99),
                    "max": _pct(sent, 100),
                },
                "latency_from_due_time_ms": {"p50": _pct(due, 50), "p99": _pct(due, 99), "max": _pct(due, 100)},
                "client_lateness_p99_ms": round(max(r["late_p99_s"] for r in results) * 1000.0, 3),
                "client_cpu_share_of_machine": round(
                    sum(r["cpu_s"] for r in results) / (args.warmup + args.seconds) / (os.cpu_count() or 1), 3
                ),
                "server_cpu_ms_per_call": round(
                    server_cpu / max(1, int(args.rate * (args.warmup + args.seconds))) * 1000.0, 3
                ),
                "front_cpu_ms_per_call": round(
                    front_cpu / max(1, int(args.rate * (args.warmup + args.seconds))) * 1000.0, 3
                ),
            },
            "rss_mb": {
                "start": rss_start,
                "after_warmup": rss_warm,
                "after_measured": rss_end,
                "server_growth_mb": growth,
                "calls_warmup": int(args.rate * args.warmup),
                "calls_measured": calls,
                "samples": samples,
            },
            "server_side": [common._server_side(i["metrics"]) for _, i in servers]
            if len(servers) > 1
            else common._server_side(info["metrics"]),
            "targets": {"errors": 0, "p99_ms": 5.0, "rss_growth_mb": 50.0},
        }
        if errors:  # the server's own account of what went wrong
            report["server_log_tail"] = (tmp / "serve.log").read_text().splitlines()[-15:]
        report["meets"] = {
            "no_errors": report["measured"]["errors"] == 0 and report["measured"]["ok"] == calls,
            "p99_from_send": report["measured"]["latency_from_send_ms"]["p99"] <= 5.0,
            "p99_from_due_time": report["measured"]["latency_from_due_time_ms"]["p99"] <= 5.0,
            "rss_growth": growth <= 50.0,
        }
        print(json.dumps(report, indent=2))
    finally:
        for p, _ in servers:
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
