"""Recent candles per symbol held by the server, so an engine can send only the newest candle.

The rule (docs/serving.md, "Candle history"), per symbol, with ``bar_ms`` the candle interval
(5 minutes) and ``capacity`` the candles held (``SERVING_HISTORY`` plus a margin):

- A call's candles are merged once, as a whole, against the newest open time held before it
  (``newest``): a candle at ``newest`` or later replaces or extends (the newest value per open
  time wins, so a revision of the newest candle replaces it); an older candle fills a hole, or is
  ignored when that open time is already held. Nothing older ever truncates newer candles.
- The history holds the newest ``capacity`` open times ever given (holes allowed); a candle older
  than all of them, with the history full, is ignored.
- What a call is answered from is the *newest contiguous run*: the newest candle held and the
  ones before it back to the first hole (at most ``view`` = ``SERVING_HISTORY`` of them, what
  the features read). A gap therefore leaves a short run until the missing candles arrive (a late
  call fills them) or ``fill`` brings them from the candle source (QuestDB); ``fill`` never
  replaces a candle held, and never sends the source's candles back to it.

Merging the same candles again changes nothing, and the result depends only on which candles
were given and, for an open time given twice at or after the then newest, which came last. The
storage is one fixed ring of ``capacity`` rows per symbol (open times and OHLCV in numpy); the
common call (one new or revised candle) is an O(1) write, and the run returned is a copy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from mem_core import features as feats
from mem_serving.errors import FailedPrecondition
from mem_serving.types import CandleBlock

#: The candle interval the models are trained on (5-minute candles), in milliseconds.
BAR_MS = 300_000
#: Candles held per symbol: what the features read plus room for holes (late candles).
CAPACITY = 512

#: A reader of the candle source: ``(symbol, n, until_ms)`` -> the newest ``n`` candles with an
#: open time at or before ``until_ms`` (None: the newest there are), ascending.
SourceRead = Callable[[str, int, "int | None"], CandleBlock]


class ShortHistory(FailedPrecondition):
    """The newest contiguous run of a symbol is shorter than the features need: the request is
    well formed, the server cannot answer it yet (EnhanceSignal answers with the ML silent)."""

    def __init__(self, symbol: str, have: int, need: int) -> None:
        self.symbol, self.have, self.need = symbol, have, need
        super().__init__(f"candles: {self.reason}; send more candles (best {feats.SERVING_HISTORY}) or ingest them")

    @property
    def reason(self) -> str:
        return f"{self.have} of {self.need} contiguous candles of {self.symbol} held"


class _Series:
    """One symbol's ring: rows ``head .. head+n-1`` (mod capacity), ascending unique open times;
    ``run`` is the length of the newest contiguous run, ``last`` the newest open time (when ``n``)."""

    __slots__ = ("ts", "ohlcv", "head", "n", "run", "last")

    def __init__(self, capacity: int) -> None:
        self.ts = np.zeros(capacity, dtype=np.int64)
        self.ohlcv = np.zeros((capacity, 5), dtype=np.float64)
        self.head = self.n = self.run = self.last = 0

    def tail(self, k: int) -> CandleBlock:
        """A copy of the newest ``k`` rows (``k <= n``)."""
        cap = len(self.ts)
        start = (self.head + self.n - k) % cap
        end = start + k
        if end <= cap:
            return CandleBlock(self.ts[start:end].copy(), self.ohlcv[start:end].copy())
        wrap = end - cap
        return CandleBlock(
            np.concatenate((self.ts[start:], self.ts[:wrap])), np.concatenate((self.ohlcv[start:], self.ohlcv[:wrap]))
        )

    def append(self, block: CandleBlock, bar: int) -> None:
        """Write ``block`` (all newer than ``last``, ascending, at most capacity rows) at the end."""
        cap, k = len(self.ts), len(block)
        inner = _run_length(block.ts_ms, bar) if k > 1 else 1
        if inner < k:  # a gap inside the block
            run = inner
        elif self.n and int(block.ts_ms[0]) - self.last == bar:
            run = self.run + k
        else:
            run = k
        pos = (self.head + self.n + np.arange(k)) % cap if k > 1 else (self.head + self.n) % cap
        self.ts[pos] = block.ts_ms if k > 1 else block.ts_ms[0]
        self.ohlcv[pos] = block.ohlcv if k > 1 else block.ohlcv[0]
        over = max(0, self.n + k - cap)
        self.head = (self.head + over) % cap
        self.n += k - over
        self.run = min(run, self.n)
        self.last = int(block.ts_ms[-1])

    def replace_all(self, block: CandleBlock, bar: int) -> None:
        k = len(block)
        self.ts[:k], self.ohlcv[:k] = block.ts_ms, block.ohlcv
        self.head, self.n, self.last = 0, k, int(block.ts_ms[-1])
        breaks = np.flatnonzero(np.diff(block.ts_ms) != bar)
        self.run = k - 1 - int(breaks[-1]) if len(breaks) else k


class CandleHistory:
    """Thread-safe per-symbol candle history under the module's rule.

    One lock per symbol serialises merges of that symbol; the table-wide lock is taken only to
    add a symbol (and evict the oldest added when ``max_symbols`` are held), so calls for
    different symbols never wait for each other. ``on_change(symbol, rows)``, when given, hears
    the rows a merge accepted (new candles, changed values) before the history holds them: the
    candle sink's way to QuestDB. ``view``: the longest run returned (default ``SERVING_HISTORY``,
    at most ``capacity``)."""

    def __init__(
        self,
        capacity: int = CAPACITY,
        *,
        view: int | None = None,
        bar_ms: int = BAR_MS,
        max_symbols: int = 10_000,
        on_change: Callable[[str, CandleBlock], object] | None = None,
    ) -> None:
        view = min(feats.SERVING_HISTORY, capacity) if view is None else view
        if not 0 < view <= capacity:
            raise ValueError("need 0 < view <= capacity")
        self.capacity, self.view, self.bar_ms, self.max_symbols = capacity, view, bar_ms, max_symbols
        self.on_change = on_change
        self._series: dict[str, _Series] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    # ---- reads ---------------------------------------------------------------------------------

    def run(self, symbol: str) -> CandleBlock:
        """The newest contiguous run held (at most ``view`` candles; empty when none)."""
        with self._symbol_lock(symbol):
            return self._run(self._series.get(symbol))

    def held(self, symbol: str) -> CandleBlock | None:
        """Every candle held for ``symbol`` (holes and all), ascending; None when none."""
        with self._symbol_lock(symbol):
            s = self._series.get(symbol)
            return s.tail(s.n) if s is not None and s.n else None

    get = held

    def run_length_after(self, symbol: str, block: CandleBlock | None) -> int:
        """How long the newest contiguous run would be after ``merge(symbol, block)``, capped at
        ``view``; stores nothing (a concurrent merge of the same symbol may change the answer)."""
        with self._symbol_lock(symbol):
            s = self._series.get(symbol)
            if block is None or len(block) == 0:
                return min(s.run, self.view) if s is not None else 0
            if s is None or s.n == 0:
                return min(_run_length(block.ts_ms, self.bar_ms), self.view)
            newest = s.last
            if int(block.ts_ms[0]) > newest:  # the common case: newer candles
                steps = np.diff(block.ts_ms)
                breaks = np.flatnonzero(steps != self.bar_ms)
                if len(breaks):
                    return min(len(block) - 1 - int(breaks[-1]), self.view)
                if int(block.ts_ms[0]) - newest == self.bar_ms:
                    return min(s.run + len(block), self.view, s.n + len(block))
                return min(len(block), self.view)
            merged, _ = _combine(s.tail(s.n), block, newest, revise=True, capacity=self.capacity)
            return min(_run_length(merged.ts_ms, self.bar_ms), self.view)

    def __len__(self) -> int:
        return len(self._series)

    # ---- writes --------------------------------------------------------------------------------

    def merge(self, symbol: str, block: CandleBlock | None) -> CandleBlock:
        """Merge a call's candles (the rule above); return the newest contiguous run."""
        with self._symbol_lock(symbol):
            s = self._series_for(symbol)
            if block is not None and len(block):
                self._merge(symbol, s, block, revise=True)
            return self._run(s)

    def fill(self, symbol: str, block: CandleBlock) -> CandleBlock:
        """Merge candles read from the candle source: they fill holes and extend the history but
        never replace a candle held (a call's revision is newer than what the source stored) and
        are not passed to ``on_change``. Returns the newest contiguous run."""
        with self._symbol_lock(symbol):
            s = self._series_for(symbol)
            if len(block):
                self._merge(symbol, s, block, revise=False)
            return self._run(s)

    def fill_from(self, symbol: str, read: SourceRead) -> CandleBlock:
        """``fill`` from ``read``: the ``capacity`` newest candles of the source at or before the
        newest held (all its newest when nothing is held). The read runs outside the lock."""
        with self._symbol_lock(symbol):
            s = self._series.get(symbol)
            until = s.last if s is not None and s.n else None
        block = read(symbol, self.capacity, until)
        if until is not None and len(block) and int(block.ts_ms[-1]) > until:  # a source that ignores the bound
            keep = block.ts_ms <= until
            block = CandleBlock(block.ts_ms[keep], block.ohlcv[keep])
        return self.fill(symbol, block)

    # ---- internals -----------------------------------------------------------------------------

    def _symbol_lock(self, symbol: str) -> threading.Lock:
        lock = self._locks.get(symbol)
        if lock is None:
            with self._lock:
                lock = self._locks.setdefault(symbol, threading.Lock())
        return lock

    def _series_for(self, symbol: str) -> _Series:
        """The symbol's series, created (and the oldest symbol evicted when full) on first use;
        called with the symbol's lock held."""
        s = self._series.get(symbol)
        if s is not None:
            return s
        with self._lock:
            if len(self._series) >= self.max_symbols:
                oldest = next(iter(self._series))  # the first added
                del self._series[oldest]
                self._locks.pop(oldest, None)
            s = self._series[symbol] = _Series(self.capacity)
        return s

    def _run(self, s: _Series | None) -> CandleBlock:
        if s is None or s.run == 0:
            return CandleBlock.empty()
        return s.tail(min(s.run, self.view))

    def _merge(self, symbol: str, s: _Series, block: CandleBlock, revise: bool) -> None:
        if len(block) > self.capacity:  # only the newest ``capacity`` open times can be held
            block = block.tail(self.capacity)
        if s.n == 0:
            self._changed(symbol, block, revise)
            s.replace_all(block, self.bar_ms)
            return
        newest, first = s.last, int(block.ts_ms[0])
        if first > newest:  # the hot path: new candles
            self._changed(symbol, block, revise)
            s.append(block, self.bar_ms)
            return
        if len(block) == 1 and first == newest:  # the newest candle again (a revision, or a repeat)
            last = (s.head + s.n - 1) % self.capacity
            if revise and not np.array_equal(s.ohlcv[last], block.ohlcv[0]):
                self._changed(symbol, block, revise)
                s.ohlcv[last] = block.ohlcv[0]
            return
        merged, accepted = _combine(s.tail(s.n), block, newest, revise, self.capacity)
        if accepted is not None:
            self._changed(symbol, accepted, revise)
            s.replace_all(merged, self.bar_ms)

    def _changed(self, symbol: str, rows: CandleBlock, revise: bool) -> None:
        if revise and self.on_change is not None:
            self.on_change(symbol, rows)


