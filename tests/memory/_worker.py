"""Subprocess worker for the crash and concurrency tests (run as a script, not collected).

write <db> <symbol> <seconds>  : enhance + record_outcome in a loop; prints "D <id>" / "O <id>"
                                 after each acknowledged (committed) write; seconds <= 0: forever
write-async <db> <symbol> <s>  : enhance_async through the writer process, 16 callers; prints
                                 "PID <writer pid>", then "D <id>" per acknowledged decision
read <db> <done-file> <out>    : follows the event log with a cursor until <done-file> exists,
                                 then catches up and writes what it saw as JSON to <out>
The key, if any, comes from MEM_MEMORY_KEY.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mem_memory import MemoryConfig, MemoryEngine, MemoryStore, Outcome, SignalRequest, key_from_env  # noqa: E402


def write(db: str, symbol: str, seconds: float) -> None:
    engine = MemoryEngine(MemoryStore.open(db, key=key_from_env()), MemoryConfig(refresh_interval_s=0.5))
    end = time.monotonic() + seconds if seconds > 0 else float("inf")
    t0 = datetime(2026, 2, 1, tzinfo=UTC)
    i = 0
    out = sys.stdout
    while time.monotonic() < end:
        features = {"rsi14": 30.0 + (i * 7) % 40, "hl_range": 0.001 * (i % 9), "sma20": 0.001 * ((i % 11) - 5)}
        d = engine.enhance(
            SignalRequest(
                symbol,
                "BUY" if i % 2 else "SELL",
                0.7,
                100.0 + i,
                t0 + timedelta(seconds=i),
                "momentum",
                0.75,
                "bullish",
                "1",
                features,
            )
        )
        out.write(f"D {d.decision_id}\n")
        out.flush()
        if i % 2 == 0:
            pnl = 0.01 if i % 3 else -0.01
            engine.record_outcome(
                Outcome(
                    d.decision_id,
                    d.price,
                    d.price * (1 + pnl),
                    d.size or 0.01,
                    pnl * 100,
                    pnl,
                    "tp",
                    d.time + timedelta(seconds=1),
                )
            )
            out.write(f"O {d.decision_id}\n")
            out.flush()
        i += 1
    out.write("DONE\n")
    out.flush()


def write_async(db: str, symbol: str, seconds: float) -> None:
    """Decisions through ``enhance_async`` and the writer process, 16 callers at once; prints
    "PID <writer pid>" first, then "D <id>" after each acknowledged decision."""
    import asyncio

    engine = MemoryEngine(MemoryStore.open(db, key=key_from_env()), writer_process=True)
    engine.start_writer()
    out = sys.stdout
    out.write(f"PID {engine._async.writer.pid}\n")  # type: ignore[union-attr]
    out.flush()
    end = time.monotonic() + seconds if seconds > 0 else float("inf")
    t0 = datetime(2026, 2, 1, tzinfo=UTC)

    async def caller(k: int) -> None:
        i = 0
        while time.monotonic() < end:
            d = await engine.enhance_async(
                SignalRequest(
                    symbol,
                    "BUY",
                    0.7,
                    100.0 + i,
                    t0 + timedelta(seconds=i),
                    "momentum",
                    0.75,
                    "bullish",
                    "1",
                    {"rsi14": 30.0 + (i * 7) % 40},
                )
            )
            out.write(f"D {d.decision_id}\n")
            out.flush()
            i += 1

    async def main() -> None:
        await asyncio.gather(*(caller(k) for k in range(16)))

    asyncio.run(main())
    engine.close()
    out.write("DONE\n")
    out.flush()


def read(db: str, done_file: str, out_path: str) -> None:
    store = MemoryStore.open(db, key=key_from_env())
    engine = MemoryEngine(store, MemoryConfig(refresh_interval_s=0.2))
    cursor = 0
    ids: list[int] = []
    decisions: list[str] = []
    outcomes: list[str] = []
    symbols_seen: set[str] = set()

    def catch_up() -> None:
        nonlocal cursor
        while True:
            batch = store.events_since(cursor, limit=500)
            if not batch:
                return
            for e in batch:
                ids.append(e.event_id)
                if e.kind == "decision":
                    decisions.append(e.payload["decision_id"])
                elif e.kind == "outcome":
                    outcomes.append(e.payload["decision_id"])
            cursor = batch[-1].event_id

    while not Path(done_file).exists():
        catch_up()
        for s in ("W1", "W2"):
            if engine.recent_decisions(s, 50):
                symbols_seen.add(s)
        time.sleep(0.2)
    catch_up()
    Path(out_path).write_text(
        json.dumps(
            {
                "ids": ids,
                "decisions": decisions,
                "outcomes": outcomes,
                "symbols_seen_live": sorted(symbols_seen),
                "integrity": store.integrity_check(),
            }
        )
    )


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "write":
        write(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    elif mode == "write-async":
        write_async(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    elif mode == "read":
        read(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(f"unknown mode {mode}")
