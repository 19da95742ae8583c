"""Recent candles per symbol held by the server, so an engine can send only the newest candle.

A request's candles are merged into the symbol's history: stored candles older than the
request's first candle are kept, the request's candles replace everything from its first
candle on (a revised last candle simply replaces the old one), and the newest
``capacity`` (= ``SERVING_HISTORY``) candles are kept. A gap (the request starts more than one
bar interval after the stored history ends) drops the stored history, so features never span
missing data. When the merged history is still shorter than the features need, the caller
(handlers) seeds it from QuestDB.
"""

from __future__ import annotations

import threading

import numpy as np

from mem_serving.types import CandleBlock


class CandleHistory:
    """Thread-safe per-symbol candle history (numpy blocks, replaced atomically).

    One lock per symbol serialises merges of that symbol (the numpy work runs under it); the
    table-wide lock is taken only to add a symbol (and evict the oldest), so concurrent calls for
    different symbols never wait for each other."""

    def __init__(self, capacity: int, max_symbols: int = 10_000) -> None:
        self.capacity = capacity
        self.max_symbols = max_symbols
        self._blocks: dict[str, CandleBlock] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, symbol: str) -> CandleBlock | None:
        return self._blocks.get(symbol)

    def merge(self, symbol: str, incoming: CandleBlock, seed: CandleBlock | None = None) -> CandleBlock:
        """Merge ``incoming`` (and optionally an older ``seed``) into the history; return it."""
        lock = self._locks.get(symbol)
        if lock is None:
            with self._lock:
                lock = self._locks.setdefault(symbol, threading.Lock())
        with lock:
            base = self._blocks.get(symbol)
            if seed is not None and len(seed):
                base = seed if base is None or len(base) == 0 else _merge(seed, base)
            merged = incoming if base is None or len(base) == 0 else _merge(base, incoming)
            merged = merged.tail(self.capacity)
            if symbol in self._blocks:
                self._blocks[symbol] = merged
                return merged
            with self._lock:
                if symbol not in self._blocks and len(self._blocks) >= self.max_symbols:
                    oldest = next(iter(self._blocks))  # oldest inserted symbol
                    del self._blocks[oldest]
                    if oldest != symbol:
                        self._locks.pop(oldest, None)
                self._blocks[symbol] = merged
                self._locks.setdefault(symbol, lock)
            return merged

    def merged_length(self, symbol: str, incoming: CandleBlock) -> int:
        """How many candles ``merge(symbol, incoming)`` (without a seed) would hold now; stores
        nothing (a concurrent merge of the same symbol may change the answer)."""
        base = self._blocks.get(symbol)
        if base is None or len(base) == 0:
            n = len(incoming)
        elif len(incoming) == 0:
            n = len(base)
        else:
            n = _kept(base, incoming) + len(incoming)
        return min(n, self.capacity)

    def __len__(self) -> int:
        return len(self._blocks)


def _kept(old: CandleBlock, new: CandleBlock) -> int:
    """How many of ``old``'s rows a merge with ``new`` keeps (those before ``new``'s first
    candle; none across a gap). ``new`` must not be empty."""
    first = new.ts_ms[0]
    keep = int(np.searchsorted(old.ts_ms, first, side="left"))
    if keep >= 2:
        interval = old.ts_ms[keep - 1] - old.ts_ms[keep - 2]
        if interval > 0 and first - old.ts_ms[keep - 1] > interval:
            return 0  # a gap: the stored history is not contiguous with the request
    return keep


def _merge(old: CandleBlock, new: CandleBlock) -> CandleBlock:
    """``old`` rows before ``new``'s first candle, then ``new``; old is dropped across a gap."""
    if len(new) == 0:
        return old
    keep = _kept(old, new)
    if keep == 0:
        return new
    if keep == len(old):
        ts = np.concatenate((old.ts_ms, new.ts_ms))
        ohlcv = np.concatenate((old.ohlcv, new.ohlcv))
    else:
        ts = np.concatenate((old.ts_ms[:keep], new.ts_ms))
        ohlcv = np.concatenate((old.ohlcv[:keep], new.ohlcv))
    return CandleBlock(ts, ohlcv)
