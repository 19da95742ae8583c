"""Recent candles per symbol held by the server, so an engine can send only the newest candle.

A request's candles are merged into the symbol's history: stored candles older than the
request's first candle are kept, the request's candles replace the stored ones at their times
(a revised last candle simply replaces the old one), and the newest ``capacity``
(= ``SERVING_HISTORY``) candles are kept. Stored candles newer than the request's last are
kept too when they continue it without a gap: a call overtaken by the next call of its symbol
(two calls in flight, or one retried) neither loses the newer candle nor leaves a hole that
would drop the history. The call itself sees the history up to its own newest candle, so its
features are those of the candle it brought.

A gap (the request starts more than one bar interval after the stored history ends) drops the
stored history, so features never span missing data. When the merged history is still shorter
than the features need, the caller (handlers) seeds it from QuestDB.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

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
        #: The history a gap dropped, per symbol, kept until the missing candles arrive (a call
        #: overtaken by the next one) and it can be joined again, or the next gap replaces it.
        self._detached: dict[str, CandleBlock] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, symbol: str) -> CandleBlock | None:
        return self._blocks.get(symbol)

    def merge(self, symbol: str, incoming: CandleBlock, seed: CandleBlock | None = None) -> CandleBlock:
        """Merge ``incoming`` (and optionally an older ``seed``) into the history; return the
        history up to ``incoming``'s newest candle (what the call's features are computed on)."""
        lock = self._locks.get(symbol)
        if lock is None:
            with self._lock:
                lock = self._locks.setdefault(symbol, threading.Lock())
        with lock:
            base = self._blocks.get(symbol)
            if seed is not None and len(seed):
                base = seed if base is None or len(base) == 0 else _merge(seed, base)[1]
            seen, stored, detached = merge_step(base, self._detached.get(symbol), incoming)
            seen, stored = seen.tail(self.capacity), stored.tail(self.capacity)
            if detached is None:
                self._detached.pop(symbol, None)
            else:
                self._detached[symbol] = detached.tail(self.capacity)
            if symbol in self._blocks:
                self._blocks[symbol] = stored
                return seen
            with self._lock:
                if symbol not in self._blocks and len(self._blocks) >= self.max_symbols:
                    oldest = next(iter(self._blocks))  # oldest inserted symbol
                    del self._blocks[oldest]
                    self._detached.pop(oldest, None)
                    if oldest != symbol:
                        self._locks.pop(oldest, None)
                self._blocks[symbol] = stored
                self._locks.setdefault(symbol, lock)
            return seen

    def merged_length(self, symbol: str, incoming: CandleBlock) -> int:
        """How many candles ``merge(symbol, incoming)`` (without a seed) would return now; stores
        nothing (a concurrent merge of the same symbol may change the answer)."""
        base = self._blocks.get(symbol)
        detached = self._detached.get(symbol)
        if detached is not None and len(incoming):
            n = len(merge_step(base, detached, incoming)[0])
        elif base is None or len(base) == 0:
            n = len(incoming)
        elif len(incoming) == 0:
            n = len(base)
        else:
            n = _kept(base, incoming) + len(incoming)
        return min(n, self.capacity)

    def __len__(self) -> int:
        return len(self._blocks)


def merge_step(
    old: CandleBlock | None, detached: CandleBlock | None, new: CandleBlock
) -> tuple[CandleBlock, CandleBlock, CandleBlock | None]:
    """One merge of ``new`` into the stored history ``old`` (see the module docstring), with the
    history an earlier gap dropped (``detached``): (what the call sees, what is stored, what is
    detached now). Detached history is joined again as soon as the stored history continues it."""

    def interval() -> int | None:  # computed only when a merge needs it (not on the hot path)
        return _interval(*(b for b in (old, detached, new) if b is not None))

    if old is None or len(old) == 0:
        seen = stored = new
    else:
        seen, stored = _merge(old, new, interval)
        if seen is new and stored is new and len(new) and not _overlaps(old, new):  # a gap dropped ``old``
            if detached is None or len(old) >= len(detached):
                detached = old
    if detached is not None and len(stored):
        step = int(stored.ts_ms[0] - detached.ts_ms[-1])
        bar = interval()
        if bar is not None and 0 < step <= bar:
            return _concat(detached, seen), _concat(detached, stored), None
        if stored.ts_ms[0] <= detached.ts_ms[-1] and not (seen is new and stored is new):
            return seen, stored, None  # the history moved back over the detached part: forget it
    return seen, stored, detached


def _overlaps(old: CandleBlock, new: CandleBlock) -> bool:
    return bool(new.ts_ms[0] <= old.ts_ms[-1] and new.ts_ms[-1] >= old.ts_ms[0])


def _concat(a: CandleBlock, b: CandleBlock) -> CandleBlock:
    return CandleBlock(np.concatenate((a.ts_ms, b.ts_ms)), np.concatenate((a.ohlcv, b.ohlcv)))


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


def _newer_kept(old: CandleBlock, new: CandleBlock, interval: Callable[[], int | None]) -> int:
    """Index of the first of ``old``'s rows after ``new``'s last candle that a merge keeps:
    those rows are kept when they continue ``new`` without a gap (``len(old)``: none kept)."""
    after = int(np.searchsorted(old.ts_ms, new.ts_ms[-1], side="right"))
    if after == len(old):
        return after
    bar = interval()
    if bar is None or old.ts_ms[after] - new.ts_ms[-1] > bar:
        return len(old)  # a gap between the request and the newer stored candles
    return after


def _interval(*blocks: CandleBlock) -> int | None:
    """The bar interval (the smallest step seen in any block), None when none has two rows."""
    steps = [int(np.diff(b.ts_ms[-3:]).min()) for b in blocks if len(b) >= 2]
    return min(steps) if steps else None


def _merge(
    old: CandleBlock, new: CandleBlock, interval: Callable[[], int | None] | None = None
) -> tuple[CandleBlock, CandleBlock]:
    """(what the call sees, what is stored): ``old`` rows before ``new``'s first candle (none
    across a gap), then ``new``; stored also keeps ``old``'s newer rows that continue ``new``."""
    if len(new) == 0:
        return old, old
    keep = _kept(old, new)
    after = _newer_kept(old, new, interval or (lambda: _interval(old, new)))
    ts = np.concatenate((old.ts_ms[:keep], new.ts_ms)) if keep else new.ts_ms
    ohlcv = np.concatenate((old.ohlcv[:keep], new.ohlcv)) if keep else new.ohlcv
    seen = CandleBlock(ts, ohlcv) if keep else new
    if after == len(old):
        return seen, seen
    return seen, CandleBlock(np.concatenate((ts, old.ts_ms[after:])), np.concatenate((ohlcv, old.ohlcv[after:])))
