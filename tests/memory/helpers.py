"""Memory test helpers: frozen times, deterministic records, a worker killer."""

from __future__ import annotations

import base64
import subprocess
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from mem_memory import Decision, Outcome, SignalRequest
from mem_memory.backend import PgConnection, is_postgres
from mem_testing import records

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
FEATURES = {
    "sma5": 0.001,
    "sma20": 0.002,
    "sma50": 0.004,
    "rsi14": 62.0,
    "macd": 0.0005,
    "macd_signal": 0.0004,
    "macd_hist": 0.0001,
    "bb_position": 0.6,
    "volume_ratio": 1.1,
    "hl_range": 0.008,
    "close_position": 0.5,
    "oc_range": 0.001,
}


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def request(
    symbol: str = "BTCUSDT",
    action: str = "BUY",
    base: float = 0.65,
    ml: float | None = 0.78,
    direction: str | None = "bullish",
    features: Mapping[str, float] | None = None,
    time: datetime = T0,
    price: float = 100.0,
    strategy: str = "momentum",
) -> SignalRequest:
    return SignalRequest(
        symbol=symbol,
        action=action,
        base_confidence=base,
        price=price,
        time=time,
        strategy=strategy,
        ml_confidence=ml,
        ml_direction=direction,
        model_version="7",
        features=dict(FEATURES if features is None else features),
    )


def outcome(decision: Decision, pnl_pct: float, time: datetime | None = None, reason: str = "take_profit") -> Outcome:
    entry = decision.price
    sign = 1.0 if decision.action != "SELL" else -1.0
    exit_price = entry * (1 + sign * pnl_pct)
    size = decision.size or 0.01
    return Outcome(
        decision_id=decision.decision_id,
        entry_price=entry,
        exit_price=exit_price,
        size=size,
        pnl=pnl_pct * size * 10_000,
        pnl_pct=pnl_pct,
        exit_reason=reason,
        time=time or decision.time + timedelta(minutes=30),
    )


def make_decision(
    i: int,
    symbol: str = "BTCUSDT",
    action: str = "BUY",
    features: Mapping[str, float] | None = None,
    time: datetime | None = None,
    decision_id: str | None = None,
) -> Decision:
    """A stored-form decision without the engine (bulk loads, discovery histories)."""
    return records.decision(
        i,
        decision_id=decision_id or f"d{i:08d}",
        time=time or T0 + timedelta(minutes=i),
        symbol=symbol,
        action=action,
        base_action=action,
        features=dict(features or FEATURES),
    )


def kill_after_lines(proc: subprocess.Popen[str], n: int, seconds: float = 60.0) -> tuple[list[str], str]:
    """Read ``n`` lines of a worker's output (or until it stops or ``seconds`` pass), SIGKILL it
    mid-stream and return every line it printed and its stderr."""
    import signal
    import time as _time

    assert proc.stdout is not None
    lines: list[str] = []
    deadline = _time.monotonic() + seconds
    while len(lines) < n and _time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
    proc.send_signal(signal.SIGKILL)  # in the middle of the stream: the worker never stops on its own
    rest, err = proc.communicate(timeout=30)
    return lines + rest.splitlines(), err


def flip_stored_bit(db: Path, event_id: int, needle: bytes | None = None) -> None:
    """Flip the lowest bit of one byte of a stored payload, as a bad disk or a stray write would:
    the byte after ``needle`` (a clear store's JSON), else the middle byte (an encrypted one).
    The store must be closed."""
    conn = raw_connect(db)
    try:
        blob = bytearray(conn.execute("SELECT payload FROM events WHERE event_id = ?", (event_id,)).fetchone()[0])
        at = blob.index(needle) + len(needle) if needle is not None else len(blob) // 2
        blob[at] ^= 1
        conn.execute("UPDATE events SET payload = ? WHERE event_id = ?", (bytes(blob), event_id))
        conn.commit()
    finally:
        conn.close()


# ---------------------------------------------------------------- both engines
class _PgRaw(PgConnection):
    """A raw connection to a PostgreSQL store with sqlite3's ``commit`` (autocommit: a no-op)."""

    def commit(self) -> None:
        pass


def raw_connect(db: Path | str) -> Any:
    """A connection below the store's API (to tamper with rows, or count them): ``sqlite3`` for a
    file, else a psycopg connection with the same ``execute(sql with ?)`` surface."""
    if isinstance(db, str) and is_postgres(db):
        return _PgRaw(psycopg.connect(db, autocommit=True))
    import sqlite3

    return sqlite3.connect(db)


def stored_bytes(db: Path | str) -> bytes:
    """Every byte the store keeps on disk: a SQLite file and its WAL, or (after a CHECKPOINT) the
    files of every relation of the PostgreSQL database, tables, TOAST tables and indexes, read with
    ``pg_read_binary_file``."""
    if isinstance(db, str) and is_postgres(db):
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
            rows = conn.execute(
                "SELECT pg_relation_filepath(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 't', 'i') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                "AND pg_relation_filepath(c.oid) IS NOT NULL"
            ).fetchall()
            out = []
            for (path,) in rows:
                size = conn.execute("SELECT (pg_stat_file(%s, true)).size", (path,)).fetchone()[0]
                if size:
                    out.append(conn.execute("SELECT pg_read_binary_file(%s)", (path,)).fetchone()[0])
        assert out, "no relation files found"
        return b"".join(out)
    p = Path(db)
    wal = Path(f"{p}-wal")
    return p.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def sibling(db: Path | str, name: str) -> Path | str:
    """Another, new store beside ``db``: a file in the same folder, or a new database on the same
    PostgreSQL server."""
    if isinstance(db, str) and is_postgres(db):
        base, _ = db.rsplit("/", 1)
        new = f"{name.replace('.', '_')}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{new}"')
        return f"{base}/{new}"
    return Path(db).with_name(name)
