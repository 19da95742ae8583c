"""A market with a planted edge, to prove that the closed loop learns what is there (and only that).

Synthetic 5-minute candles and a synthetic base strategy (fixed seeds) whose signals win only
under a condition observable at decision time and lose otherwise:

- prices: a log-price random walk, ``vol_bps`` per candle;
- signals: whenever no episode is running, a candle's close carries a new signal with probability
  ``signal_rate`` — BUY or SELL at random, base confidence uniform in ``confidence`` — and starts
  an **episode** of ``horizon`` candles: each later candle of it drifts ``drift_bps`` *with* the
  signal when the condition held (follow-through: the signal wins), and ``reverse_bps`` *against*
  it otherwise (the move fades: the signal loses after costs). No signal is given while an episode
  runs, so a signal's outcome never depends on an earlier episode: nothing in the prices before
  the decision tells how it will end;
- the condition: the signal's candle closes inside the UTC hours ``[hours[0], hours[1])``. The
  decision's time of day is what the memory can observe (pattern discovery's time-of-day
  windows); neither the seed's 12 features nor the model see it.

The **control** (``shuffled=True``) keeps everything but the link to the observable: each
episode follows through with the probability the window has in the planted market (its share of
the day), at random. Nothing observable at decision time predicts a winner, so nothing should be
learned and no help claimed.

``planted_market(market)`` returns the candle frames and the signals; ``PlantedSignals`` serves
the signals to the replay (``ReplayConfig.signals``) in place of the momentum + RSI strategy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

CANDLE = pd.Timedelta(minutes=5)


#: The planted market's own symbols (never real ones, so its candles cannot mix with a market's).
PLANTED_SYMBOLS: tuple[str, ...] = ("PLANTA", "PLANTB", "PLANTC", "PLANTD")


@dataclass(frozen=True)
class PlantedMarket:
    """The planted market's parameters (module docstring); the same parameters give the same candles."""

    symbols: tuple[str, ...] = PLANTED_SYMBOLS
    start: pd.Timestamp = pd.Timestamp("2025-01-01", tz="UTC")
    days: float = 30.0
    seed: int = 11
    hours: tuple[float, float] = (12.0, 18.0)
    shuffled: bool = False
    vol_bps: float = 15.0
    drift_bps: float = 5.0
    reverse_bps: float = 2.0
    horizon: int = 24
    signal_rate: float = 0.2
    confidence: tuple[float, float] = (0.6, 0.95)

    def __post_init__(self) -> None:
        ts = pd.Timestamp(self.start)
        object.__setattr__(self, "start", ts.tz_convert("UTC") if ts.tzinfo else ts.tz_localize("UTC"))
        if not 0 <= self.hours[0] < self.hours[1] <= 24:
            raise ValueError("hours must be a window [a, b) inside [0, 24]")
        if self.days <= 0 or self.horizon < 1 or self.vol_bps <= 0 or not 0 < self.signal_rate <= 1:
            raise ValueError("days, horizon, vol_bps and signal_rate must be positive (signal_rate <= 1)")

    @property
    def window_share(self) -> float:
        """The share of the day inside the planted window: how often the control follows through."""
        return (self.hours[1] - self.hours[0]) / 24.0

    def in_window(self, ts: pd.Timestamp) -> bool:
        hour = ts.hour + ts.minute / 60.0
        return self.hours[0] <= hour < self.hours[1]

    def describe(self) -> str:
        rule = (
            "follows through at random, as often as the window's share of the day"
            if self.shuffled
            else f"follows through when decided in {self.hours[0]:g}:00-{self.hours[1]:g}:00 UTC, fades otherwise"
        )
        return (
            f"Base strategy: planted signals (a random BUY/SELL at {self.signal_rate:g} per candle while none runs; "
            f"each {rule}: {self.drift_bps:g} bps per candle with it, {self.reverse_bps:g} against, for {self.horizon} candles)."
        )


def planted_market(market: PlantedMarket) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Candle frames (docs/CONTRACTS.md) and signal frames (``ts``, ``action``, ``confidence``) of
    every symbol of ``market``."""
    frames, signals = {}, {}
    for i, symbol in enumerate(market.symbols):
        frames[symbol], signals[symbol] = _one(market, i)
    return frames, signals


def _one(m: PlantedMarket, index: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng([m.seed, index])
    n = int(round(m.days * 288))
    ts = pd.date_range(m.start, periods=n, freq=CANDLE)
    minute = (ts.hour * 60 + ts.minute).to_numpy()
    inside = (minute >= m.hours[0] * 60) & (minute < m.hours[1] * 60)
    sigma = m.vol_bps / 10_000
    starts = rng.random(n) < m.signal_rate
    sides = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    follow = rng.random(n) < m.window_share if m.shuffled else inside
    confidence = rng.uniform(m.confidence[0], m.confidence[1], n)
    drift = np.zeros(n)
    action = np.full(n, "", dtype=object)
    t = 0
    while t < n - 1:
        if starts[t]:
            action[t] = "BUY" if sides[t] > 0 else "SELL"
            step = (m.drift_bps if follow[t] else -m.reverse_bps) / 10_000 * sides[t]
            end = min(n - 1, t + m.horizon)
            drift[t + 1 : end + 1] = step
            t = end + 1  # no signal while the episode runs
            continue
        t += 1
    close = 100.0 * np.exp(rng.normal(0, 0.2) + np.cumsum(rng.normal(0.0, sigma, n) + drift))
    opens = np.concatenate([[close[0]], close[:-1]])
    wick = np.abs(rng.normal(0.0, sigma / 2, (2, n)))
    high = np.maximum(opens, close) * (1.0 + wick[0])
    low = np.minimum(opens, close) * (1.0 - wick[1])
    volume = rng.lognormal(3.0, 0.4, n)
    frame = pd.DataFrame({"ts": ts, "open": opens, "high": high, "low": low, "close": close, "volume": volume})
    signal = pd.DataFrame(
        {"ts": ts, "action": action.astype(str), "confidence": np.where(action != "", confidence, np.nan)}
    )
    return frame, signal


class PlantedSignals:
    """The planted signals as the replay's base strategy (``ReplayConfig.signals``): for a symbol's
    candles, the signal at each candle (none where the market has none)."""

    def __init__(self, market: PlantedMarket, signals: Mapping[str, pd.DataFrame]) -> None:
        self.description = market.describe()
        self._by_symbol = {s: f.set_index("ts") for s, f in signals.items()}

    def __call__(self, symbol: str, candles: pd.DataFrame) -> pd.DataFrame:
        table = self._by_symbol[symbol].reindex(pd.DatetimeIndex(candles["ts"]))
        return pd.DataFrame(
            {
                "ts": candles["ts"].to_numpy(),
                "action": table["action"].fillna("").to_numpy(),
                "confidence": table["confidence"].to_numpy(),
            },
            index=candles.index,
        )
