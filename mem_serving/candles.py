"""Recent candles per symbol held by the server, so an engine can send only the newest candle.

The rule (docs/serving.md, "Candle history"): a call's candles are merged once, as a whole,
against the newest open time held before it: a candle at that time or later replaces or
extends (the newest value per open time wins), an older one fills a hole or is ignored; nothing
older ever truncates newer candles. The newest ``capacity`` open times are held (holes allowed);
a call is answered from the *newest contiguous run* (at most ``view`` = ``SERVING_HISTORY``).
``fill`` (from QuestDB) fills holes and extends, never replaces a candle held.

Storage: every symbol is one row (a *slot*) of one block, a ring of ``capacity`` open times and
OHLCV rows (``ts``, ``ohlcv``) with per-slot ``head``, count ``n``, newest run length
``run_len`` and newest open time ``last``. A batch's new candles are one compiled write
(``merge_many``), and the features are read from the block in place (``newest`` and
``mem_core.feature_sets``' ``newest_ring``); ``run`` and ``held`` return copies.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Container, Sequence

import numpy as np
from numba import njit

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


class CandleHistory:
    """Thread-safe per-symbol candle history under the module's rule (one lock: merges run on the
    server's event loop, fills from the candle source on its thread pool).

    At most ``max_symbols`` symbols (adding one more evicts the oldest added). ``on_change(symbol,
    rows)``, when given, hears the rows a merge accepted (new candles, changed values) before the
    history holds them: the candle sink's way to QuestDB. ``view``: the longest run returned
    (default ``SERVING_HISTORY``, at most ``capacity``)."""

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
        self.slots: dict[str, int] = {}  # symbol -> its row of the block, oldest added first
        self.ts: np.ndarray = np.zeros((0, capacity), dtype=np.int64)
        self.ohlcv: np.ndarray = np.zeros((0, capacity, 5), dtype=np.float64)
        meta: list[np.ndarray] = [np.zeros(0, dtype=np.int64) for _ in range(4)]  # per slot
        self.head, self.n, self.run_len, self.last = meta
        self.lock = threading.Lock()

    # ---- reads ---------------------------------------------------------------------------------

    def run(self, symbol: str) -> CandleBlock:
        """The newest contiguous run held (at most ``view`` candles; empty when none)."""
        with self.lock:
            s = self.slots.get(symbol)
            return self._tail(s, min(int(self.run_len[s]), self.view)) if s is not None else CandleBlock.empty()

    def held(self, symbol: str) -> CandleBlock | None:
        """Every candle held for ``symbol`` (holes and all), ascending; None when none."""
        with self.lock:
            s = self.slots.get(symbol)
            return self._tail(s, int(self.n[s])) if s is not None and self.n[s] else None

    def newest(self, slots: np.ndarray, back: int = 0) -> tuple[np.ndarray, ...]:
        """Per slot, in one compiled pass: the end of its newest run in its ring (``head + n``,
        not wrapped) and the run's length (at most ``view``): what ``newest_ring`` reads; the
        newest open time, OHLCV row, and close ``back`` candles before it. Hold ``lock``."""
        k = len(slots)
        out = (np.empty(k, np.int64), np.empty(k, np.int64), np.empty(k, np.int64), np.empty((k, 5)), np.empty(k))
        _newest_kernel(self._rings(), slots, self.view, back, out)
        return out

    def _rings(self) -> tuple[np.ndarray, ...]:
        return self.ts, self.ohlcv, self.head, self.n, self.run_len, self.last

    def __len__(self) -> int:
        return len(self.slots)

    # ---- writes --------------------------------------------------------------------------------

    def merge(self, symbol: str, block: CandleBlock | None) -> CandleBlock:
        """Merge a call's candles (the rule above); return the newest contiguous run."""
        self.merge_many([symbol], [block])
        return self.run(symbol)

    def merge_many(self, symbols: Sequence[str], blocks: Sequence[CandleBlock | None]) -> np.ndarray:
        """Merge each call's candles into its symbol's history, in order; the symbols' slots.
        The common item (a held symbol, one candle newer than its newest, the symbol's first item
        here) is written for all of them at once; the others one by one after them (a symbol's
        later items after its first: the order per symbol is kept)."""
        with self.lock:
            get = self.slots.get  # (not set[str]() nor list[int](): a generic alias call costs ~0.5 us)
            seen: set[str] = set()
            ones: list[int] = []
            slow: list[int] = []
            out: list[int] = []
            for i, (symbol, block) in enumerate(zip(symbols, blocks, strict=True)):
                s = get(symbol)
                out.append(self._slot_for(symbol, seen) if s is None else s)
                if block is not None:
                    (slow if symbol in seen or len(block.ts_ms) != 1 else ones).append(i)
                seen.add(symbol)
            slots = np.array(out, dtype=np.int64)
            if ones:  # a one-candle item newer than the newest held (of a held symbol) is appended
                at = slots[ones]
                ts = np.concatenate([blocks[i].ts_ms for i in ones])  # type: ignore[union-attr]
                if len(ones) < 4:  # a few (EnhanceSignal): numpy scalars cost less than its vector calls
                    newer = [bool(self.n[s] and t > self.last[s]) for s, t in zip(at.tolist(), ts.tolist())]
                else:
                    newer = ((self.n[at] > 0) & (ts > self.last[at])).tolist()
                fast = [i for i, new in zip(ones, newer) if new]
                if len(fast) < len(ones):
                    slow = sorted(slow + [i for i, new in zip(ones, newer) if not new])
                    at, ts = slots[fast], ts[newer]
                self._append_ones(at, ts, [symbols[i] for i in fast], [blocks[i] for i in fast])  # type: ignore[misc]
            for i in slow:
                self._merge(symbols[i], int(slots[i]), blocks[i], revise=True)  # type: ignore[arg-type]
            return slots

    def fill(self, symbol: str, block: CandleBlock) -> CandleBlock:
        """Merge candles read from the candle source: they fill holes and extend the history but
        never replace a candle held (a call's revision is newer than what the source stored) and
        are not passed to ``on_change``. Returns the newest contiguous run."""
        with self.lock:
            s = self._slot_for(symbol)
            if len(block):
                self._merge(symbol, s, block, revise=False)
        return self.run(symbol)

    def fill_from(self, symbol: str, read: SourceRead) -> CandleBlock:
        """``fill`` from ``read``: the ``capacity`` newest candles of the source at or before the
        newest held (all its newest when nothing is held). The read runs outside the lock."""
        with self.lock:
            s = self.slots.get(symbol)
            until = int(self.last[s]) if s is not None and self.n[s] else None
        block = read(symbol, self.capacity, until)
        if until is not None and len(block) and int(block.ts_ms[-1]) > until:  # a source that ignores the bound
            keep = block.ts_ms <= until
            block = CandleBlock(block.ts_ms[keep], block.ohlcv[keep])
        return self.fill(symbol, block)

    # ---- internals (called holding ``lock``) ---------------------------------------------------

    def _slot_for(self, symbol: str, keep: Container[str] = ()) -> int:
        """The symbol's slot, taken on first use (when ``max_symbols`` are held: the slot of the
        first added symbol not in ``keep``, the batch being merged)."""
        s = self.slots.get(symbol)
        if s is not None:
            return s
        if len(self.slots) >= self.max_symbols:
            s = self.slots.pop(next(old for old in self.slots if old not in keep))
        else:
            s = len(self.slots)
            if s == len(self.n):  # the block is full: twice the slots (at most max_symbols)
                grow = min(max(16, 2 * s), self.max_symbols) - s
                self.ts = np.concatenate((self.ts, np.zeros((grow, self.capacity), dtype=np.int64)))
                self.ohlcv = np.concatenate((self.ohlcv, np.zeros((grow, self.capacity, 5))))
                self.head, self.n, self.run_len, self.last = (
                    np.concatenate((a, np.zeros(grow, dtype=np.int64)))
                    for a in (self.head, self.n, self.run_len, self.last)
                )
        self.slots[symbol] = s
        self.head[s] = self.n[s] = self.run_len[s] = self.last[s] = 0
        return s

    def _tail(self, s: int, k: int) -> CandleBlock:
        """A copy of slot ``s``'s newest ``k`` rows (``k <= n``)."""
        rows = (self.head[s] + self.n[s] - k + np.arange(k)) % self.capacity
        return CandleBlock(self.ts[s, rows], self.ohlcv[s, rows])

    def _append_ones(self, s: np.ndarray, ts: np.ndarray, symbols: list[str], blocks: list[CandleBlock]) -> None:
        """One candle (``blocks``, open times ``ts``) newer than the newest held per distinct slot ``s``."""
        if self.on_change is not None:
            for symbol, block in zip(symbols, blocks, strict=True):
                self.on_change(symbol, block)
        if blocks:
            _append_kernel(self._rings(), s, ts, np.concatenate([b.ohlcv for b in blocks]), self.bar_ms)

    def _replace(self, s: int, block: CandleBlock) -> None:
        k = len(block)
        self.ts[s, :k], self.ohlcv[s, :k] = block.ts_ms, block.ohlcv
        self.head[s], self.n[s], self.last[s] = 0, k, block.ts_ms[-1]
        self.run_len[s] = _run_length(block.ts_ms, self.bar_ms)

    def _merge(self, symbol: str, s: int, block: CandleBlock, revise: bool) -> None:
        if len(block) > self.capacity:  # only the newest ``capacity`` open times can be held
            block = block.tail(self.capacity)
        if self.n[s] == 0:
            self._changed(symbol, block, revise)
            self._replace(s, block)
            return
        newest, first = int(self.last[s]), int(block.ts_ms[0])
        if len(block) == 1 and first == newest:  # the newest candle again (a revision, or a repeat)
            last = (self.head[s] + self.n[s] - 1) % self.capacity
            if revise and not np.array_equal(self.ohlcv[s, last], block.ohlcv[0]):
                self._changed(symbol, block, revise)
                self.ohlcv[s, last] = block.ohlcv[0]
            return
        merged, accepted = _combine(self._tail(s, int(self.n[s])), block, newest, revise, self.capacity)
        if accepted is not None:
            self._changed(symbol, accepted, revise)
            self._replace(s, merged)

    def _changed(self, symbol: str, rows: CandleBlock, revise: bool) -> None:
        if revise and self.on_change is not None:
            self.on_change(symbol, rows)


