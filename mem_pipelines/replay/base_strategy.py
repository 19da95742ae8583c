"""The base strategy of the replay: momentum confirmed by RSI, as in the seed's signal resolver.

Pure (no I/O). At the close of candle ``t`` the strategy looks only at candles ``<= t``:

- momentum ``m_t = close_t / close_{t-N} - 1`` over ``N = momentum_bars`` candles;
- ``RSI_t`` with Wilder's smoothing (RMA, alpha = 1/period) of the close-to-close changes;
- BUY  when ``m_t >  momentum_threshold`` and ``RSI_t < rsi_overbought`` (70): the trend is up and
  not yet stretched;
- SELL when ``m_t < -momentum_threshold`` and ``RSI_t > rsi_oversold`` (30);
- otherwise no signal.

Base confidence grows with the signal's strength: ``0.5 + 0.45 * min(1, (|m| - thr) / (2 * thr))``
so a signal just over the threshold is a coin flip (0.5) and one three thresholds strong is 0.95.

The signal is computed vectorised over a whole frame, but each row uses only rolling/causal
operations (``shift``, ``ewm(adjust=False)``), so the value at ``t`` is the same whether or not
later candles exist (``tests/replay/test_base_strategy.py`` proves it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class BaseStrategyConfig:
    """Parameters of the momentum + RSI base strategy (fixed for all three replay variants)."""

    momentum_bars: int = 12
    momentum_threshold: float = 0.005
    rsi_period: int = 14
    rsi_overbought: float = 70.0
    rsi_oversold: float = 30.0
    name: str = "momentum_rsi"

    def __post_init__(self) -> None:
        if self.momentum_bars < 1:
            raise ValueError("momentum_bars must be >= 1")
        if not self.momentum_threshold > 0:
            raise ValueError("momentum_threshold must be > 0")
        if self.rsi_period < 2:
            raise ValueError("rsi_period must be >= 2")
        if not 0 < self.rsi_oversold < self.rsi_overbought < 100:
            raise ValueError("need 0 < rsi_oversold < rsi_overbought < 100")

    @property
    def warmup(self) -> int:
        """Candles before the first row whose signal is defined and settled (RSI's RMA decays
        like (1 - 1/period)^n; 10 periods leave < 1% of the seed)."""
        return max(self.momentum_bars, 10 * self.rsi_period) + 1


def rsi(close: pd.Series, period: int = 14) -> pd.Series:
    """RSI with Wilder's smoothing; 50 where there is no movement at all. Causal."""
    delta = close.diff()
    gain = delta.clip(lower=0.0)
    loss = (-delta).clip(lower=0.0)
    avg_gain = gain.ewm(alpha=1.0 / period, adjust=False, min_periods=period).mean()
    avg_loss = loss.ewm(alpha=1.0 / period, adjust=False, min_periods=period).mean()
    total = avg_gain + avg_loss
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 100.0 * avg_gain / total
    return value.where(total > 0, 50.0).where(avg_gain.notna())


def base_signals(candles: pd.DataFrame, config: BaseStrategyConfig = BaseStrategyConfig()) -> pd.DataFrame:
    """Signals for every candle of one symbol (a candle frame per docs/CONTRACTS.md).

    Returns a frame aligned with ``candles`` (same index): ``ts``, ``momentum``, ``rsi``,
    ``action`` ("BUY" | "SELL" | "" for none) and ``confidence`` (NaN where there is no signal).
    Rows inside the warm-up have no signal.
    """
    if not candles["ts"].is_monotonic_increasing:
        raise ValueError("candles must be sorted ascending by ts")
    close = candles["close"].astype("float64")
    momentum = close / close.shift(config.momentum_bars) - 1.0
    rsi_value = rsi(close, config.rsi_period)
    thr = config.momentum_threshold
    buy = (momentum > thr) & (rsi_value < config.rsi_overbought)
    sell = (momentum < -thr) & (rsi_value > config.rsi_oversold)
    warm = np.arange(len(candles)) >= config.warmup
    buy &= warm
    sell &= warm
    action = np.where(buy, "BUY", np.where(sell, "SELL", ""))
    strength = ((momentum.abs() - thr) / (2.0 * thr)).clip(lower=0.0, upper=1.0)
    confidence = (0.5 + 0.45 * strength).where(buy | sell)
    return pd.DataFrame(
        {
            "ts": candles["ts"].to_numpy(),
            "momentum": momentum.to_numpy(),
            "rsi": rsi_value.to_numpy(),
            "action": action,
            "confidence": confidence.to_numpy(),
        },
        index=candles.index,
    )
