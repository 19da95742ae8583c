"""The candles table on a real QuestDB: round trip, idempotence, windows, latest, clear errors."""
from __future__ import annotations

import pandas as pd
import psycopg
import pytest

from mem_pipelines.ingest.synthetic import synthetic_candles
from mem_pipelines.questdb import store
from mem_pipelines.questdb.store import CandleStoreError
from mem_pipelines.settings import QuestDBSettings

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
    assert list(store.read_candles(fresh_questdb, "BTCUSDT").columns) == ["ts", "open", "high", "low", "close", "volume"]
    assert store.list_symbols(fresh_questdb) == []


def test_unreachable_server_is_named(questdb):
    from mem_pipelines.questdb.local import free_port

    port = free_port()
    with pytest.raises(CandleStoreError, match=f"127.0.0.1:{port}.*mem questdb start"):
        store.read_candles(QuestDBSettings(pg_port=port), "BTCUSDT")
    with pytest.raises(CandleStoreError, match=f"127.0.0.1:{port}"):
        store.write_candles(QuestDBSettings(http_port=port, pg_port=questdb.pg_port), _frame(days=0.1))
