"""Binance kline CSV files -> validated candle frames (nothing is written here).

Accepted layouts, plain, gzip or a zip holding one CSV (detected from the bytes, not the name):

* the public dump (data.binance.vision): 12 columns, no header — open time, open, high, low,
  close, volume, close time, quote volume, trades, taker base, taker quote, ignore. Open and
  close times are epoch milliseconds, or microseconds in newer dumps (detected per file).
* a header form ``open_time,open,high,low,close,volume`` (extra columns ignored), open time in
  epoch ms or µs.

The symbol comes from a Binance-style file name, symbol then interval (``BTCUSDT-5m.csv.gz``,
``BTCUSDT-5m-2024-01.csv``, ``BTCUSDT-1h-2024-01-02.zip``), unless given; a name of another form
(``candles.csv``) names no symbol. The interval in the name must match the requested one. Either
way the symbol must meet the symbol rule (``validation.checked_symbol``).
"""

from __future__ import annotations

import gzip
import io
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mem_pipelines.ingest.validation import (
    DEFAULT_INTERVAL,
    INTERVALS,
    IngestError,
    checked_symbol,
    interval_seconds,
    validate_candles,
)

DUMP_COLUMNS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_base_volume",
    "taker_quote_volume",
    "ignore",
)
HEADER_COLUMNS = ("open_time", "open", "high", "low", "close", "volume")
_NAME = re.compile(
    r"^(?P<symbol>[A-Za-z0-9]+)-(?P<interval>\d+[smhdwM])(?:-\d{4}-\d{2}(?:-\d{2})?)?\.(?:csv(?:\.gz)?|zip)$"
)
# Epoch values at or above this are microseconds (ms reach it only in the year 5138).
_US_THRESHOLD = 100_000_000_000_000


@dataclass(frozen=True)
class CandleFile:
    """A parsed, validated file: ``frame`` is a candle frame with a ``symbol`` column."""

    path: Path
    symbol: str
    interval: str
    frame: pd.DataFrame
    time_unit: str  # "ms" or "us"

    @property
    def rows(self) -> int:
        return len(self.frame)


def parse_filename(path: Path) -> tuple[str | None, str | None]:
    """(symbol, interval) from a Binance-style file name (``SYMBOL-INTERVAL...``); (None, None)
    for a name of another form."""
    m = _NAME.match(path.name)
    if not m:
        return None, None
    return m.group("symbol").upper(), m.group("interval")


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise IngestError(f"{path}: cannot read file: {exc.strerror or exc}") from None
    try:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        elif raw[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(raw)) as zf:
                members = [n for n in zf.namelist() if not n.endswith("/")]
                if len(members) != 1:
                    raise IngestError(f"{path}: a zip must hold exactly one CSV, found {len(members)} files")
                raw = zf.read(members[0])
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        raise IngestError(f"{path}: cannot decompress file: {exc}") from None
    try:
        return raw.decode("utf-8-sig")  # a leading byte-order mark (Excel's "CSV UTF-8") is not data
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise IngestError(f"{path}:{line}: not UTF-8 text (binary or corrupt file)") from None


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_kline_csv(path: str | Path, interval: str = DEFAULT_INTERVAL, symbol: str | None = None) -> CandleFile:
    """Parse and validate one file; raise :class:`IngestError` naming file and line on any problem."""
    path = Path(path)
    step = interval_seconds(interval)
    name_symbol, name_interval = parse_filename(path)
    if name_interval is not None and name_interval != interval:
        hint = "" if name_interval in INTERVALS else f" (an unknown interval; supported: {', '.join(INTERVALS)})"
        raise IngestError(f"{path}: the file name says interval {name_interval}{hint}, but {interval} was requested")
    text = _read_text(path)
    if symbol is not None:
        symbol = checked_symbol(symbol)
    elif name_symbol is not None:
        symbol = checked_symbol(name_symbol, f"{path}: the file name's symbol")
    else:
        raise IngestError(
            f"{path}: cannot tell the symbol from the file name (not SYMBOL-INTERVAL..., e.g. BTCUSDT-5m.csv.gz); pass it (--symbol)"
        )
    first_line = text.split("\n", 1)[0].strip()
    if not first_line:
        raise IngestError(f"{path}:1: empty file or blank first line")
    first_fields = [f.strip() for f in first_line.split(",")]
    has_header = not _is_number(first_fields[0])
    if has_header:
        missing = [c for c in HEADER_COLUMNS if c not in first_fields]
        if missing:
            raise IngestError(
                f"{path}:1: header lacks {', '.join(missing)} (expected {','.join(HEADER_COLUMNS)}, "
                "or the 12-column Binance dump without a header)"
            )
        names, expected = first_fields, len(first_fields)
        if not text.partition("\n")[2].strip():
            raise IngestError(f"{path}: no candles (a header and no rows)")
    else:
        if len(first_fields) != len(DUMP_COLUMNS):
            raise IngestError(
                f"{path}:1: expected the 12-column Binance kline dump (no header), found {len(first_fields)} fields"
            )
        names, expected = list(DUMP_COLUMNS), len(DUMP_COLUMNS)

    _check_field_counts(path, text, expected)
    numeric = ["open_time", *HEADER_COLUMNS[1:]] + (["close_time"] if not has_header else [])
    parsed = _fast_parse(text, names, has_header, numeric)
    if parsed is None:
        parsed = _diagnose(path, text, names, has_header, numeric)
    offset = 2 if has_header else 1
    lines = np.arange(len(parsed["open_time"])) + offset
    return _finish(path, symbol, interval, step, parsed, lines, has_header)


