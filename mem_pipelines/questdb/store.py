"""The ``candles`` table: create it, write candle frames with ILP over HTTP, read them over PG wire.

Writes use the official ``questdb`` client (dataframe API, ILP over HTTP) and return only once
the WAL has applied them, so a read right after sees the rows. Reads use psycopg 3 with bound
parameters only (never SQL built from input) and a binary cursor; timestamps travel as integer
microseconds and become a tz-aware UTC ``datetime64[us, UTC]`` column.

Every failure surfaces as :class:`CandleStoreError` with a message that names the server
(``host:port``) and what to do, not a driver traceback.
"""
from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from mem_pipelines.settings import QuestDBSettings

TABLE = "candles"
PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
CANDLE_COLUMNS = ("ts", *PRICE_COLUMNS)

CREATE_CANDLES = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    "ts TIMESTAMP, symbol SYMBOL, open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE"
    ") TIMESTAMP(ts) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts, symbol)"
)

# Rows per ILP/HTTP request: each request is one transaction; ~100 bytes a row keeps a request
# well under the client's 100 MiB buffer and the server's request limits.
_ROWS_PER_FLUSH = 200_000
_SELECT = "SELECT ts::long, open, high, low, close, volume FROM candles"


class CandleStoreError(RuntimeError):
    """QuestDB could not be reached, refused a write or a query, or did not apply a write in time.

    The message names the server and the operation; callers (CLI, assets) show it as is.
    """


def empty_candles() -> pd.DataFrame:
    """A candle frame with no rows and the contract's dtypes."""
    return pd.DataFrame(
        {"ts": pd.Series([], dtype="datetime64[us, UTC]"), **{c: pd.Series([], dtype="float64") for c in PRICE_COLUMNS}}
    )


def _pg_where(settings: QuestDBSettings) -> str:
    return f"QuestDB PG wire at {settings.host}:{settings.pg_port}"


def _connect(settings: QuestDBSettings) -> psycopg.Connection:
    try:
        return psycopg.connect(**settings.pg_conninfo(), autocommit=True)
    except psycopg.OperationalError as exc:
        hint = "" if settings.external else " (start the local one with `mem questdb start`)"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CandleStoreError(f"cannot reach {_pg_where(settings)}{hint}: {first}") from None


def _query_error(settings: QuestDBSettings, what: str, exc: psycopg.Error) -> CandleStoreError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return CandleStoreError(f"{what} failed on {_pg_where(settings)}: {first}")


def _missing_table(exc: psycopg.Error) -> bool:
    text = str(exc).lower()
    return "does not exist" in text and TABLE in text


