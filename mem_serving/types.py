"""Serving's own domain records: what the converters produce from protobuf and the handlers use.

They know nothing of gRPC. Times are tz-aware UTC datetimes; candle times are epoch milliseconds
in an int64 array (a candle block is columnar numpy, the shape the feature code wants). Plain
slots records, not frozen (a frozen one takes ~10x as long to build, per item of a batch); no
code changes one after it is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from mem_memory import Decision

#: Column order of ``CandleBlock.ohlcv``.
OHLCV = ("open", "high", "low", "close", "volume")


@dataclass(slots=True)
class CandleBlock:
    """Candles of one symbol, ascending by ``ts_ms`` (unique), columns ``OHLCV``."""

    ts_ms: np.ndarray  # int64, shape (n,)
    ohlcv: np.ndarray  # float64, shape (n, 5)

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    @property
    def newest_ts_ms(self) -> int:
        return int(self.ts_ms[-1])

    def tail(self, n: int) -> CandleBlock:
        return self if len(self) <= n else CandleBlock(self.ts_ms[-n:], self.ohlcv[-n:])

    @staticmethod
    def empty() -> CandleBlock:
        return CandleBlock(np.empty(0, dtype=np.int64), np.empty((0, 5), dtype=np.float64))


@dataclass(slots=True)
class PredictQuery:
    symbol: str
    #: None: read recent candles from QuestDB.
    candles: CandleBlock | None


@dataclass(slots=True)
class Prediction:
    symbol: str
    is_reversal: bool
    #: Probability of a reversal in [0, 1].
    confidence: float
    #: "bullish" (reversal up) or "bearish" (reversal down).
    direction: str
    model_version: str
    out_of_range_features: tuple[str, ...]
    candle_ts_ms: int
    features: Mapping[str, float] = field(default_factory=dict)

    @property
    def out_of_distribution(self) -> bool:
        return bool(self.out_of_range_features)


@dataclass(slots=True)
class MLInput:
    """An ML prediction the caller already has."""

    confidence: float
    direction: str  # "bullish" | "bearish"
    model_version: str


@dataclass(slots=True)
class EnhanceQuery:
    symbol: str
    action: str  # "BUY" | "SELL" | "HOLD"
    base_confidence: float
    price: float
    time: datetime
    strategy: str
    ml: MLInput | None
    candles: CandleBlock | None
    market_context: Mapping[str, str]
    session_id: str
    #: The caller's id of this request ("" = none; ``mem_memory.requests``).
    request_id: str = ""
    #: The request's fingerprint, stored with its id ("" without an id).
    fingerprint: str = ""


@dataclass(slots=True)
class EnhanceResult:
    """The memory's decision plus what serving knew when it was taken."""

    decision: Decision
    prediction: Prediction | None
    model_version: str
    #: The first call's decision, answered again to a repeated request id (nothing recorded now).
    replayed: bool = False
    #: Why the decision had no ML prediction ("" when it had one, or for a replayed answer).
    ml_absent_reason: str = ""


@dataclass(slots=True)
class PushAnswer:
    """PushCandles' answer: candles queued for QuestDB, dropped (queue full), pending after the
    call, and whether it is the stored answer of a repeated request id."""

    queued: int
    dropped: int
    pending: int
    replayed: bool = False
