"""A market with a planted edge, to prove that the closed loop learns what is there (and only that).

Synthetic 5-minute candles (fixed seeds) on which the replay's own base strategy (momentum + RSI,
``base_strategy``) wins only under a condition observable at decision time and loses otherwise:

- a log-price random walk, ``vol_bps`` per candle;
- whenever the base strategy signals while no episode is running (the same rule and warm-up as
  ``base_signals``, computed on the candles generated so far), an **episode** of ``horizon``
  candles starts: each later candle of it drifts ``drift_bps`` *with* the signal when the
  condition held at the signal's candle (follow-through: the signal wins), and ``reverse_bps``
  *against* it otherwise (the move fades: the signal loses after costs);
- the condition (``condition="hour"``): the signal's candle closes inside the UTC hours
  ``[hours[0], hours[1])``. The decision's time of day is what the memory can observe (pattern
  discovery's time-of-day windows); the 12 seed features do not show it.

The **control** (``shuffled=True``) keeps everything but the link to the observable: each
episode follows through with the probability the window has in the planted market (its share of
the day), at random. Nothing observable predicts a winner, so nothing should be learned.

Signals are recomputed incrementally (Wilder's RSI, momentum over ``momentum_bars``), so they can
differ from ``base_signals`` in the last bits of a float on the threshold: the edge concerns
the great majority of signals, not every one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mem_pipelines.replay.base_strategy import BaseStrategyConfig

CANDLE = pd.Timedelta(minutes=5)


@dataclass(frozen=True)
class PlantedMarket:
    """The planted market's parameters (module docstring); the same parameters give the same candles."""

    symbols: tuple[str, ...] = ("PLANTA", "PLANTB", "PLANTC", "PLANTD")
    start: pd.Timestamp = pd.Timestamp("2025-01-01", tz="UTC")
    days: float = 30.0
    seed: int = 11
    hours: tuple[float, float] = (12.0, 18.0)
    shuffled: bool = False
    vol_bps: float = 15.0
    drift_bps: float = 8.0
    reverse_bps: float = 3.0
    horizon: int = 24
    base: BaseStrategyConfig = field(default_factory=BaseStrategyConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", pd.Timestamp(self.start).tz_convert("UTC") if pd.Timestamp(self.start).tzinfo
                           else pd.Timestamp(self.start).tz_localize("UTC"))
        if not 0 <= self.hours[0] < self.hours[1] <= 24:
            raise ValueError("hours must be a window [a, b) inside [0, 24]")
        if self.days <= 0 or self.horizon < 1 or self.vol_bps <= 0:
            raise ValueError("days, horizon and vol_bps must be positive")

    @property
    def window_share(self) -> float:
        """The share of the day inside the planted window: how often the control follows through."""
        return (self.hours[1] - self.hours[0]) / 24.0

    def in_window(self, ts: pd.Timestamp) -> bool:
        hour = ts.hour + ts.minute / 60.0
        return self.hours[0] <= hour < self.hours[1]


def planted_candles(market: PlantedMarket) -> dict[str, pd.DataFrame]:
    """Candle frames (docs/CONTRACTS.md) of every symbol of ``market``."""
    return {s: _one(market, i) for i, s in enumerate(market.symbols)}


def _one(m: PlantedMarket, index: int) -> pd.DataFrame:
    rng = np.random.default_rng([m.seed, index])
    n = int(round(m.days * 288))
    ts = pd.date_range(m.start, periods=n, freq=CANDLE)
    minute = (ts.hour * 60 + ts.minute).to_numpy()
    inside = (minute >= m.hours[0] * 60) & (minute < m.hours[1] * 60)
    sigma = m.vol_bps / 10_000
    noise = rng.normal(0.0, sigma, n)
    coins = rng.random(n)
    cfg = m.base
    alpha = 1.0 / cfg.rsi_period
    close = np.empty(n)
    close[0] = 100.0 * math.exp(rng.normal(0, 0.2))
    drift = np.zeros(n)
    gain = loss = 0.0
    episode_end = -1
    for t in range(1, n):
        close[t] = close[t - 1] * math.exp(noise[t] + drift[t])
        change = close[t] - close[t - 1]
        up, down = max(change, 0.0), max(-change, 0.0)
        if t == 1:
            gain, loss = up, down
        else:
            gain += alpha * (up - gain)
            loss += alpha * (down - loss)
        if t < cfg.warmup or t <= episode_end or t + 1 >= n:
            continue
        momentum = close[t] / close[t - cfg.momentum_bars] - 1.0
        rsi = 100.0 * gain / (gain + loss) if gain + loss > 0 else 50.0
        if momentum > cfg.momentum_threshold and rsi < cfg.rsi_overbought:
            direction = 1.0
        elif momentum < -cfg.momentum_threshold and rsi > cfg.rsi_oversold:
            direction = -1.0
        else:
            continue
        follows = coins[t] < m.window_share if m.shuffled else bool(inside[t])
        step = (m.drift_bps if follows else -m.reverse_bps) / 10_000 * direction
        episode_end = min(n - 1, t + m.horizon)
        drift[t + 1 : episode_end + 1] = step
    opens = np.concatenate([[close[0]], close[:-1]])
    wick = np.abs(rng.normal(0.0, sigma / 2, (2, n)))
    high = np.maximum(opens, close) * (1.0 + wick[0])
    low = np.minimum(opens, close) * (1.0 - wick[1])
    volume = rng.lognormal(3.0, 0.4, n)
    return pd.DataFrame({"ts": ts, "open": opens, "high": high, "low": low, "close": close, "volume": volume})