def ensure_candles_table(settings: QuestDBSettings) -> None:
    """Create the ``candles`` table (day partitions, WAL, DEDUP UPSERT KEYS(ts, symbol)) if absent."""
    with _connect(settings) as conn:
        try:
            conn.execute(CREATE_CANDLES)
        except psycopg.Error as exc:
            raise _query_error(settings, "creating table candles", exc) from None


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in (*CANDLE_COLUMNS, "symbol") if c not in frame.columns]
    if missing:
        raise CandleStoreError(f"candle frame lacks column(s) {', '.join(missing)}")
    ts = frame["ts"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise CandleStoreError(f"candle frame column ts must be tz-aware UTC, got {ts.dtype}")
    out = pd.DataFrame(
        {
            "symbol": pd.Categorical(frame["symbol"].astype(str)),
            **{c: frame[c].astype("float64") for c in PRICE_COLUMNS},
            "ts": ts.dt.tz_convert("UTC").astype("datetime64[us, UTC]"),
        }
    )
    return out.reset_index(drop=True)


def write_candles(settings: QuestDBSettings, frame: pd.DataFrame, *, wal_timeout: float = 60.0) -> int:
    """Write a candle frame (with a ``symbol`` column); return the rows sent once the WAL applied them.

    Rows with the same (ts, symbol) as stored ones replace them (DEDUP UPSERT), so writing the
    same candles twice leaves the table unchanged.
    """
    from questdb import QuestDBError, Sender  # questdb >= 6: top-level API

    data = _normalise(frame)
    if data.empty:
        return 0
    ensure_candles_table(settings)
    where = f"QuestDB HTTP/ILP at {settings.host}:{settings.http_port}"
    try:
        with Sender.from_conf(settings.ilp_conf(), auto_flush=False) as sender:
            for start in range(0, len(data), _ROWS_PER_FLUSH):
                chunk = data.iloc[start : start + _ROWS_PER_FLUSH]
                sender.dataframe(chunk, table_name=TABLE, symbols=["symbol"], at="ts")
                sender.flush()
    except QuestDBError as exc:
        hint = "" if settings.external else " (is it running? `mem questdb start`)"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CandleStoreError(f"writing {len(data)} candles to {where} failed{hint}: {first}") from None
    wait_for_wal(settings, timeout=wal_timeout)
    return len(data)


def wait_for_wal(settings: QuestDBSettings, timeout: float = 60.0) -> None:
    """Block until the ``candles`` WAL is applied up to the transactions committed before this call.

    The target is the sequencerTxn seen first, so concurrent writers committing later do not
    keep us waiting.
    """
    deadline = time.monotonic() + timeout
    sleep = 0.01
    target: int | None = None
    with _connect(settings) as conn:
        while True:
            try:
                row = conn.execute(
                    "SELECT suspended, writerTxn, sequencerTxn FROM wal_tables() WHERE name = %s", [TABLE]
                ).fetchone()
            except psycopg.Error as exc:
                raise _query_error(settings, "reading wal_tables()", exc) from None
            if row is None:
                return  # no WAL table yet: nothing to wait for
            suspended, writer_txn, sequencer_txn = row
            if suspended:
                raise CandleStoreError(
                    f"table candles on {_pg_where(settings)} is suspended (WAL apply failed); "
                    "see the QuestDB log, then ALTER TABLE candles RESUME WAL"
                )
            target = sequencer_txn if target is None else target
            if writer_txn >= target:
                return
            if time.monotonic() > deadline:
                raise CandleStoreError(
                    f"QuestDB at {settings.host}:{settings.pg_port} did not apply the candles WAL within {timeout:.0f}s "
                    f"(writerTxn {writer_txn} < sequencerTxn {target})"
                )
            time.sleep(sleep)
            sleep = min(sleep * 2, 0.2)


def _frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    if not rows:
        return empty_candles()
    # One float64 block: epoch microseconds stay exact below 2**53 (until the year 2255).
    block = np.array(rows, dtype=np.float64)
    ts = block[:, 0].astype(np.int64)
    out = pd.DataFrame(block[:, 1:], columns=list(PRICE_COLUMNS))
    out.insert(0, "ts", pd.Series(ts.astype("datetime64[us]")).dt.tz_localize("UTC"))
    return out


def _utc(value: datetime | pd.Timestamp | str) -> datetime:
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def _select(settings: QuestDBSettings, what: str, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with _connect(settings) as conn:
        try:
            with conn.cursor(binary=True) as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        except psycopg.Error as exc:
            if _missing_table(exc):
                return []
            raise _query_error(settings, what, exc) from None


def read_candles(
    settings: QuestDBSettings,
    symbol: str,
    start: datetime | pd.Timestamp | str | None = None,
    end: datetime | pd.Timestamp | str | None = None,
) -> pd.DataFrame:
    """Candles of ``symbol`` with ``start <= ts < end`` (either bound optional), ascending.

    Naive bounds are taken as UTC. A symbol with no candles (or no table yet) gives an empty frame.
    """
    sql, params = _SELECT + " WHERE symbol = %s", [symbol]
    if start is not None:
        sql += " AND ts >= %s"
        params.append(_utc(start))
    if end is not None:
        sql += " AND ts < %s"
        params.append(_utc(end))
    sql += " ORDER BY ts"
    return _frame(_select(settings, f"reading candles of {symbol}", sql, params))


def read_latest(settings: QuestDBSettings, symbol: str, n: int) -> pd.DataFrame:
    """The newest ``n`` candles of ``symbol``, ascending (fewer when fewer are stored)."""
    if n <= 0:
        return empty_candles()
    rows = _select(
        settings,
        f"reading the latest {n} candles of {symbol}",
        _SELECT + " WHERE symbol = %s ORDER BY ts DESC LIMIT %s",
        [symbol, int(n)],
    )
    rows.reverse()
    return _frame(rows)


def list_symbols(settings: QuestDBSettings) -> list[str]:
    """The symbols with at least one stored candle, sorted."""
    rows = _select(settings, "listing symbols", "SELECT DISTINCT symbol FROM candles", [])
    return sorted(r[0] for r in rows if r[0] is not None)


def count_candles(settings: QuestDBSettings, symbol: str | None = None) -> int:
    """Stored candles, of one symbol or all."""
    if symbol is None:
        rows = _select(settings, "counting candles", "SELECT count() FROM candles", [])
    else:
        rows = _select(settings, f"counting candles of {symbol}", "SELECT count() FROM candles WHERE symbol = %s", [symbol])
    return int(rows[0][0]) if rows else 0
