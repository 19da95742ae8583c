"""Parsing and validating kline CSV files (pure: no database)."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mem_pipelines.ingest.csv_source import parse_filename, read_kline_csv
from mem_pipelines.ingest.validation import IngestError

T0 = 1_704_067_200_000  # 2024-01-01T00:00Z in ms
STEP = 300_000


def dump_rows(n=5, unit="ms", step=STEP):
    mul = 1000 if unit == "us" else 1
    rows = []
    for i in range(n):
        o = T0 + i * step
        rows.append(
            [
                o * mul,
                "100.0",
                "101.5",
                "99.5",
                "100.5",
                "12.25",
                (o + step - 1) * mul + (mul - 1 if mul > 1 else 0),
                "1225.0",
                "10",
                "6.0",
                "600.0",
                "0",
            ]
        )
    return rows


def write_dump(path: Path, rows, gz=False) -> Path:
    text = "\n".join(",".join(str(x) for x in r) for r in rows) + "\n"
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_filename_gives_symbol_and_interval():
    assert parse_filename(Path("BTCUSDT-5m.csv.gz")) == ("BTCUSDT", "5m")
    assert parse_filename(Path("ETHUSDT-1h-2024-01.csv")) == ("ETHUSDT", "1h")
    assert parse_filename(Path("BNBUSDT-5m-2024-01-02.zip")) == ("BNBUSDT", "5m")
    assert parse_filename(Path("candles.csv")) == (None, None)  # not SYMBOL-INTERVAL: names no symbol
    assert parse_filename(Path("BTCUSDT.csv")) == (None, None)


@pytest.mark.parametrize(
    "symbol, problem",
    [
        ("BAD SYM", "must be printable, without spaces"),
        ("BTC\nUSDT", "must be printable, without spaces"),
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("A" * 10_000, "longer than 64 characters"),
    ],
)
def test_a_given_symbol_meets_the_symbol_rule(tmp_path, symbol, problem):
    path = write_dump(tmp_path / "BTCUSDT-5m.csv", dump_rows())
    with pytest.raises(IngestError, match=problem) as info:
        read_kline_csv(path, symbol=symbol)
    assert "\n" not in str(info.value) and len(str(info.value)) < 120  # one short line
    assert read_kline_csv(path, symbol=" ethusdt ").symbol == "ETHUSDT"
    assert read_kline_csv(path, symbol="A" * 64).symbol == "A" * 64


def test_a_name_without_symbol_and_interval_needs_a_symbol(tmp_path):
    path = write_dump(tmp_path / "candles.csv", dump_rows())
    with pytest.raises(IngestError, match="cannot tell the symbol from the file name"):
        read_kline_csv(path)
    assert read_kline_csv(path, symbol="BTCUSDT").symbol == "BTCUSDT"
    long_name = write_dump(tmp_path / f"{'X' * 65}-5m.csv", dump_rows())
    with pytest.raises(IngestError, match="the file name's symbol 'X+.*': longer than 64 characters"):
        read_kline_csv(long_name)


@pytest.mark.parametrize("unit", ["ms", "us"])
def test_public_dump_in_ms_and_us(tmp_path, unit):
    f = read_kline_csv(write_dump(tmp_path / "BTCUSDT-5m-2024-01.csv", dump_rows(unit=unit)))
    assert (f.symbol, f.rows, f.time_unit) == ("BTCUSDT", 5, unit)
    assert f.frame["ts"].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert f.frame["ts"].iloc[-1] == pd.Timestamp("2024-01-01 00:20", tz="UTC")
    assert list(f.frame.columns) == ["ts", "symbol", "open", "high", "low", "close", "volume"]


def test_header_form_gzip_and_zip(tmp_path):
    text = "open_time,open,high,low,close,volume\n" + "".join(
        f"{T0 + i * STEP},1.0,2.0,0.5,1.5,3.0\n" for i in range(4)
    )
    gz = tmp_path / "ETHUSDT-5m.csv.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    assert read_kline_csv(gz).rows == 4
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("XRPUSDT-5m-2024-01.csv", text)
    zp = tmp_path / "XRPUSDT-5m-2024-01.zip"
    zp.write_bytes(buf.getvalue())
    assert read_kline_csv(zp).symbol == "XRPUSDT"
    plain = tmp_path / "data.csv"
    plain.write_text(text)
    assert read_kline_csv(plain, symbol="bnbusdt").symbol == "BNBUSDT"


def test_values_are_exact(shared_candles):
    f = read_kline_csv(shared_candles / "BTCUSDT-5m.csv.gz")
    raw = pd.read_csv(shared_candles / "BTCUSDT-5m.csv.gz", dtype=str)
    want = np.array(
        [[float(x) for x in row] for row in raw[["open", "high", "low", "close", "volume"]].to_numpy()[:2000]]
    )
    assert (f.frame[["open", "high", "low", "close", "volume"]].to_numpy()[:2000] == want).all()
    assert f.rows == 119_784


def _bad(tmp_path, name, mutate):
    rows = dump_rows(6)
    mutate(rows)
    return write_dump(tmp_path / name, rows)


@pytest.mark.parametrize(
    "mutate, line, message",
    [
        (lambda r: r[3].__setitem__(2, "abc"), 4, "malformed row: column high not a number"),
        (lambda r: r[2].append("extra"), 3, "malformed row: expected 12 fields, found 13"),
        (lambda r: r.__setitem__(4, r[4][:5]), 5, "malformed row"),
        (lambda r: r[1].__setitem__(2, "99.0"), 2, "high < low"),
        (lambda r: r[5].__setitem__(5, "-1"), 6, "negative volume"),
        (lambda r: r[2].__setitem__(4, "nan"), 3, "NaN value"),
        (lambda r: r[3].__setitem__(1, "102"), 4, r"high < max\(open, close\)"),
        (lambda r: r[2].__setitem__(0, T0 + 2 * STEP + 60_000), 3, "open time not on the 5m grid"),
        (
            lambda r: r[3].__setitem__(0, r[2][0]),
            4,
            r"open time not after the previous row.s \(duplicate or out of order\)",
        ),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, mutate, line, message):
    path = _bad(tmp_path, "BTCUSDT-5m.csv", mutate)
    with pytest.raises(IngestError, match=f"^{path}:{line}: {message}"):
        read_kline_csv(path)


def test_unreadable_and_corrupt_files(tmp_path):
    with pytest.raises(IngestError, match="nowhere/BTCUSDT-5m.csv: cannot read file"):
        read_kline_csv(tmp_path / "nowhere" / "BTCUSDT-5m.csv")
    corrupt = tmp_path / "BTCUSDT-5m.csv.gz"
    corrupt.write_bytes(gzip.compress(bytes(range(256)) * 100)[:60])
    with pytest.raises(IngestError, match=f"{corrupt}: cannot decompress"):
        read_kline_csv(corrupt)
    binary = tmp_path / "ETHUSDT-5m.csv"
    binary.write_bytes(b"1704067200000,\xff\xfe\x00\n")
    with pytest.raises(IngestError, match=f"{binary}:1: not UTF-8"):
        read_kline_csv(binary)


def test_unknown_or_mismatched_interval(tmp_path):
    hourly = write_dump(tmp_path / "BTCUSDT-1h-2024-01.csv", dump_rows(step=3_600_000))
    with pytest.raises(IngestError, match=f"{hourly}: the file name says interval 1h, but 5m was requested"):
        read_kline_csv(hourly)
    assert read_kline_csv(hourly, interval="1h").rows == 5
    with pytest.raises(IngestError, match="unknown interval '7m'"):
        read_kline_csv(hourly, interval="7m")
    weird = write_dump(tmp_path / "BTCUSDT-7m.csv", dump_rows())
    with pytest.raises(IngestError, match="interval 7m .*unknown interval"):
        read_kline_csv(weird)
    # No interval in the name: the spacing of the rows and the close times give it away.
    unnamed = write_dump(tmp_path / "hourly.csv", dump_rows(step=3_600_000))
    with pytest.raises(IngestError, match=f"{unnamed}:2: rows are 1h apart"):
        read_kline_csv(unnamed, symbol="BTCUSDT")
    one = write_dump(tmp_path / "one.csv", dump_rows(n=1, step=3_600_000))
    with pytest.raises(IngestError, match=f"{one}:1: close_time - open_time spans 3600000 ms"):
        read_kline_csv(one, symbol="BTCUSDT")


def test_a_header_without_rows_is_refused_in_one_line(tmp_path):
    for text in (
        "open_time,open,high,low,close,volume\n",
        "open_time,open,high,low,close,volume",
        "open_time,open,high,low,close,volume\n\n",
    ):
        path = tmp_path / "BTCUSDT-5m.csv"
        path.write_text(text)
        with pytest.raises(IngestError, match=f"^{path}: no candles \\(a header and no rows\\)$"):
            read_kline_csv(path)


def test_a_utf8_byte_order_mark_is_not_data(tmp_path):
    text = "open_time,open,high,low,close,volume\n" + "".join(
        f"{T0 + i * STEP},1.0,2.0,0.5,1.5,3.0\n" for i in range(3)
    )
    plain = tmp_path / "BTCUSDT-5m.csv"
    plain.write_text(text)
    marked = tmp_path / "ETHUSDT-5m.csv"
    marked.write_bytes(b"\xef\xbb\xbf" + text.encode())  # as Excel saves "CSV UTF-8"
    got = read_kline_csv(marked)
    assert got.rows == 3
    pd.testing.assert_frame_equal(got.frame.drop(columns="symbol"), read_kline_csv(plain).frame.drop(columns="symbol"))
    dump = write_dump(tmp_path / "XRPUSDT-5m.csv", dump_rows(4))
    dump.write_bytes(b"\xef\xbb\xbf" + dump.read_bytes())
    assert read_kline_csv(dump).rows == 4
