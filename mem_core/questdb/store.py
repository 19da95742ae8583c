"""The ``candles`` table: create it, write candle frames with ILP over HTTP, read them over PG wire.

Writes use the official ``questdb`` client (dataframe API, ILP over HTTP) and return only once
the WAL has applied them, so a read right after sees the rows. Reads use psycopg 3 with bound
parameters only (never SQL built from input) and a binary cursor; timestamps travel as integer
microseconds and become a tz-aware UTC ``datetime64[us, UTC]`` column.

Every failure surfaces as :class:`CandleStoreError` with a message that names the server
(``host:port``) and what to do, not a driver traceback.
"""

from __future__ import annotations

import threading
import time
import weakref
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from mem_core.settings import QuestDBSettings
from mem_core.times import utc_timestamp

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


def _is_normal(frame: pd.DataFrame) -> bool:
    """Whether ``frame`` already is what ``_normalise`` makes (so a hot writer can skip the copies)."""
    return (
        list(frame.columns) == ["symbol", *PRICE_COLUMNS, "ts"]
        and isinstance(frame["symbol"].dtype, pd.CategoricalDtype)
        and all(frame[c].dtype == np.float64 for c in PRICE_COLUMNS)
        and frame["ts"].dtype == "datetime64[us, UTC]"
        and isinstance(frame.index, pd.RangeIndex)
    )


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


