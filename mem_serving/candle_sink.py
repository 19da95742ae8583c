"""Write-behind of the candles the engine sends, so QuestDB stays current without touching the hot
path (docs/serving.md, "Candles to QuestDB"): ``offer`` appends to a bounded queue; a thread writes
it through one kept-open ``CandleWriter``. Every offered row is queued or dropped, and
``queued = written + pending + dropped(shutdown) + dropped(error)`` at all times.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from mem_core.questdb.store import (
    PRICE_COLUMNS,
    CandleStoreError,
    CandleWriter,
    wait_for_wal,
)
from mem_core.settings import QuestDBSettings
from mem_serving.types import CandleBlock

log = logging.getLogger(__name__)

THREAD_NAME = "mem-candle-sink"
RETRY_MIN_S = 0.5
DROP_REASONS = ("queue_full", "shutdown", "error")


@dataclass(frozen=True, slots=True)
class Offer:
    """What became of one offer: rows queued or dropped, and the rows pending after it."""

    queued: int
    dropped: int
    pending: int


@dataclass(slots=True)
class SinkStats:
    queued: int = 0
    written: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    pending: int = 0
    failures: int = 0
    #: Unix time of the last successful write; None before the first.
    last_write: float | None = None
    #: The last write error (None once a write succeeds again).
    last_error: str | None = None


def batch_frame(items: list[tuple[str, CandleBlock]]) -> pd.DataFrame:
    """Queued blocks as one candle frame in the store's column order and dtypes; of the rows with
    the same (symbol, ts) only the last (the newest revision) is kept."""
    ts = np.concatenate([b.ts_ms for _, b in items])
    ohlcv = np.concatenate([b.ohlcv for _, b in items])
    names = sorted({s for s, _ in items})
    index = {name: i for i, name in enumerate(names)}
    codes = np.repeat(np.array([index[s] for s, _ in items], dtype=np.int32), [len(b) for _, b in items])
    columns: dict[str, Any] = {"symbol": pd.Categorical.from_codes(codes, names)}
    columns.update((c, ohlcv[:, j]) for j, c in enumerate(PRICE_COLUMNS))
    columns["ts"] = pd.DatetimeIndex((ts * 1000).astype("datetime64[us]")).tz_localize("UTC")
    return pd.DataFrame(columns).drop_duplicates(["symbol", "ts"], keep="last", ignore_index=True)


class CandleSink:
    """A bounded queue of candles and the thread that writes it to QuestDB (module doc); thread-safe.
    ``offer`` never blocks on I/O; ``flush`` waits for the rows queued before it; ``close`` drains."""

    def __init__(
        self,
        settings: QuestDBSettings,
        *,
        max_rows: int = 100_000,
        batch_rows: int = 10_000,
        flush_s: float = 1.0,
        drain_s: float = 10.0,
        retry_max_s: float = 30.0,
        on_written: Callable[[str, int], None] = lambda symbol, ts_ms: None,
    ) -> None:
        if max_rows <= 0 or batch_rows <= 0 or flush_s <= 0:
            raise ValueError("max_rows, batch_rows and flush_s must be positive")
        self.settings = settings
        self.max_rows = max_rows
        self.batch_rows = batch_rows
        self.flush_s = flush_s
        self.drain_s = drain_s
        self.retry_max_s = max(retry_max_s, RETRY_MIN_S)
        self._on_written = on_written  # (symbol, newest open time in ms) of each block written
        self._lock = threading.Lock()
        self._done_cond = threading.Condition(self._lock)
        self._queue: deque[tuple[str, CandleBlock]] = deque()
        self._stats = SinkStats()  # under the lock
        self._wake = threading.Event()
        self._closing = False
        self._deadline = math.inf
        self._writer = CandleWriter(settings)
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def offer(self, symbol: str, block: CandleBlock) -> Offer:
        """Queue ``block`` for QuestDB, or drop it whole when the queue cannot take it."""
        n = len(block)
        with self._lock:
            if n == 0:
                return Offer(0, 0, self._stats.pending)
            if self._closing or self._stats.pending + n > self.max_rows:
                self._stats.dropped["shutdown" if self._closing else "queue_full"] += n
                return Offer(0, n, self._stats.pending)
            self._queue.append((symbol, block))
            self._stats.pending += n
            self._stats.queued += n
            pending = self._stats.pending
            # a full batch is written at once, but not during an outage: there the writer keeps
            # its backoff (waking it on every call made a retry storm that starved the calls)
            wake = pending >= self.batch_rows and self._stats.last_error is None
        if wake:
            self._wake.set()
        return Offer(n, 0, pending)

    def stats(self) -> SinkStats:
        with self._lock:
            return replace(self._stats, dropped=dict(self._stats.dropped))

    def flush(self, timeout: float = 30.0) -> bool:
        """Write now and wait until every row queued before this call is written (or dropped) and
        QuestDB has applied it (readable); False when ``timeout`` ran out first (QuestDB down)."""
        deadline = time.monotonic() + timeout
        with self._done_cond:
            target = self._stats.queued
            self._wake.set()
            if not self._done_cond.wait_for(lambda: self._done() >= target, timeout):
                return False
            wrote = self._stats.written > 0
        if wrote:
            try:
                wait_for_wal(self.settings, timeout=max(0.1, deadline - time.monotonic()))
            except CandleStoreError:
                return False
        return True

    def close(self) -> None:
        """Stop taking candles, drain the queue for at most ``drain_s`` seconds, stop the thread.
        Idempotent."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._deadline = time.monotonic() + self.drain_s
        self._wake.set()
        # a write in progress may take the questdb client's own retry time (10 s) on top
        self._thread.join(self.drain_s + 15.0)
        if self._thread.is_alive():
            log.error(
                "the candle write-behind did not stop within %.0f s; %d candles pending",
                self.drain_s + 15.0,
                self._stats.pending,
            )

    def register(self, registry: CollectorRegistry) -> None:
        """Expose the sink's metrics (module doc) in ``registry``."""
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        """The sink's counters and gauges, computed when Prometheus scrapes."""
        s = self.stats()
        yield CounterMetricFamily(
            "mem_candles_queued", "Candles queued for QuestDB by the write-behind", value=s.queued
        )
        yield CounterMetricFamily("mem_candles_written", "Queued candles written to QuestDB", value=s.written)
        dropped = CounterMetricFamily(
            "mem_candles_dropped", "Candles not written: queue full, shutdown, error", labels=["reason"]
        )
        for reason, n in s.dropped.items():
            dropped.add_metric([reason], n)
        yield dropped
        yield GaugeMetricFamily("mem_candles_pending", "Queued candles not yet written", value=s.pending)
        yield CounterMetricFamily("mem_candles_write_failures", "Failed write attempts (retried)", value=s.failures)
        if s.last_write is not None:  # absent until the first write: no NaN in the exposition
            yield GaugeMetricFamily(
                "mem_candles_last_write_timestamp_seconds", "Unix time of the last successful write", value=s.last_write
            )

    def _done(self) -> int:
        return self._stats.written + self._stats.dropped["shutdown"] + self._stats.dropped["error"]

    def _run(self) -> None:
        delay, backoff = self.flush_s, RETRY_MIN_S
        while True:
            self._wake.wait(delay)
            self._wake.clear()
            ok = self._drain()
            closing, deadline = self._closing, self._deadline
            if closing and (self._stats.pending == 0 or time.monotonic() >= deadline):
                break
            if ok:
                delay, backoff = self.flush_s, RETRY_MIN_S
            else:
                delay, backoff = backoff, min(backoff * 2.0, self.retry_max_s)
            if closing:
                delay = min(delay, max(0.0, deadline - time.monotonic()))
        self._writer.close()
        with self._done_cond:
            left = self._stats.pending
            self._queue.clear()
            self._stats.pending = 0
            self._stats.dropped["shutdown"] += left
            self._done_cond.notify_all()
        if left:
            log.error("stopped with %d candles not written to QuestDB (last error: %s)", left, self._stats.last_error)

    def _take(self) -> tuple[list[tuple[str, CandleBlock]], int]:
        """The oldest queued blocks, up to ``batch_rows`` rows (at least one block)."""
        items: list[tuple[str, CandleBlock]] = []
        rows = 0
        with self._lock:
            while self._queue and (not items or rows + len(self._queue[0][1]) <= self.batch_rows):
                item = self._queue.popleft()
                items.append(item)
                rows += len(item[1])
        return items, rows

    def _drain(self) -> bool:
        """Write what is queued (True), or stop at the first failed write (False). Rows that
        arrive meanwhile wait for the next wake-up unless a whole batch of them is queued, so a
        steady trickle costs one write per ``flush_s``."""
        while True:
            items, rows = self._take()
            if not items:
                return True
            try:
                self._writer.write(batch_frame(items))
            except CandleStoreError as exc:
                with self._lock:
                    self._queue.extendleft(reversed(items))
                    self._stats.failures += 1
                    new_outage = self._stats.last_error is None
                    self._stats.last_error = str(exc)
                if new_outage:
                    log.warning(
                        "cannot write candles to QuestDB, keeping %d in the queue and retrying: %s",
                        self._stats.pending,
                        exc,
                    )
                return False
            except Exception:  # not an outage: retrying would block the queue forever
                log.exception("dropping a batch of %d candles that cannot be written", rows)
                with self._done_cond:
                    self._stats.pending -= rows
                    self._stats.dropped["error"] += rows
                    self._done_cond.notify_all()
            else:
                with self._done_cond:
                    self._stats.pending -= rows
                    self._stats.written += rows
                    self._stats.last_write = time.time()
                    recovered = self._stats.last_error is not None
                    self._stats.last_error = None
                    for symbol, block in items:
                        self._on_written(symbol, int(block.ts_ms[-1]))  # blocks are ascending
                    self._done_cond.notify_all()
                if recovered:
                    log.info("QuestDB takes candles again; %d pending", self._stats.pending)
            if self._stats.pending < self.batch_rows and not self._closing:
                return True


def observing(source: Any, observe: Callable[[str, int], None]) -> Any:
    """``source`` (a handlers ``CandleSource``) that tells ``observe`` (``CandleAgeWatcher``) the
    newest candle it read, so the freshness metric covers symbols served from QuestDB too; keeps
    ``close`` and ``reader``."""

    def read(symbol: str, n: int, until_ms: int | None = None) -> CandleBlock:
        block = source(symbol, n, until_ms)
        if len(block):
            observe(symbol, block.newest_ts_ms)
        return block

    read.close = getattr(source, "close", lambda: None)  # type: ignore[attr-defined]
    read.reader = getattr(source, "reader", None)  # type: ignore[attr-defined]
    return read
