"""Crash safety and multi-process concurrency with real subprocesses on one SQLite file.

The concurrency test runs for MEM_CONCURRENCY_SECONDS (default 60, as the issue asks: "two
processes writing ... at once for a minute"); set it lower for a quick local run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from mem_memory import MemoryStore

from .helpers import b64, kill_after_lines

WORKER = Path(__file__).with_name("_worker.py")
CONCURRENCY_SECONDS = float(os.environ.get("MEM_CONCURRENCY_SECONDS", "60"))


def _spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _acked(lines: list[str]) -> tuple[set[str], set[str]]:
    d = {line.split()[1] for line in lines if line.startswith("D ")}
    o = {line.split()[1] for line in lines if line.startswith("O ")}
    return d, o


def test_sigkill_mid_stream_loses_no_acknowledged_write(db: Path, key: bytes) -> None:
    env = {"MEM_MEMORY_KEY": b64(key)}
    MemoryStore.open(db, key=key).close()
    proc = _spawn("write", str(db), "CRASH", "0", env=env)
    lines, err = kill_after_lines(proc, 150)
    assert proc.returncode == -signal.SIGKILL, err
    acked_d, acked_o = _acked(lines)
    assert len(acked_d) >= 100, err
    store = MemoryStore.open(db, key=key)
    try:
        assert store.integrity_check() == "ok"
        for did in acked_d:
            d, o = store.get_decision(did)
            assert d.symbol == "CRASH"
            if did in acked_o:
                assert o is not None
        ids = [e.event_id for e in store.events_since(0, limit=1_000_000)]
        assert ids == list(range(1, len(ids) + 1))
    finally:
        store.close()


def test_two_writers_and_a_reader_lose_and_corrupt_nothing(db: Path, tmp_path: Path) -> None:
    MemoryStore.open(db).close()
    done, out = tmp_path / "done", tmp_path / "reader.json"
    reader = _spawn("read", str(db), str(done), str(out))
    writers = [_spawn("write", str(db), s, str(CONCURRENCY_SECONDS)) for s in ("W1", "W2")]
    results = [w.communicate(timeout=CONCURRENCY_SECONDS + 120) for w in writers]
    for w, (_, err) in zip(writers, results):
        assert w.returncode == 0, err
    done.touch()
    _, rerr = reader.communicate(timeout=120)
    assert reader.returncode == 0, rerr
    acked_d: set[str] = set()
    acked_o: set[str] = set()
    for stdout, _ in results:
        lines = stdout.splitlines()
        assert lines[-1] == "DONE"
        d, o = _acked(lines)
        assert d and o
        acked_d |= d
        acked_o |= o
    seen = json.loads(out.read_text())
    assert seen["integrity"] == "ok"
    assert seen["ids"] == list(range(1, len(seen["ids"]) + 1))  # no gap, no repeat
    assert set(seen["decisions"]) == acked_d and len(seen["decisions"]) == len(acked_d)
    assert set(seen["outcomes"]) == acked_o and len(seen["outcomes"]) == len(acked_o)
    assert seen["symbols_seen_live"] == ["W1", "W2"]  # the reader's index saw both while they wrote
    store = MemoryStore.open(db)
    try:
        assert store.integrity_check() == "ok"
        assert store.counts() == {"decisions": len(acked_d), "outcomes": len(acked_o)}
    finally:
        store.close()