def _check_field_counts(path: Path, text: str, expected: int) -> None:
    """Every line (but a final empty one) has ``expected`` comma-separated fields."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    commas = expected - 1
    for i, line in enumerate(lines):
        if line.count(",") != commas:
            if line.strip() == "":
                raise IngestError(f"{path}:{i + 1}: malformed row: blank line")
            found = line.count(",") + 1
            raise IngestError(f"{path}:{i + 1}: malformed row: expected {expected} fields, found {found}")


def _fast_parse(text: str, names: list[str], has_header: bool, numeric: list[str]) -> dict[str, np.ndarray] | None:
    """Parse a clean file straight to float64; None when anything is off (then _diagnose finds it)."""
    try:
        raw = pd.read_csv(
            io.StringIO(text),
            header=None,
            names=names,
            skiprows=1 if has_header else 0,
            usecols=numeric,
            dtype={c: "float64" for c in numeric},
            skip_blank_lines=False,
            keep_default_na=False,
            na_values={c: ["nan", "NaN"] for c in numeric},
            engine="c",
            float_precision="round_trip",
        )
    except (ValueError, pd.errors.ParserError):
        return None
    out = {c: raw[c].to_numpy(dtype="float64") for c in numeric}
    if any(np.isnan(v).any() for v in out.values()):
        return None  # short rows, blank lines or NaN: let _diagnose say which
    return out


def _diagnose(path: Path, text: str, names: list[str], has_header: bool, numeric: list[str]) -> dict[str, np.ndarray]:
    """Slow path: read every field as text to name the first malformed row."""
    try:
        raw = pd.read_csv(
            io.StringIO(text),
            header=None,
            names=names,
            skiprows=1 if has_header else 0,
            dtype=str,
            skip_blank_lines=False,
            keep_default_na=False,
            engine="c",
        )
    except pd.errors.ParserError as exc:
        msg = str(exc)
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", msg)
        if m:
            raise IngestError(
                f"{path}:{m.group(2)}: malformed row: expected {m.group(1)} fields, found {m.group(3)}"
            ) from None
        raise IngestError(f"{path}: malformed CSV: {msg.strip()}") from None
    offset = 2 if has_header else 1
    lines = np.arange(len(raw)) + offset

    parsed: dict[str, np.ndarray] = {}
    for col in numeric:
        tokens = raw[col].fillna("").str.strip()
        values = pd.to_numeric(tokens, errors="coerce").to_numpy(dtype="float64")
        malformed = np.isnan(values) & ~tokens.str.lower().isin(["nan"]).to_numpy()
        if malformed.any():
            i = int(np.flatnonzero(malformed)[0])
            token = tokens.iloc[i]
            what = "missing field" if token == "" else f"not a number: {token!r}"
            raw_line = text.split("\n")[lines[i] - 1] if lines[i] - 1 < text.count("\n") + 1 else ""
            if raw_line.strip() == "":
                what = "blank line"
            more = int(malformed.sum()) - 1
            raise IngestError(
                f"{path}:{lines[i]}: malformed row: column {col} {what}"
                + (f" (and {more} more row(s))" if more else "")
            )
        parsed[col] = values
    return parsed


def _finish(
    path: Path,
    symbol: str,
    interval: str,
    step: int,
    parsed: dict[str, np.ndarray],
    lines: np.ndarray,
    has_header: bool,
) -> CandleFile:
    open_time = parsed["open_time"]
    bad = np.isnan(open_time) | (open_time != np.floor(open_time))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise IngestError(f"{path}:{lines[i]}: malformed row: open_time must be an integer epoch time")
    open_int = open_time.astype(np.int64)
    unit = "us" if open_int[0] >= _US_THRESHOLD else "ms"
    to_us = 1 if unit == "us" else 1_000
    ts_us = open_int * to_us

    frame = pd.DataFrame(
        {
            "ts": pd.Series(ts_us.astype("datetime64[us]")).dt.tz_localize("UTC"),
            **{c: parsed[c] for c in HEADER_COLUMNS[1:]},
        }
    )
    validate_candles(frame, str(path), interval=interval, lines=lines)
    if not has_header:
        # The dump's close time is the candle's last instant: open + interval - 1 unit.
        close_us = parsed["close_time"].astype(np.int64) * to_us
        span = close_us - ts_us + to_us
        wrong = span != step * 1_000_000
        if wrong.any():
            i = int(np.flatnonzero(wrong)[0])
            raise IngestError(
                f"{path}:{lines[i]}: close_time - open_time spans {span[i] // to_us} {unit}, "
                f"not the requested interval {interval}"
            )
    frame.insert(1, "symbol", symbol)
    return CandleFile(path=path, symbol=symbol, interval=interval, frame=frame, time_unit=unit)
