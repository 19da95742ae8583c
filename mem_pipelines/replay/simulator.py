"""Order fills and exits of the replay, candle by candle, with no look-ahead. Pure (no I/O).

Rules (docs/closed_loop.md repeats them):

- A decision is taken at the *close* of candle ``d`` (it may use candles ``<= d`` only). Its order
  fills at the *open of the next candle* of that symbol, ``d+1``; never on ``d`` itself.
- Costs: ``slippage_bps`` moves every fill against the trader (buy higher, sell lower);
  ``fee_bps`` is charged on the notional of the entry and of the exit.
- Stop and target are set from the next candle's open (the entry reference price):
  long ``stop = open * (1 - stop_pct)``, ``target = open * (1 + target_pct)``; short mirrored.
- Exits are checked on every candle from the entry candle on (the entry happened at its open, so
  its whole high/low range lies after the entry), using only that candle's open/high/low/close:
  * the open already beyond the stop (a gap): exit at the open, reason ``stop``;
  * the low (long) / high (short) touches the stop: exit at the stop, reason ``stop``;
  * the high (long) / low (short) touches the target: exit at the target, reason ``target``;
  * both touched within one candle: the order of the two inside the candle is unknown, so the
    stop is assumed (conservative);
  * otherwise after ``max_bars`` candles held (the entry candle counts): exit at that candle's
    close, reason ``time``.
  A target is never filled better than its level, a stop never better than its level.
- One position (or pending order) per symbol at a time. Positions still open when the data ends
  close at the last close seen, reason ``end``.

``Simulator.on_candle`` sees one candle at a time and refuses candles out of time order, so no
decision can see a candle after it; ``drive`` runs a policy over several symbols in global time
order (exits of a timestamp first, then the decisions at its close); ``drive_together`` runs
several policies in that one pass (the replay's three variants, so that the server's candle
history they share only moves forward).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mem_core.settings import DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS

SIDES = ("BUY", "SELL")


@dataclass(frozen=True)
class Costs:
    """Trading costs in basis points: fee per fill (on notional) and adverse slippage per fill."""

    fee_bps: float = DEFAULT_FEE_BPS
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS

    def __post_init__(self) -> None:
        if not (self.fee_bps >= 0 and self.slippage_bps >= 0):
            raise ValueError("fee_bps and slippage_bps must be >= 0")

    @property
    def fee(self) -> float:
        return self.fee_bps / 10_000.0

    @property
    def slippage(self) -> float:
        return self.slippage_bps / 10_000.0


@dataclass(frozen=True)
class Candle:
    ts: pd.Timestamp
    open: float
    high: float
    low: float
    close: float


@dataclass(frozen=True)
class Order:
    """An order decided at the close of candle ``decision_ts``; fills at the next candle's open.

    ``size`` is the fraction of the replay capital committed (notional = size * capital).
    ``tag`` carries the caller's reference (e.g. the memory's decision id) to the trade.
    """

    symbol: str
    side: str
    decision_ts: pd.Timestamp
    size: float
    stop_pct: float
    target_pct: float
    max_bars: int
    tag: str = ""
    confidence: float = math.nan

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"side must be BUY or SELL, not {self.side!r}")
        if not (self.size > 0 and self.stop_pct > 0 and self.target_pct > 0):
            raise ValueError("size, stop_pct and target_pct must be > 0")
        if self.max_bars < 1:
            raise ValueError("max_bars must be >= 1")


@dataclass(frozen=True)
class Trade:
    """A closed trade. Prices include slippage; ``pnl`` is after fees and slippage."""

    symbol: str
    side: str
    decision_ts: pd.Timestamp
    entry_ts: pd.Timestamp
    entry_price: float
    exit_ts: pd.Timestamp
    exit_price: float
    exit_reason: str
    size: float
    notional: float
    stop_price: float
    target_price: float
    bars_held: int
    fees: float
    pnl: float
    pnl_pct: float
    tag: str = ""
    confidence: float = math.nan


@dataclass
class _Position:
    order: Order
    entry_ts: pd.Timestamp
    entry_ref: float
    entry_price: float
    stop: float
    target: float
    bars_held: int = 0


class Simulator:
    """Fills and exits for any number of symbols; candles must arrive in time order per symbol."""

    def __init__(self, costs: Costs = Costs(), capital: float = 10_000.0) -> None:
        if not capital > 0:
            raise ValueError("capital must be > 0")
        self.costs = costs
        self.capital = capital
        self._pending: dict[str, Order] = {}
        self._open: dict[str, _Position] = {}
        self._last_ts: dict[str, pd.Timestamp] = {}
        self._last_close: dict[str, float] = {}

    def is_flat(self, symbol: str) -> bool:
        """No open position and no pending order for ``symbol``."""
        return symbol not in self._pending and symbol not in self._open

    def submit(self, order: Order) -> None:
        """Queue an order decided at the close of ``order.decision_ts`` (fills on the next candle)."""
        if not self.is_flat(order.symbol):
            raise ValueError(f"{order.symbol} already has a position or a pending order")
        last = self._last_ts.get(order.symbol)
        if last is not None and order.decision_ts < last:
            raise ValueError("an order cannot be decided before the last candle already processed")
        self._pending[order.symbol] = order

    def _fill(self, price: float, buying: bool) -> float:
        slip = self.costs.slippage
        return price * (1.0 + slip) if buying else price * (1.0 - slip)

    def on_candle(self, symbol: str, candle: Candle) -> list[Trade]:
        """Process one candle: fill a pending order at its open, then check the exits on it."""
        last = self._last_ts.get(symbol)
        if last is not None and candle.ts <= last:
            raise ValueError(f"candles of {symbol} out of time order: {candle.ts} after {last}")
        self._last_ts[symbol] = candle.ts
        self._last_close[symbol] = candle.close
        order = self._pending.get(symbol)
        if order is not None and candle.ts > order.decision_ts:
            del self._pending[symbol]
            ref = candle.open
            long = order.side == "BUY"
            self._open[symbol] = _Position(
                order=order,
                entry_ts=candle.ts,
                entry_ref=ref,
                entry_price=self._fill(ref, buying=long),
                stop=ref * (1 - order.stop_pct) if long else ref * (1 + order.stop_pct),
                target=ref * (1 + order.target_pct) if long else ref * (1 - order.target_pct),
            )
        pos = self._open.get(symbol)
        if pos is None:
            return []
        pos.bars_held += 1
        exit_at = self._exit_price(pos, candle)
        if exit_at is None:
            return []
        price, reason = exit_at
        del self._open[symbol]
        return [self._close(pos, candle.ts, price, reason)]

    @staticmethod
    def _exit_price(pos: _Position, c: Candle) -> tuple[float, str] | None:
        if pos.order.side == "BUY":
            if c.open <= pos.stop:
                return c.open, "stop"
            if c.low <= pos.stop:
                return pos.stop, "stop"
            if c.high >= pos.target:
                return pos.target, "target"
        else:
            if c.open >= pos.stop:
                return c.open, "stop"
            if c.high >= pos.stop:
                return pos.stop, "stop"
            if c.low <= pos.target:
                return pos.target, "target"
        if pos.bars_held >= pos.order.max_bars:
            return c.close, "time"
        return None

    def _close(self, pos: _Position, ts: pd.Timestamp, raw_price: float, reason: str) -> Trade:
        order = pos.order
        long = order.side == "BUY"
        exit_price = self._fill(raw_price, buying=not long)
        notional = order.size * self.capital
        direction = 1.0 if long else -1.0
        gross = direction * (exit_price - pos.entry_price) / pos.entry_price
        fees = notional * self.costs.fee * (1.0 + exit_price / pos.entry_price)
        pnl = notional * gross - fees
        return Trade(
            symbol=order.symbol,
            side=order.side,
            decision_ts=order.decision_ts,
            entry_ts=pos.entry_ts,
            entry_price=pos.entry_price,
            exit_ts=ts,
            exit_price=exit_price,
            exit_reason=reason,
            size=order.size,
            notional=notional,
            stop_price=pos.stop,
            target_price=pos.target,
            bars_held=pos.bars_held,
            fees=fees,
            pnl=pnl,
            pnl_pct=pnl / notional,
            tag=order.tag,
            confidence=order.confidence,
        )

    def close_all(self) -> list[Trade]:
        """End of data: close open positions at the last close seen (reason ``end``); drop
        pending orders (they never filled)."""
        self._pending.clear()
        trades = []
        for symbol in sorted(self._open):
            pos = self._open.pop(symbol)
            trades.append(self._close(pos, self._last_ts[symbol], self._last_close[symbol], "end"))
        return trades


class Policy:
    """What ``drive`` asks at each step. Subclasses decide and hear about exits."""

    def decide(self, symbol: str, index: int, candles: pd.DataFrame) -> Order | None:
        """At the close of ``candles.iloc[index]``: an order or None. ``candles`` may hold later
        rows (the frame is shared); a policy must only look at rows ``<= index`` —
        ``drive`` passes ``candles.iloc[: index + 1]`` to make that impossible."""
        raise NotImplementedError

    def on_exit(self, trade: Trade) -> None:  # pragma: no cover - default is to ignore
        """A trade closed (called in time order, before any later decision)."""

    def after_step(self, ts: pd.Timestamp) -> None:  # pragma: no cover - default is to ignore
        """All exits and decisions of timestamp ``ts`` are done."""

    def on_candle(self, symbol: str, candle: Candle) -> None:  # pragma: no cover - default is to ignore
        """A candle of ``symbol`` was processed (after its exits, before any decision at its close)."""

    def finish(self) -> None:  # pragma: no cover - default is to ignore
        """The data ended (after the open positions were closed)."""


@dataclass
class DriveResult:
    trades: list[Trade] = field(default_factory=list)
    asked: int = 0  # decide() calls (flat symbol, candle inside the window)


def drive(
    frames: Mapping[str, pd.DataFrame],
    policy: Policy,
    sim: Simulator,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> DriveResult:
    """Run ``policy`` over candle frames of several symbols in global time order.

    Every frame may start before ``start`` (warm-up history); decisions are asked only for
    candles with ``start <= ts < end``; exits are processed for every candle after an entry
    (up to the end of the frames). At each timestamp: the exits of all symbols first (the intra-
    candle part), then the decisions at the candles' close, symbols in sorted order.
    Positions open when the data ends are closed at the last close (reason ``end``).
    """
    return drive_together(frames, [(policy, sim)], start, end)[0]


def drive_together(
    frames: Mapping[str, pd.DataFrame],
    runs: Sequence[tuple[Policy, Simulator]],
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> list[DriveResult]:
    """``drive`` for several independent (policy, simulator) pairs over the same candles, in one
    pass: at each timestamp every pair's exits, then every pair's decisions, then every pair's
    ``after_step``, pairs in the order given. Each pair sees exactly what ``drive`` alone would
    show it; what they share (a server's candle history) only ever moves forward in time."""
    results = [DriveResult() for _ in runs]
    arrays = {}
    for symbol, frame in frames.items():
        if not frame["ts"].is_monotonic_increasing or frame["ts"].duplicated().any():
            raise ValueError(f"candles of {symbol} must be sorted by ts with unique timestamps")
        arrays[symbol] = (
            _naive_utc(frame["ts"]),
            frame["open"].to_numpy("float64"),
            frame["high"].to_numpy("float64"),
            frame["low"].to_numpy("float64"),
            frame["close"].to_numpy("float64"),
        )
    # Global event order: (ts, symbol, row index)
    events: list[tuple[np.datetime64, str, int]] = []
    for symbol in sorted(frames):
        ts = arrays[symbol][0]
        events.extend((t, symbol, i) for i, t in enumerate(ts))
    events.sort(key=lambda e: (e[0], e[1]))
    start64 = as_utc(start).tz_localize(None).to_datetime64()
    end64 = as_utc(end).tz_localize(None).to_datetime64()
    i = 0
    while i < len(events):
        t = events[i][0]
        group = []
        while i < len(events) and events[i][0] == t:
            group.append(events[i])
            i += 1
        ts = pd.Timestamp(t).tz_localize("UTC")
        candles = []
        for _, symbol, row in group:
            _, o, h, lo, c = arrays[symbol]
            candles.append((symbol, Candle(ts, o[row], h[row], lo[row], c[row])))
        for (policy, sim), result in zip(runs, results, strict=True):
            for symbol, candle in candles:
                for trade in sim.on_candle(symbol, candle):
                    result.trades.append(trade)
                    policy.on_exit(trade)
                policy.on_candle(symbol, candle)
        if start64 <= t < end64:
            for (policy, sim), result in zip(runs, results, strict=True):
                for _, symbol, row in group:
                    if not sim.is_flat(symbol):
                        continue
                    order = policy.decide(symbol, row, frames[symbol].iloc[: row + 1])
                    result.asked += 1
                    if order is not None:
                        sim.submit(order)
        for policy, _ in runs:
            policy.after_step(ts)
    for (policy, sim), result in zip(runs, results, strict=True):
        for trade in sim.close_all():
            result.trades.append(trade)
            policy.on_exit(trade)
        policy.finish()
    return results


def as_utc(t: object) -> pd.Timestamp:
    """``t`` as a UTC timestamp (a naive one is taken as UTC)."""
    ts = pd.Timestamp(t)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _naive_utc(ts: pd.Series) -> np.ndarray:
    s = pd.to_datetime(ts)
    if s.dt.tz is not None:
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    return s.to_numpy("datetime64[ns]")