def _run_length(ts: np.ndarray, bar: int) -> int:
    """Length of the newest contiguous run of ascending open times ``ts``."""
    if len(ts) == 0:
        return 0
    breaks = np.flatnonzero(np.diff(ts) != bar)
    return len(ts) - 1 - int(breaks[-1]) if len(breaks) else len(ts)


def _combine(
    held: CandleBlock, block: CandleBlock, newest: int, revise: bool, capacity: int
) -> tuple[CandleBlock, CandleBlock | None]:
    """``held`` with ``block`` merged under the rule (``newest``: the newest open time held;
    ``revise``: a candle at ``newest`` or later may replace a held one), capped to the newest
    ``capacity`` open times, and the rows of ``block`` that changed something (None: nothing)."""
    at = np.minimum(np.searchsorted(held.ts_ms, block.ts_ms), len(held) - 1)
    present = held.ts_ms[at] == block.ts_ms
    if revise:
        differs = present & ~(held.ohlcv[at] == block.ohlcv).all(axis=1)
        take = ~present | (differs & (block.ts_ms >= newest))
    else:
        take = ~present
    if capacity <= len(held):  # full: open times older than all held stay out
        take &= block.ts_ms > held.ts_ms[0]
    if not take.any():
        return held, None
    replaced = np.zeros(len(held), dtype=bool)
    replaced[at[take & present]] = True
    ts = np.concatenate((held.ts_ms[~replaced], block.ts_ms[take]))
    ohlcv = np.concatenate((held.ohlcv[~replaced], block.ohlcv[take]))
    order = np.argsort(ts, kind="stable")
    merged = CandleBlock(ts[order], ohlcv[order]).tail(capacity)
    return merged, CandleBlock(block.ts_ms[take], block.ohlcv[take])
