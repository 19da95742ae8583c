"""Ingestion into a real QuestDB: shared real candles round-trip exactly; bad input writes nothing."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pandas as pd
import psycopg
import pytest

from mem_core.questdb import store
from mem_pipelines.ingest.load import ingest_csv_files, ingest_synthetic
from mem_pipelines.ingest.validation import IngestError

SHARED = ("BTCUSDT", "ETHUSDT")  # two of the seven shared files (~120k rows each) keep CI time sane


def fingerprint(settings) -> tuple[int, str]:
    """Row count and a checksum of every stored value (order-independent float sums are not exact)."""
    with psycopg.connect(**settings.pg_conninfo()) as conn:
        count = conn.execute("SELECT count() FROM candles").fetchone()[0]
    digest = hashlib.sha256()
    for sym in store.list_symbols(settings):
        digest.update(sym.encode())
        digest.update(pd.util.hash_pandas_object(store.read_candles(settings, sym), index=False).to_numpy().tobytes())
    return count, digest.hexdigest()


def test_shared_candles_round_trip_and_reingest_changes_nothing(fresh_questdb, shared_candles):
    paths = [shared_candles / f"{s}-5m.csv.gz" for s in SHARED]
    results = ingest_csv_files(fresh_questdb, paths)
    assert [r.symbol for r in results] == list(SHARED)
    for path, sym in zip(paths, SHARED):
        src = pd.read_csv(path, dtype={"open_time": "int64"}, float_precision="round_trip")
        got = store.read_candles(fresh_questdb, sym)
        assert len(got) == len(src)
        assert got["ts"].iloc[0] == pd.Timestamp(int(src.open_time.iloc[0]), unit="ms", tz="UTC")
        assert got["ts"].iloc[-1] == pd.Timestamp(int(src.open_time.iloc[-1]), unit="ms", tz="UTC")
        assert (got["ts"].astype("int64").to_numpy() // 1000 == src.open_time.to_numpy()).all()
        cols = ["open", "high", "low", "close", "volume"]
        assert np.array_equal(got[cols].to_numpy(), src[cols].to_numpy())  # bit-identical floats
    before = fingerprint(fresh_questdb)
    ingest_csv_files(fresh_questdb, paths[:1])
    assert fingerprint(fresh_questdb) == before


@pytest.fixture
def stored(fresh_questdb):
    ingest_synthetic(fresh_questdb, ["BTCUSDT", "ETHUSDT"], 2, 11, "2024-01-03T00:00:00Z")
    return fresh_questdb


HEADER = "open_time,open,high,low,close,volume\n"


def body(bad_row: int | None = None, bad: str = "") -> str:
    """Five good rows after a header; row ``bad_row`` (0-based; file line bad_row + 2) replaced by ``bad``."""
    rows = [f"{1_704_067_200_000 + i * 300_000},1.0,2.0,0.5,1.5,3.0" for i in range(5)]
    if bad_row is not None:
        rows[bad_row] = f"{1_704_067_200_000 + bad_row * 300_000},{bad}"
    return HEADER + "\n".join(rows) + "\n"


GOOD = body()


@pytest.mark.parametrize(
    "name, body, message",
    [
        ("BTCUSDT-5m.csv", None, r"cannot read file"),
        ("BTCUSDT-5m.csv", body(2, "1.0,2.0,0.5,oops,3.0"), r":4: malformed row"),
        ("BTCUSDT-5m.csv", body(1, "1.0,0.4,0.5,1.5,3.0"), r":3: high < low"),
        ("BTCUSDT-5m.csv", body(4, "1.0,2.0,0.5,1.5,-3.0"), r":6: negative volume"),
        ("BTCUSDT-2m.csv", GOOD, r"interval 2m \(an unknown interval"),
        ("candles.csv", GOOD, r"cannot tell the symbol from the file name"),
    ],
)
def test_bad_input_is_refused_and_stored_candles_stay(stored, tmp_path, name, body, message):
    before = fingerprint(stored)
    bad = tmp_path / name
    if body is not None:
        bad.write_bytes(gzip.compress(body.encode()))  # gzip even though named .csv: detected by content
    else:
        bad = tmp_path / "missing" / name
    good = tmp_path / "XRPUSDT-5m.csv"
    good.write_text(GOOD)
    with pytest.raises(IngestError, match=f"{bad}.*{message}"):
        ingest_csv_files(stored, [good, bad])  # the good file is not written either
    assert fingerprint(stored) == before
    assert store.list_symbols(stored) == ["BTCUSDT", "ETHUSDT"]


@pytest.mark.parametrize("symbol", ["BAD SYM", "BTC\nUSDT", "A,B C", "X" * 10_000, ""])
def test_a_bad_symbol_writes_nothing(stored, tmp_path, symbol):
    before = fingerprint(stored)
    good = tmp_path / "XRPUSDT-5m.csv"
    good.write_text(GOOD)
    with pytest.raises(IngestError, match=r"^symbol '.*': (must|longer)"):
        ingest_csv_files(stored, [good], symbol=symbol)
    with pytest.raises(IngestError, match=r"^symbol '.*': (must|longer)"):
        ingest_synthetic(stored, ["SOLUSDT", symbol], 1, 11, "2024-01-03T00:00:00Z")
    assert fingerprint(stored) == before
