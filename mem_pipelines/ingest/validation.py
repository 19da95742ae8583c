"""Candle validation shared by every ingest source: the rules a batch must meet before it is written.

Errors read like a compiler's: ``path:line: what is wrong``, so a user can open the file at the
offending row. A batch with any bad row is refused as a whole.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mem_memory import symbol_problem

# Binance kline intervals on a fixed grid (1s, 3d, 1w and 1M are not: they are left out).
INTERVALS: dict[str, int] = {
    "1m": 60,
    "3m": 180,
    "5m": 300,
    "15m": 900,
    "30m": 1_800,
    "1h": 3_600,
    "2h": 7_200,
    "4h": 14_400,
    "6h": 21_600,
    "8h": 28_800,
    "12h": 43_200,
    "1d": 86_400,
}
DEFAULT_INTERVAL = "5m"

# Open times outside this window are not plausible candle times (a unit mix-up, usually).
_MIN_TS = pd.Timestamp("2000-01-01", tz="UTC")
_MAX_TS = pd.Timestamp("2100-01-01", tz="UTC")


class IngestError(ValueError):
    """Input refused before anything was written; the message names the file and line."""


def checked_symbol(value: str, where: str = "symbol") -> str:
    """``value`` stripped and upper-cased (ingest stores symbols in capitals) if it meets the
    symbol rule of the whole system (``mem_memory.symbols``); else ``IngestError``
    ``"<where> 'value': problem"`` on one line (the value's repr, shortened)."""
    symbol = value.strip().upper() if isinstance(value, str) else value
    problem = symbol_problem(symbol)
    if problem is not None:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:36] + "...'"
        raise IngestError(f"{where} {shown}: {problem}")
    return symbol


#: Most days of synthetic candles one call generates (ten years: ~1M 5-minute candles a symbol).
MAX_SYNTHETIC_DAYS = 3650.0


def checked_days(days: float) -> float:
    """``days`` of synthetic candles if it is a finite number in (0, ``MAX_SYNTHETIC_DAYS``];
    else ``IngestError`` saying so on one line."""
    try:
        value = float(days)
    except (TypeError, ValueError):
        raise IngestError(f"--days {days!r}: must be a number of days") from None
    if not math.isfinite(value) or value <= 0 or value > MAX_SYNTHETIC_DAYS:
        raise IngestError(f"--days {days!r}: must be a finite number of days > 0 and <= {MAX_SYNTHETIC_DAYS:g}")
    return value


def interval_seconds(interval: str) -> int:
    try:
        return INTERVALS[interval]
    except KeyError:
        raise IngestError(f"unknown interval {interval!r}; supported: {', '.join(INTERVALS)}") from None


def _where(source: str, line: int | None) -> str:
    return f"{source}:{line}" if line is not None else source


def _refuse(source: str, lines: np.ndarray, bad: np.ndarray, message: str, detail=None) -> None:
    idx = np.flatnonzero(bad)
    if idx.size == 0:
        return
    first = int(idx[0])
    more = f" (and {idx.size - 1} more row(s))" if idx.size > 1 else ""
    extra = f": {detail(first)}" if detail else ""
    raise IngestError(f"{_where(source, int(lines[first]))}: {message}{extra}{more}")


def validate_candles(
    frame: pd.DataFrame,
    source: str,
    interval: str = DEFAULT_INTERVAL,
    lines: Sequence[int] | np.ndarray | None = None,
) -> None:
    """Raise :class:`IngestError` at the first row breaking a rule; ``lines`` maps rows to file lines.

    Rules: no NaN; prices > 0; high >= low, high >= max(open, close), low <= min(open, close);
    volume >= 0; open times on the interval grid, strictly increasing, and spaced by the interval
    (gaps allowed, but the most common step must be the interval itself).
    """
    step = interval_seconds(interval)
    n = len(frame)
    lines = np.arange(1, n + 1) if lines is None else np.asarray(lines)
    if n == 0:
        raise IngestError(f"{source}: no candles")
    o, h, lo, c, v = (frame[col].to_numpy(dtype="float64") for col in ("open", "high", "low", "close", "volume"))

    def row(i: int) -> str:
        return f"open={o[i]} high={h[i]} low={lo[i]} close={c[i]} volume={v[i]}"

    _refuse(source, lines, np.isnan(o) | np.isnan(h) | np.isnan(lo) | np.isnan(c) | np.isnan(v), "NaN value", row)
    _refuse(
        source,
        lines,
        ~(np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c) & np.isfinite(v)),
        "infinite value",
        row,
    )
    _refuse(source, lines, (o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0), "price at or below zero", row)
    _refuse(source, lines, h < lo, "high < low", row)
    _refuse(source, lines, h < np.maximum(o, c), "high < max(open, close)", row)
    _refuse(source, lines, lo > np.minimum(o, c), "low > min(open, close)", row)
    _refuse(source, lines, v < 0, "negative volume", row)

    ts = frame["ts"]
    _refuse(
        source,
        lines,
        ((ts < _MIN_TS) | (ts >= _MAX_TS)).to_numpy(),
        "open time outside 2000..2100",
        lambda i: f"{ts.iloc[i]}",
    )
    secs = ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[us]").astype(np.int64)
    us_step = step * 1_000_000
    _refuse(source, lines, secs % us_step != 0, f"open time not on the {interval} grid", lambda i: f"{ts.iloc[i]}")
    if n > 1:
        diffs = np.diff(secs)
        bad = np.concatenate([[False], diffs <= 0])
        _refuse(
            source,
            lines,
            bad,
            "open time not after the previous row's (duplicate or out of order)",
            lambda i: f"{ts.iloc[i]} after {ts.iloc[i - 1]}",
        )
        values, counts = np.unique(diffs, return_counts=True)
        common = int(values[np.argmax(counts)])
        if common != us_step:
            first = int(np.flatnonzero(diffs == common)[0]) + 1
            raise IngestError(
                f"{_where(source, int(lines[first]))}: rows are {_human(common // 1_000_000)} apart "
                f"(the most common step), not the requested interval {interval}"
            )


def _human(seconds: int) -> str:
    for name, secs in sorted(INTERVALS.items(), key=lambda kv: -kv[1]):
        if seconds == secs:
            return name
    return f"{seconds}s"
