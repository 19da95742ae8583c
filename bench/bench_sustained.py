"""Sustained load: ghz paced at 1,000 EnhanceSignal calls/s, a new candle on every call, against
``mem serve`` run as a process; and the server's memory over it. Prints one JSON object (the
figures in docs/serving.md).

The client is ghz (a Go gRPC load tool, built into ``.cache/bin`` on first use, as in
bench_serving.py), sending asynchronously at a constant rate (``--async --rps``: call k is sent
at t0 + k / rate whether or not earlier calls have answered, so a slow server cannot slow the
offered load down) over ``--connections`` connections. The requests are encoded here with the
project's stubs, every one distinct: message k is candle k // S of symbol k % S (S symbols, 64
by default, whose histories are given to the server first).

Set-up as in bench_serving.py: the seed's champion (200-tree GradientBoostingClassifier fitted on
real BTCUSDT features), an empty memory store, ``mem serve`` with its writer process.

One ghz run covers a warm-up of ``--warmup`` seconds (its calls fill the server's per-symbol
caches and working memory; ``--skipFirst`` leaves them out of the figures), then ``--seconds``
measured seconds at the same rate. The server's resident memory (the server process and,
separately, its writer process, from /proc) is taken after the warm-up and at the end; the
difference is the growth (target <= 50 MB). The CPU per call counts ``mem serve`` and its writer
process (/proc utime + stime of both), from the end of the warm-up until the last answer is in,
divided by the measured calls (target <= 0.40 ms at 500/s). Targets for the measured phase: 0
errors, p99 within 2x of the floor below.

    .venv/bin/python bench/bench_sustained.py [--rate 1000] [--connections 4] [--warmup 30]
        [--seconds 60] [--symbols 64] [--servers 1] [--floors both|refused|do-nothing|none]

Then, in the same run, the floors under the same load (``--floors``, both by default; one server
only), each its own ghz run of warm-up and measured seconds, with its CPU per call and mem's
ratio to it:
- ``refused``: the same client and server, but the requests carry no symbol, so the server
  refuses each one (INVALID_ARGUMENT, counted here as the answer) as soon as it has decoded it:
  the transport, the event loop and the servicer's bookkeeping, without the features, the model
  and the memory's durable write (the writer process idles; its CPU is counted all the same);
- ``do-nothing``: mem's own requests to a do-nothing grpc.aio servicer of the RPC
  (``bench/floor_server.py``: decode, answer an empty ``EnhancedSignal``), one process.

``--servers n`` starts n ``mem serve`` replicas over the same memory store, each with its own
symbols and ghz process at rate / n, as engines that route their symbols to replicas would
(docs/deploy.md): each symbol's candle history then stays with one replica.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_serving as common  # the champion, real candles, request bytes, ghz and /proc readers
import floor_server
import numpy as np

from mem_testing.serve_process import children, proc_cpu, rss_mb, start_serve, stop

ROOT = Path(__file__).resolve().parents[1]
ENHANCE = "mem.v1.MemService/EnhanceSignal"


def _payload_file(
    address: str, prefix: str, symbols: int, total: int, history: int, path: Path, refused: bool = False
) -> None:
    """``total`` EnhanceSignal requests, count-delimited (what ghz's ``--binary-file`` reads), in
    sending order (the symbols in turn, a new candle each), after giving the server each symbol's
    ``history``. ``refused``: the same requests without their symbol, which the server refuses
    (INVALID_ARGUMENT) as soon as it has decoded them, and no history is given."""
    from mem_serving.api import pb

    names = [f"{prefix}{j}" for j in range(symbols)]
    per_symbol = -(-total // symbols) + 1
    rows = common._rows(0, history + per_symbol)
    if not refused:
        common._seed_history(address, names, rows[:history])
    by_symbol = [common._enhance_bytes(pb, "" if refused else s, rows[history:]) for s in names]
    with open(path, "wb") as f:
        for k in range(total):
            data = by_symbol[k % symbols][k // symbols]
            f.write(common._varint(len(data)) + data)


def _ghz(
    exe: str, address: str, payloads: Path, rate: float, total: int, skip: int, connections: int, out: Path
) -> subprocess.Popen[bytes]:
    """ghz sending ``total`` calls at ``rate``/s without waiting for answers; the first ``skip``
    are left out of its report (written to ``out``: JSON with every call's latency and status)."""
    return subprocess.Popen(
        [
            exe,
            "--insecure",
            "--proto",
            str(ROOT / "proto" / "mem" / "v1" / "mem.proto"),
            "--import-paths",
            str(ROOT / "proto"),
            "--call",
            ENHANCE,
            "--binary-file",
            str(payloads),
            "--total",
            str(total),
            "--rps",
            f"{rate:g}",
            "--async",
            "--concurrency",
            str(max(connections, 50)),
            "--connections",
            str(connections),
            "--skipFirst",
            str(skip),
            "--timeout",
            "5s",
            "--format",
            "json",
            "--output",
            str(out),
            address,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _pct(values: np.ndarray, q: float) -> float:
    return round(float(np.percentile(values, q)), 3) if len(values) else float("nan")


def _measured(reports: list[dict], answer: str) -> dict:
    """The measured calls of every ghz report: ``answer`` is the status that counts as answered
    (``OK``, or ``InvalidArgument`` for the refused floor)."""
    latencies, errors = [], {}
    for rep in reports:
        for d in rep.get("details") or []:
            status = d.get("status") or "OK"
            if status == answer:
                latencies.append(d["latency"] / 1e6)
            else:
                errors[status] = errors.get(status, 0) + 1
    ms = np.asarray(latencies)
    return {
        "calls": len(latencies) + sum(errors.values()),
        "answered": len(latencies),
        "errors": sum(errors.values()),
        "error_codes": errors,
        "error_details": {  # ghz's messages, without the answer's own status (the refused floor's)
            k: v
            for rep in reports
            for k, v in (rep.get("errorDistribution") or {}).items()
            if f"code = {answer} " not in k
        },
        "latency_from_send_ms": {q: _pct(ms, p) for q, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))},
    }


def _cpu(pids: list[int]) -> float:
    """CPU seconds used so far by the processes ``pids`` together."""
    return sum(proc_cpu(p) for p in pids)


def _phase(
    exe: str,
    targets: list[tuple[str, Path]],
    cpu_of: dict[str, list[int]],
    args: argparse.Namespace,
    total: int,
    skip: int,
    out_dir: Path,
    name: str,
    answer: str = "OK",
    rss_of: dict[str, int] | None = None,
) -> dict:
    """One ghz run per (address, payload file) at ``args.rate`` / len(targets) each: the warm-up,
    then the measured seconds. The CPU of the processes ``cpu_of`` (by role) is read at the end of
    the warm-up and when the last answer is in; per call = that CPU / the measured calls. ``rss_of``:
    processes whose RSS is sampled every 5 s."""
    per_server = args.rate / len(targets)
    outs = [out_dir / f"ghz-{name}-{i}.json" for i in range(len(targets))]
    client_cpu0 = common._children_cpu()
    load_before = [round(x, 2) for x in os.getloadavg()]
    start_at = time.time()
    ghz = [
        _ghz(exe, address, f, per_server, total, skip, args.connections, o)
        for (address, f), o in zip(targets, outs, strict=True)
    ]
    samples: list[dict] = []
    cpu_warm: dict[str, float] | None = None
    while any(g.poll() is None for g in ghz):
        elapsed = time.time() - start_at
        if cpu_warm is None and elapsed >= args.warmup:
            cpu_warm = {role: _cpu(pids) for role, pids in cpu_of.items()}
            if rss_of:
                samples.append({"s": round(elapsed), **{f"{k}_mb": rss_mb(p) for k, p in rss_of.items()}})
        elif rss_of and (not samples or elapsed - samples[-1]["s"] >= 5):
            samples.append({"s": round(elapsed), **{f"{k}_mb": rss_mb(p) for k, p in rss_of.items()}})
        time.sleep(min(0.1, max(0.0, args.warmup - elapsed)) if cpu_warm is None else 0.2)
    cpu_end = {role: _cpu(pids) for role, pids in cpu_of.items()}
    wall = time.time() - start_at
    if cpu_warm is None:  # ghz ended within the warm-up (it failed): the figures below say so
        cpu_warm = cpu_end
    for g, o in zip(ghz, outs, strict=True):
        if g.returncode != 0 and not o.exists():
            sys.exit(f"bench_sustained: ghz failed: {g.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
    measured = _measured([json.loads(o.read_text()) for o in outs], answer)
    calls = (total - skip) * len(targets)
    cpu_ms = {role: round((cpu_end[role] - cpu_warm[role]) / max(1, calls) * 1000.0, 3) for role in cpu_of}
    return measured | {
        "answered_per_s": round(measured["answered"] / args.seconds, 1),
        "client_cpu_share_of_machine": round((common._children_cpu() - client_cpu0) / wall / (os.cpu_count() or 1), 3),
        "cpu_ms_per_call": cpu_ms | {"total": round(sum(cpu_ms.values()), 3)},
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "rss_samples": samples,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=1000.0, help="calls per second, all servers together")
    ap.add_argument("--connections", type=int, default=4, help="ghz's connections per server")
    ap.add_argument("--symbols", type=int, default=64, help="symbols per server")
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
        "--servers", type=int, default=1, help="mem serve replicas sharing the memory store, each with its own symbols"
    )
    ap.add_argument(
        "--floors",
        choices=("both", "refused", "do-nothing", "none"),
        default="both",
        help="the floors measured after mem in the same run (module docstring); one server only",
    )
    args = ap.parse_args()

    exe, why = common._ghz()
    if exe is None:
        sys.exit(f"bench_sustained: {why}")

    from mem_core.features import SERVING_HISTORY
    from mem_core.questdb.local import free_port

    tmp = Path(tempfile.mkdtemp(prefix="mem-bench-sustained-"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    version, fit_s = common._train_champion(uri, args.quick, args.estimator, args.feature_set)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEM_SERVING", "MEM_MEMORY", "MEM_QUESTDB"))}
    env.update(MLFLOW_TRACKING_URI=uri, MEM_HOME=str(tmp), PYTHONUNBUFFERED="1", MEM_QUESTDB_PG_PORT=str(free_port()))
    env["MEM_SERVING_CANDLE_SINK"] = args.candle_sink
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
    floors = (
        () if args.servers > 1 else {"both": ("refused", "do-nothing"), "none": ()}.get(args.floors, (args.floors,))
    )
    try:
        writers = [children(p.pid)[0] for p, _ in servers]
        per_server = args.rate / args.servers
        total = int(round(per_server * (args.warmup + args.seconds)))
        skip = int(round(per_server * args.warmup))
        files = []
        for i, (_, inf) in enumerate(servers):
            path = tmp / f"ghz-{i}.bin"
            _payload_file(inf["grpc"], f"S{i}_", args.symbols, total, SERVING_HISTORY, path)
            files.append(path)
        rss_start = {"server": rss_mb(server.pid), "writer": rss_mb(writers[0])}
        cpu_of = {"server": [p.pid for p, _ in servers], "writer": writers}
        measured = _phase(
            exe,
            [(inf["grpc"], f) for (_, inf), f in zip(servers, files, strict=True)],
            cpu_of,
            args,
            total,
            skip,
            tmp,
            "mem",
            rss_of={"server": server.pid, "writer": writers[0]},
        )
        server_side = (
            [common._server_side(i["metrics"]) for _, i in servers]
            if len(servers) > 1
            else common._server_side(info["metrics"])
        )
        samples = measured.pop("rss_samples")
        rss_end = {"server": rss_mb(server.pid), "writer": rss_mb(writers[0])}
        warm = next((s for s in samples if s["s"] >= args.warmup), None)
        rss_warm = {"server": warm["server_mb"], "writer": warm["writer_mb"], "at_s": warm["s"]} if warm else None
        growth = round(rss_end["server"] - rss_warm["server"], 1) if rss_warm else float("nan")
        floor_figures: dict[str, dict] = {}
        if "refused" in floors:  # the same server, requests without a symbol
            path = tmp / "ghz-refused.bin"
            _payload_file(info["grpc"], "R_", args.symbols, total, SERVING_HISTORY, path, refused=True)
            floor_figures["refused"] = _phase(
                exe, [(info["grpc"], path)], cpu_of, args, total, skip, tmp, "refused", "InvalidArgument"
            )
        if "do-nothing" in floors:  # mem's own requests to a do-nothing servicer
            proc, address = floor_server.start(env)
            try:
                floor_figures["do_nothing"] = _phase(
                    exe, [(address, files[0])], {"server": [proc.pid]}, args, total, skip, tmp, "do-nothing"
                )
            finally:
                floor_server.finish(proc)
        mem_cpu = measured["cpu_ms_per_call"]["total"]
        report = {
            "benchmark": "sustained",
            "model": {
                "version": version,
                "estimator": args.estimator,
                "feature_set": args.feature_set,
                "fit_s": round(fit_s, 2),
            },
            "client": f"ghz {common.GHZ_VERSION} --async --rps",
            "cpus": os.cpu_count(),
            "offered_rate_per_s": args.rate,
            "candle_sink": args.candle_sink,
            "connections_per_server": args.connections,
            "servers": args.servers,
            "symbols": args.servers * args.symbols,
            "warmup_s": args.warmup,
            "measured_s": args.seconds,
            "cpu_counted": "mem serve and its writer process (/proc utime+stime), from the end of the warm-up "
            "until the last answer, divided by the measured calls; the do-nothing servicer is one process",
            "measured": measured,
            "floors": floor_figures,
            "cpu_ms_per_call": {"mem": mem_cpu} | {k: f["cpu_ms_per_call"]["total"] for k, f in floor_figures.items()},
            "cpu_ratio_to_floor": {
                k: round(mem_cpu / f["cpu_ms_per_call"]["total"], 2)
                for k, f in floor_figures.items()
                if f["cpu_ms_per_call"]["total"] > 0
            },
            "rss_mb": {
                "start": rss_start,
                "after_warmup": rss_warm,
                "after_measured": rss_end,
                "server_growth_mb": growth,
                "calls_warmup": skip,
                "calls_measured": total - skip,
                "samples": samples,
            },
            "server_side": server_side,
            "targets": {"errors": 0, "rss_growth_mb": 50.0, "server_cpu_ms_per_call": 0.40},
        }
        if measured["errors"]:  # the server's own account of what went wrong
            report["server_log_tail"] = (tmp / "serve.log").read_text().splitlines()[-15:]
        report["meets"] = {
            "no_errors": measured["errors"] == 0 and measured["answered"] == (total - skip) * len(servers),
            "rss_growth": growth <= 50.0,
            "cpu_per_call": mem_cpu <= 0.40,
        }
        print(json.dumps(report, indent=2))
    finally:
        for p, _ in servers:
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
