"""Security operations, measured: credential rotation under load, memory rekey, backup and
restore. Prints one JSON object.

    .venv/bin/python bench/bench_security.py [--rotation-phase-s 3] [--rekey-decisions 100000]
        [--backup-decisions 1000000] [--skip rotation,rekey,backup]

1. ``rotation``: ``mem serve`` as a process (TLS + a token file, no file watcher: SIGHUP only, an
   empty MLflow store) and client threads calling GetParameters without pause, per token one on
   a kept connection and one opening a new TLS connection (a handshake) per call. Phases of
   ``--rotation-phase-s`` seconds: token A alone; A+B and a new certificate from another CA
   (one SIGHUP); the A clients stop and B alone (SIGHUP). Reports calls and failed calls per
   phase and the time from SIGHUP to the server's "reloaded" log line. Helpers come from
   ``mem_testing/rotation.py`` (certificates from ``cryptography``).
2. ``rekey``: an encrypted store of ``--rekey-decisions`` decisions (60% closed) re-encrypted
   under a new key with ``mem_memory.rekey.rekey`` (what ``mem memory rekey`` runs).
3. ``backup``: an encrypted store of ``--backup-decisions`` decisions (60% closed), backed up with
   ``mem_memory.backup.backup`` while a writer process (tests/memory/_worker.py: enhance +
   record_outcome, each an fsync'ed commit) keeps writing, then restored with full verification
   into a new path. The history is generated with ``MemoryStore.bulk_append`` (bench_memory's
   ``load``: 50,000 decisions per transaction), not through gRPC: one durable gRPC call per
   decision would take ~15 minutes for 1,000,000 on 2 shared cores; the store's bytes are the same.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_memory import load

from mem_memory import MemoryStore, key_id
from mem_testing.serve_process import start_serve, stop

SYMBOLS = [f"SYM{i:02d}" for i in range(20)]


def rotation(phase_s: float) -> dict:
    import grpc

    from mem_testing.rotation import Caller, call_once, issue, make_ca, write_private

    tmp = Path(tempfile.mkdtemp(prefix="mem-bench-rotation-"))
    ca1, ca2 = make_ca("ca-1"), make_ca("ca-2")
    (cert1, key1), (cert2, key2) = issue(ca1), issue(ca2)
    token_file, cert_file, key_file = tmp / "tokens", tmp / "server.crt", tmp / "server.key"
    write_private(token_file, "token-A\n")
    write_private(cert_file, cert1)
    write_private(key_file, key1)
    env = {
        **os.environ,
        "MEM_HOME": str(tmp),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
        "MEM_QUESTDB_PG_PORT": "1",
        "MEM_SERVING_TOKEN_FILE": str(token_file),
        "MEM_SERVING_TLS_CERT": str(cert_file),
        "MEM_SERVING_TLS_KEY": str(key_file),
        "MEM_SERVING_CREDENTIALS_POLL_S": "0",
    }
    env.pop("MEM_SERVING_TOKEN", None)
    proc, info = start_serve(tmp / "m.db", env=env, metrics_port=-1, stderr=subprocess.PIPE)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True).start()  # type: ignore[union-attr]

    def hup() -> float:
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGHUP)
        while True:
            if "serving credentials reloaded (SIGHUP)" in lines.get(timeout=30):
                return round((time.perf_counter() - t0) * 1000, 1)

    def snapshot(callers: list[Caller]) -> dict[str, int]:
        return {f"{c.token}-{'fresh' if c.fresh else 'kept'}": c.calls for c in callers}

    def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
        return {k: v - before.get(k, 0) for k, v in after.items()}

    try:
        address = f"localhost:{info['grpc'].rsplit(':', 1)[1]}"
        roots = ca1.cert_pem + ca2.cert_pem
        a = [Caller(address, roots, "token-A").start(), Caller(address, roots, "token-A", fresh=True).start()]
        time.sleep(phase_s)
        s1 = snapshot(a)
        write_private(token_file, "token-A\ntoken-B\n")
        write_private(cert_file, cert2)
        write_private(key_file, key2)
        reload_add_ms = hup()
        b = [Caller(address, roots, "token-B").start(), Caller(address, roots, "token-B", fresh=True).start()]
        time.sleep(phase_s)
        s2 = snapshot(a + b)
        for c in a:
            c.stop()
        s2b = snapshot(a + b)
        write_private(token_file, "token-B\n")
        reload_remove_ms = hup()
        time.sleep(phase_s)
        for c in b:
            c.stop()
        s3 = snapshot(a + b)
        old_refused = call_once(address, roots, "token-A") == grpc.StatusCode.UNAUTHENTICATED
        old_cert_gone = call_once(address, ca1.cert_pem, "token-B") != grpc.StatusCode.OK
        total = sum(c.calls for c in a + b)
        return {
            "calls": total,
            "failed": sum(len(c.failures) for c in a + b),
            "failures": sorted({f for c in a + b for f in c.failures}),
            "phase_s": phase_s,
            "phase_token_a_only": s1,
            "phase_overlap_a_and_b_new_certificate": delta(s2, s1),
            "phase_b_only_after_a_removed": delta(s3, s2b),
            "calls_per_s": round(total / (3 * phase_s), 1),
            "sighup_to_reloaded_ms": {"add_b_and_certificate": reload_add_ms, "remove_a": reload_remove_ms},
            "old_token_refused_after_removal": old_refused,
            "old_certificate_no_longer_served": old_cert_gone,
        }
    finally:
        stop(proc, timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


def rekey_bench(n: int) -> dict:
    from mem_memory.rekey import rekey

    tmp = Path(tempfile.mkdtemp(prefix="mem-bench-rekey-"))
    old, new = os.urandom(32), os.urandom(32)
    try:
        db = tmp / "memory.db"
        store = MemoryStore.open(db, old)
        loaded = load(store, n, SYMBOLS, 0.6, 50_000, 1)
        events = store.last_event_id()
        store.checkpoint()
        store.close()
        report = rekey(db, new, [old])
        return {
            "decisions": n,
            "events": events,
            "bulk_load_s": loaded["seconds"],
            "bytes": db.stat().st_size,
            "rekey_s": report.seconds,
            "events_per_s": round(events / report.seconds),
            "batches": report.batches,
            "retagged": report.retagged,
            "to_key_id": report.to_key_id == key_id(new),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def backup_bench(n: int) -> dict:
    from mem_memory.backup import backup, restore

    tmp = Path(tempfile.mkdtemp(prefix="mem-bench-backup-"))
    key = os.urandom(32)
    try:
        db = tmp / "memory" / "memory.db"
        store = MemoryStore.open(db, key)
        loaded = load(store, n, SYMBOLS, 0.6, 50_000, 2)
        store.checkpoint()
        store.close()
        env = {**os.environ, "MEM_MEMORY_KEY": base64.b64encode(key).decode()}
        writer = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "memory" / "_worker.py"), "write", str(db), "LIVE", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        acked: list[float] = []
        threading.Thread(target=lambda: [acked.append(time.perf_counter()) for _ in writer.stdout], daemon=True).start()  # type: ignore[union-attr]
        while len(acked) < 50:
            time.sleep(0.01)
        t0 = time.perf_counter()
        info = backup(db, tmp / "backups")
        t1 = time.perf_counter()
        time.sleep(1.0)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        during = sum(t0 <= t <= t1 for t in acked)
        restored = restore(info.path, tmp / "restored" / "memory.db", key)
        return {
            "decisions": info.decisions,
            "outcomes": info.outcomes,
            "events": info.events,
            "bulk_load_s": loaded["seconds"],
            "store_bytes": db.stat().st_size,
            "backup_s": info.seconds,
            "backup_bytes": info.bytes,
            "backup_mb_per_s": round(info.bytes / 1e6 / info.seconds, 1),
            "writes_acknowledged_during_backup": during,
            "writer_writes_per_s_outside_backup": None
            if not acked
            else round((len(acked) - during) / max(1e-9, (acked[-1] - acked[0]) - (t1 - t0)), 1),
            "restore_with_full_verification_s": restored.seconds,
            "restored_last_event_id": restored.last_event_id,
            "restored_matches_backup": restored.last_event_id == info.last_event_id and restored.events == info.events,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rotation-phase-s", type=float, default=3.0)
    ap.add_argument("--rekey-decisions", type=int, default=100_000)
    ap.add_argument("--backup-decisions", type=int, default=1_000_000)
    ap.add_argument("--skip", default="", help="comma-separated: rotation, rekey, backup")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    out: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        }
    }
    if "rotation" not in skip:
        out["rotation"] = rotation(args.rotation_phase_s)
    if "rekey" not in skip:
        out["rekey"] = rekey_bench(args.rekey_decisions)
    if "backup" not in skip:
        out["backup"] = backup_bench(args.backup_decisions)
    out["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
