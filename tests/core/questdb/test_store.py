"""The candles table on a real QuestDB: round trip, idempotence, windows, latest, clear errors."""

from __future__ import annotations

import pandas as pd
import psycopg
import pytest

from mem_core.questdb import store
from mem_core.questdb.store import CandleStoreError
from mem_core.settings import QuestDBSettings
from mem_pipelines.ingest.synthetic import synthetic_candles

END = "2026-01-10T00:00:00Z"


def _frame(symbols=("BTCUSDT", "ETHUSDT"), days=3, seed=1):
    return synthetic_candles(list(symbols), days, seed, END)


def test_table_has_wal_dedup_and_day_partitions(fresh_questdb):
    store.ensure_candles_table(fresh_questdb)
    store.ensure_candles_table(fresh_questdb)  # idempotent
    with psycopg.connect(**fresh_questdb.pg_conninfo()) as conn:
        row = conn.execute(
            "SELECT designatedTimestamp, partitionBy, walEnabled, dedup FROM tables() WHERE table_name = 'candles'"
        ).fetchone()
    assert row == ("ts", "DAY", True, True)


def test_write_then_read_back_exactly(fresh_questdb):
    frame = _frame()
    assert store.write_candles(fresh_questdb, frame) == len(frame)
    for sym, expected in frame.groupby("symbol"):
        got = store.read_candles(fresh_questdb, sym)
        want = expected.drop(columns="symbol").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want)
        assert str(got["ts"].dtype) == "datetime64[us, UTC]"
        assert got["ts"].is_monotonic_increasing and isinstance(got.index, pd.RangeIndex)
    assert store.list_symbols(fresh_questdb) == ["BTCUSDT", "ETHUSDT"]

    # Same rows again: DEDUP UPSERT keeps the table unchanged.
    store.write_candles(fresh_questdb, frame)
    assert store.count_candles(fresh_questdb) == len(frame)


def test_window_is_half_open_and_latest_is_ascending(fresh_questdb):
    frame = _frame(symbols=("BTCUSDT",), days=1)
    store.write_candles(fresh_questdb, frame)
    ts = frame["ts"]
    got = store.read_candles(fresh_questdb, "BTCUSDT", start=ts.iloc[10], end=ts.iloc[20])
    assert list(got["ts"]) == list(ts.iloc[10:20])
    naive = store.read_candles(fresh_questdb, "BTCUSDT", start=ts.iloc[10].tz_localize(None))
    assert len(naive) == len(frame) - 10
    latest = store.read_latest(fresh_questdb, "BTCUSDT", 5)
    pd.testing.assert_frame_equal(latest, frame.drop(columns="symbol").iloc[-5:].reset_index(drop=True))
    assert store.read_latest(fresh_questdb, "NOSUCH", 5).empty


def test_reads_on_a_missing_table_are_empty(fresh_questdb):
    assert store.read_candles(fresh_questdb, "BTCUSDT").empty
    assert list(store.read_candles(fresh_questdb, "BTCUSDT").columns) == [
        "ts",
        "open",
        "high",
        "low",
        "close",
        "volume",
    ]
    assert store.list_symbols(fresh_questdb) == []


def test_unreachable_server_is_named(questdb):
    from mem_core.questdb.local import free_port

    port = free_port()
    with pytest.raises(CandleStoreError, match=f"127.0.0.1:{port}.*mem questdb start"):
        store.read_candles(QuestDBSettings(pg_port=port), "BTCUSDT")
    with pytest.raises(CandleStoreError, match=f"127.0.0.1:{port}"):
        store.write_candles(QuestDBSettings(http_port=port, pg_port=questdb.pg_port), _frame(days=0.1))


# ---- CandleReader: kept-open connections for repeated reads (serving) ------------------------

import dataclasses  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