def _fetch(conn: psycopg.Connection, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with conn.cursor(binary=True) as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def _select(settings: QuestDBSettings, what: str, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with _connect(settings) as conn:
        try:
            return _fetch(conn, sql, params)
        except psycopg.Error as exc:
            if _missing_table(exc):
                return []
            raise _query_error(settings, what, exc) from None


def _candles_query(
    symbol: str,
    start: datetime | pd.Timestamp | str | None,
    end: datetime | pd.Timestamp | str | None,
) -> tuple[str, str, list[Any]]:
    sql, params = _SELECT + " WHERE symbol = %s", [symbol]
    if start is not None:
        sql += " AND ts >= %s"
        params.append(utc_timestamp(start).to_pydatetime())
    if end is not None:
        sql += " AND ts < %s"
        params.append(utc_timestamp(end).to_pydatetime())
    return f"reading candles of {symbol}", sql + " ORDER BY ts", params


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _latest_query(symbol: str, n: int, until: datetime | None = None) -> tuple[str, str, list[Any]]:
    if until is None:
        return (
            f"reading the latest {n} candles of {symbol}",
            _SELECT + " WHERE symbol = %s ORDER BY ts DESC LIMIT %s",
            [symbol, int(n)],
        )
    return (
        f"reading the latest {n} candles of {symbol} up to {until.isoformat()}",
        _SELECT + " WHERE symbol = %s AND ts <= %s ORDER BY ts DESC LIMIT %s",
        [symbol, until, int(n)],
    )


def _latest_frame(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    rows.reverse()
    return _frame(rows)


def read_candles(
    settings: QuestDBSettings,
    symbol: str,
    start: datetime | pd.Timestamp | str | None = None,
    end: datetime | pd.Timestamp | str | None = None,
) -> pd.DataFrame:
    """Candles of ``symbol`` with ``start <= ts < end`` (either bound optional), ascending.

    Naive bounds are taken as UTC. A symbol with no candles (or no table yet) gives an empty frame.
    """
    return _frame(_select(settings, *_candles_query(symbol, start, end)))


def read_latest(settings: QuestDBSettings, symbol: str, n: int) -> pd.DataFrame:
    """The newest ``n`` candles of ``symbol``, ascending (fewer when fewer are stored).

    Opens a connection for this one read (a few ms); repeated readers (serving) use
    :class:`CandleReader`, which keeps one open.
    """
    if n <= 0:
        return empty_candles()
    return _latest_frame(_select(settings, *_latest_query(symbol, n)))


def list_symbols(settings: QuestDBSettings) -> list[str]:
    """The symbols with at least one stored candle, sorted."""
    rows = _select(settings, "listing symbols", "SELECT DISTINCT symbol FROM candles", [])
    return sorted(r[0] for r in rows if r[0] is not None)


def count_candles(settings: QuestDBSettings, symbol: str | None = None) -> int:
    """Stored candles, of one symbol or all."""
    if symbol is None:
        rows = _select(settings, "counting candles", "SELECT count() FROM candles", [])
    else:
        rows = _select(
            settings, f"counting candles of {symbol}", "SELECT count() FROM candles WHERE symbol = %s", [symbol]
        )
    return int(rows[0][0]) if rows else 0


def newest_candle_times(settings: QuestDBSettings, symbols: list[str] | None = None) -> dict[str, pd.Timestamp]:
    """Per symbol (of ``symbols``, or all), the open time of its newest stored candle (UTC);
    symbols with no candles are absent."""
    sql, params = "SELECT symbol, ts::long FROM candles", []
    if symbols is not None:
        if not symbols:
            return {}
        sql += " WHERE symbol IN (" + ", ".join(["%s"] * len(symbols)) + ")"
        params = list(symbols)
    rows = _select(
        settings, "reading the newest candle of each symbol", sql + " LATEST ON ts PARTITION BY symbol", params
    )
    return {r[0]: pd.Timestamp(int(r[1]), unit="us", tz="UTC") for r in rows if r[0] is not None}


class CandleReader:
    """Reads over PG wire on kept-open connections, for a process that reads again and again
    (serving's ``PredictReversal`` with a symbol alone): no connection set-up per read.

    ``read_latest`` / ``read_candles`` return exactly what the module functions return and raise
    the same :class:`CandleStoreError`. Thread-safe: a read takes an idle connection (or opens
    one), so concurrent reads do not wait for each other, and gives it back afterwards; at most
    ``max_idle`` stay open between reads. A connection the server dropped (QuestDB restarted, a
    network reset) is discarded and the read retried once on a new connection (reads are
    idempotent); a second failure raises. ``close()`` closes the idle connections, and ones in
    use when they come back; a closed reader refuses to read. Also a context manager.

    While QuestDB cannot be reached, the reader tries to connect at most once per back-off
    (``backoff_s``: from 0.25 s, doubling to 4 s while it stays down, reset by a connection that
    opens); reads in between raise at once with the last error. Under load every call that needs
    QuestDB would otherwise open a connection of its own to a server that is not there.
    """

    def __init__(
        self, settings: QuestDBSettings, *, max_idle: int = 4, backoff_s: tuple[float, float] = (0.25, 4.0)
    ) -> None:
        self.settings = settings
        self.max_idle = max(1, int(max_idle))
        self.backoff_s = backoff_s
        self._lock = threading.Lock()
        self._idle: list[psycopg.Connection] = []
        self._closed = False
        self._down: CandleStoreError | None = None  # the last failed connect, while backing off
        self._retry_at = 0.0  # time.monotonic() of the next connect attempt allowed
        self._backoff = backoff_s[0]
        # Connections still idle when the reader is garbage-collected get closed too.
        self._finalizer = weakref.finalize(self, _close_all, self._idle)

    def __enter__(self) -> CandleReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def read_latest(self, symbol: str, n: int) -> pd.DataFrame:
        """As :func:`read_latest`: the newest ``n`` candles of ``symbol``, ascending."""
        if n <= 0:
            return empty_candles()
        return _latest_frame(self._select(*_latest_query(symbol, n)))

    def read_latest_arrays(self, symbol: str, n: int, until_ms: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``read_latest`` as numpy, without the cost of a DataFrame: ``ts_us``
        (int64 epoch microseconds, shape ``(k,)``) and ``ohlcv`` (float64, shape ``(k, 5)``,
        columns ``PRICE_COLUMNS``), ascending, ``k <= n``; both empty when nothing is stored.
        ``until_ms``: only candles opened at or before it (epoch milliseconds)."""
        until = None if until_ms is None else _EPOCH + timedelta(milliseconds=int(until_ms))
        rows = self._select(*_latest_query(symbol, n, until)) if n > 0 else []
        if not rows:
            return np.empty(0, dtype=np.int64), np.empty((0, len(PRICE_COLUMNS)), dtype=np.float64)
        block = np.array(rows, dtype=np.float64)[::-1]
        return block[:, 0].astype(np.int64), np.ascontiguousarray(block[:, 1:])

    def read_candles(
        self,
        symbol: str,
        start: datetime | pd.Timestamp | str | None = None,
        end: datetime | pd.Timestamp | str | None = None,
    ) -> pd.DataFrame:
        """As :func:`read_candles`: ``start <= ts < end``, ascending."""
        return _frame(self._select(*_candles_query(symbol, start, end)))

    def close(self) -> None:
        """Close every idle connection now and each busy one when its read ends. Idempotent."""
        with self._lock:
            self._closed = True
            idle = list(self._idle)
            self._idle.clear()
        _close_all(idle)

    def retry_in(self) -> float:
        """Seconds until the reader tries to connect again (0: it would try now)."""
        with self._lock:
            return max(0.0, self._retry_at - time.monotonic()) if self._down is not None else 0.0

    def _acquire(self, fresh: bool = False) -> psycopg.Connection:
        """An idle connection, or a new one (opened outside the lock) when none is or ``fresh``;
        during a back-off, the last connect error at once."""
        with self._lock:
            if self._closed:
                raise CandleStoreError(f"the candle reader for {_pg_where(self.settings)} is closed")
            if self._idle and not fresh:
                return self._idle.pop()
            if self._down is not None:
                left = self._retry_at - time.monotonic()
                if left > 0:
                    raise CandleStoreError(f"{self._down} (next attempt in {left:.2f} s)")
        try:
            conn = _connect(self.settings)
        except CandleStoreError as exc:
            with self._lock:
                self._backoff = self.backoff_s[0] if self._down is None else min(self._backoff * 2, self.backoff_s[1])
                self._down, self._retry_at = exc, time.monotonic() + self._backoff
            raise
        with self._lock:
            self._down, self._backoff = None, self.backoff_s[0]
        return conn

    def _release(self, conn: psycopg.Connection) -> None:
        with self._lock:
            if not self._closed and not conn.closed and len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def _select(self, what: str, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        retried = False
        while True:
            # The retry opens a new connection: after a server restart every idle one is stale.
            conn = self._acquire(fresh=retried)
            try:
                rows = _fetch(conn, sql, params)
            except psycopg.Error as exc:
                if conn.broken or conn.closed:
                    conn.close()
                    if not retried:
                        retried = True  # the server dropped it: one retry on a new connection
                        continue
                    raise _query_error(self.settings, what, exc) from None
                self._release(conn)  # a query error leaves the (autocommit) connection usable
                if _missing_table(exc):
                    return []
                raise _query_error(self.settings, what, exc) from None
            except BaseException:
                conn.close()  # interrupted mid-read: the protocol state is unknown
                raise
            self._release(conn)
            return rows


class CandleWriter:
    """Writes candle frames over ILP/HTTP on one kept-open sender, for a process that writes again
    and again (serving's candle write-behind): no sender set-up and no table check per write.

    ``write(frame)`` takes what ``write_candles`` takes and returns once QuestDB has committed the
    rows to the table's WAL (durable; readable once applied, ``wait_for_wal``), without waiting for
    the apply. The table is created on the first write and checked again after any failure. A
    failure (server down, refused write) raises :class:`CandleStoreError` and drops the sender;
    the next write starts a new one, so a batch can simply be written again (DEDUP UPSERT makes
    that harmless). The client's own retries of a failed request stop after ``retry_timeout_s``.
    Not thread-safe: one writer thread. ``close()`` is idempotent.
    """

    def __init__(self, settings: QuestDBSettings, *, retry_timeout_s: float = 2.0) -> None:
        self.settings = settings
        self._conf = settings.ilp_conf() + f"retry_timeout={int(retry_timeout_s * 1000)};"
        self._sender: Any = None
        self._table_ready = False

    def write(self, frame: pd.DataFrame) -> int:
        from questdb import QuestDBError, Sender

        data = frame if _is_normal(frame) else _normalise(frame)
        if data.empty:
            return 0
        where = f"QuestDB HTTP/ILP at {self.settings.host}:{self.settings.http_port}"
        try:
            if not self._table_ready:
                ensure_candles_table(self.settings)
                self._table_ready = True
            if self._sender is None:
                self._sender = Sender.from_conf(self._conf, auto_flush=False)
                self._sender.establish()
            for start in range(0, len(data), _ROWS_PER_FLUSH):
                self._sender.dataframe(
                    data.iloc[start : start + _ROWS_PER_FLUSH], table_name=TABLE, symbols=["symbol"], at="ts"
                )
                self._sender.flush()
        except QuestDBError as exc:
            self.close()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CandleStoreError(f"writing {len(data)} candles to {where} failed: {first}") from None
        except CandleStoreError:
            self.close()
            raise
        return len(data)

    def close(self) -> None:
        """Drop the sender (its unsent rows with it); the next write starts afresh."""
        sender, self._sender, self._table_ready = self._sender, None, False
        if sender is not None:
            try:
                sender.close(flush=False)
            except Exception:  # noqa: BLE001 - closing a sender to a dead server must not raise
                pass


def _close_all(conns: list[psycopg.Connection]) -> None:
    for conn in list(conns):
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - closing a dead socket must not raise
            pass
    conns.clear()