@njit(cache=True)
def _append_kernel(rings: tuple, slots: np.ndarray, new_ts: np.ndarray, new_ohlcv: np.ndarray, bar: int) -> None:
    """Write candle k (newer than the newest held) at the end of distinct slot ``slots[k]``'s ring."""
    ts, ohlcv, head, n, run, last = rings
    cap = ts.shape[1]
    for k in range(slots.shape[0]):
        s = slots[k]
        pos = (head[s] + n[s]) % cap
        ts[s, pos] = new_ts[k]
        for c in range(5):
            ohlcv[s, pos, c] = new_ohlcv[k, c]
        if n[s] == cap:
            head[s] = (head[s] + 1) % cap
        else:
            n[s] += 1
        run[s] = min(run[s] + 1 if new_ts[k] - last[s] == bar else 1, n[s])
        last[s] = new_ts[k]


@njit(cache=True)
def _newest_kernel(rings: tuple, slots: np.ndarray, view: int, back: int, out: tuple) -> None:
    """``CandleHistory.newest`` into its five output arrays ``out``."""
    ts, ohlcv, head, n, run, _ = rings
    ends, lengths, newest_ts, rows, closes = out
    cap = ts.shape[1]
    for k in range(slots.shape[0]):
        s = slots[k]
        end = head[s] + n[s]
        j = (end - 1) % cap
        ends[k], lengths[k], newest_ts[k] = end, min(run[s], view), ts[s, j]
        for c in range(5):
            rows[k, c] = ohlcv[s, j, c]
        closes[k] = ohlcv[s, (end - 1 - back) % cap, 3]


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