class _Connects:
    """Counts the PG connections the store opens."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = store._connect

        def counting(settings: QuestDBSettings):
            self.count += 1
            return real(settings)

        monkeypatch.setattr(store, "_connect", counting)


class _DroppingProxy:
    """A TCP relay in front of QuestDB's PG port that can drop every relayed connection (what a
    QuestDB restart or a network reset does to a client) and refuse new ones for a while."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.refusing = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def drop_all(self) -> None:
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.listener.close()
        self.drop_all()


def test_reader_returns_what_the_plain_functions_return(fresh_questdb):
    with store.CandleReader(fresh_questdb) as reader:
        assert reader.read_latest("BTCUSDT", 5).empty  # no table yet: empty, like read_latest
        frame = _frame(days=1)
        store.write_candles(fresh_questdb, frame)
        for sym in ("BTCUSDT", "ETHUSDT", "NOSUCH"):
            for n in (0, 1, 5, 288, 10_000):
                want = store.read_latest(fresh_questdb, sym, n)
                pd.testing.assert_frame_equal(reader.read_latest(sym, n), want)
                ts_us, ohlcv = reader.read_latest_arrays(sym, n)
                assert ts_us.dtype == np.int64 and ohlcv.dtype == np.float64 and ohlcv.shape == (len(want), 5)
                assert ohlcv.flags.c_contiguous
                np.testing.assert_array_equal(ts_us, want["ts"].astype("int64").to_numpy())
                np.testing.assert_array_equal(ohlcv, want[list(store.PRICE_COLUMNS)].to_numpy())
        ts = frame["ts"]
        pd.testing.assert_frame_equal(
            reader.read_candles("BTCUSDT", start=ts.iloc[10], end=ts.iloc[20]),
            store.read_candles(fresh_questdb, "BTCUSDT", start=ts.iloc[10], end=ts.iloc[20]),
        )
        pd.testing.assert_frame_equal(reader.read_candles("ETHUSDT"), store.read_candles(fresh_questdb, "ETHUSDT"))


def test_reader_reuses_one_connection(fresh_questdb, monkeypatch):
    store.write_candles(fresh_questdb, _frame(symbols=("BTCUSDT",), days=1))
    connects = _Connects(monkeypatch)
    with store.CandleReader(fresh_questdb) as reader:
        first = reader.read_latest("BTCUSDT", 50)
        conn = reader._idle[0]
        for _ in range(30):
            pd.testing.assert_frame_equal(reader.read_latest("BTCUSDT", 50), first)
        reader.read_latest("NOSUCH", 5)
        assert reader._idle == [conn] and not conn.closed
    assert connects.count == 1
    assert conn.closed  # close() closed it
    # The module-level function still opens (and closes) one per call.
    store.read_latest(fresh_questdb, "BTCUSDT", 5)
    store.read_latest(fresh_questdb, "BTCUSDT", 5)
    assert connects.count == 3


def test_reader_recovers_a_dropped_connection(fresh_questdb, monkeypatch):
    store.write_candles(fresh_questdb, _frame(symbols=("BTCUSDT",), days=1))
    want = store.read_latest(fresh_questdb, "BTCUSDT", 100)
    proxy = _DroppingProxy(fresh_questdb.pg_port)
    settings = dataclasses.replace(fresh_questdb, pg_port=proxy.port)
    connects = _Connects(monkeypatch)
    try:
        with store.CandleReader(settings) as reader:
            pd.testing.assert_frame_equal(reader.read_latest("BTCUSDT", 100), want)
            stale = reader._idle[0]

            proxy.drop_all()  # the server side goes away under an idle connection
            pd.testing.assert_frame_equal(reader.read_latest("BTCUSDT", 100), want)
            assert connects.count == 2 and stale.closed and reader._idle != [stale]

            # "Restart": connections dropped and the port refusing; the read fails with the
            # store's error naming the server, then works again once the server is back.
            proxy.drop_all()
            proxy.refusing = True
            with pytest.raises(CandleStoreError, match=f"127.0.0.1:{proxy.port}"):
                reader.read_latest("BTCUSDT", 100)
            proxy.refusing = False
            time.sleep(reader.retry_in())  # the reader's back-off after a failed connect
            pd.testing.assert_frame_equal(reader.read_latest("BTCUSDT", 100), want)
            assert len(reader._idle) == 1

            # A connection closed on the client side is replaced as well.
            reader._idle[0].close()
            pd.testing.assert_frame_equal(reader.read_latest("BTCUSDT", 100), want)
    finally:
        proxy.close()


def test_reader_after_a_restart_with_several_idle_connections(fresh_questdb):
    """Every idle connection is stale after a restart: the one retry must not take another."""
    store.write_candles(fresh_questdb, _frame(symbols=("BTCUSDT",), days=1))
    want = store.read_latest(fresh_questdb, "BTCUSDT", 10)
    proxy = _DroppingProxy(fresh_questdb.pg_port)
    try:
        with store.CandleReader(dataclasses.replace(fresh_questdb, pg_port=proxy.port)) as reader:
            conns = [reader._acquire() for _ in range(3)]
            for c in conns:
                reader._release(c)
            assert len(reader._idle) == 3
            proxy.drop_all()
            for _ in range(4):
                pd.testing.assert_frame_equal(reader.read_latest("BTCUSDT", 10), want)
    finally:
        proxy.close()


def test_reader_is_thread_safe(fresh_questdb, monkeypatch):
    store.write_candles(fresh_questdb, _frame(days=1))
    want = {s: store.read_latest(fresh_questdb, s, 200) for s in ("BTCUSDT", "ETHUSDT")}
    connects = _Connects(monkeypatch)
    errors: list[BaseException] = []
    with store.CandleReader(fresh_questdb, max_idle=4) as reader:

        def work(sym: str) -> None:
            try:
                for _ in range(15):
                    pd.testing.assert_frame_equal(reader.read_latest(sym, 200), want[sym])
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(s,)) for s in ("BTCUSDT", "ETHUSDT") * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        # At most one connection per concurrent reader, all kept (4 <= max_idle).
        assert connects.count <= len(threads) and len(reader._idle) == connects.count


def test_an_unreachable_server_is_tried_once_per_back_off(monkeypatch):
    """While QuestDB is down, reads fail at once with the last error instead of each opening a
    connection; the back-off doubles while it stays down."""
    from mem_core.questdb.local import free_port

    port = free_port()
    connects = _Connects(monkeypatch)
    with store.CandleReader(QuestDBSettings(pg_port=port), backoff_s=(0.2, 0.4)) as down:
        with pytest.raises(CandleStoreError, match=f"cannot reach .*127.0.0.1:{port}"):
            down.read_latest("BTCUSDT", 1)
        assert connects.count == 1 and 0.1 < down.retry_in() <= 0.2
        for _ in range(50):
            with pytest.raises(CandleStoreError, match=r"cannot reach .*next attempt in 0\.\d\d s"):
                down.read_latest("BTCUSDT", 1)
        assert connects.count == 1  # no connect during the back-off
        time.sleep(down.retry_in())
        with pytest.raises(CandleStoreError, match="cannot reach"):
            down.read_latest("BTCUSDT", 1)
        assert connects.count == 2 and 0.3 < down.retry_in() <= 0.4  # doubled, capped at 0.4


def test_closed_and_unreachable_readers_raise_the_store_error(questdb):
    from mem_core.questdb.local import free_port

    reader = store.CandleReader(questdb)
    reader.read_latest("BTCUSDT", 1)
    reader.close()
    reader.close()  # idempotent
    assert reader.closed and reader._idle == []
    with pytest.raises(CandleStoreError, match="closed"):
        reader.read_latest("BTCUSDT", 1)
    port = free_port()
    with store.CandleReader(QuestDBSettings(pg_port=port)) as down:
        with pytest.raises(CandleStoreError, match=f"127.0.0.1:{port}.*mem questdb start"):
            down.read_latest("BTCUSDT", 1)
