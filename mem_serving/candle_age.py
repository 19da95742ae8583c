"""``mem_candles_newest_age_seconds{symbol}``: the newest candle of each symbol in QuestDB, read at
start-up and every minute (candles written by others: ``mem ingest``, another replica) and told
by the server's own reads and writes. QuestDB out of reach: logged once, retried.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric

from mem_core.questdb.store import CandleStoreError, newest_candle_times
from mem_core.settings import QuestDBSettings

log = logging.getLogger(__name__)

THREAD_NAME = "mem-candle-age"
INTERVAL_S = 60.0


class CandleAgeWatcher:
    """The newest candle per symbol known in QuestDB: read from it now and every ``interval_s``
    (``start``; ``stop`` ends it), and told by whoever writes or reads candles (``observe``)."""

    def __init__(self, settings: QuestDBSettings, interval_s: float = INTERVAL_S) -> None:
        self.settings = settings
        self.interval_s = interval_s
        self.newest: dict[str, int] = {}  # symbol -> newest open time (epoch ms)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._failing = False
        self.reads = 0  # successful reads (for tests)
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)

    def observe(self, symbol: str, ts_ms: int) -> None:
        """QuestDB holds a candle of ``symbol`` opened at ``ts_ms`` (epoch ms)."""
        with self._lock:
            self.newest[symbol] = max(ts_ms, self.newest.get(symbol, ts_ms))

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        """``mem_candles_newest_age_seconds{symbol}`` at scrape time; never negative: a candle ahead
        of this clock (skew allowed by time_sanity, or one QuestDB got elsewhere) must not hold the
        freshness alert off."""
        age = GaugeMetricFamily(
            "mem_candles_newest_age_seconds",
            "Seconds since the open time of the newest candle known in QuestDB (0 for one that opens later)",
            labels=["symbol"],
        )
        now = time.time()
        for symbol, ts_ms in sorted(dict(self.newest).items()):
            age.add_metric([symbol], max(0.0, now - ts_ms / 1000.0))
        yield age

    def start(self) -> CandleAgeWatcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            try:
                newest = newest_candle_times(self.settings)
            except CandleStoreError as exc:
                if not self._failing:
                    log.warning(
                        "cannot read the newest candles from QuestDB (retrying every %.0f s): %s", self.interval_s, exc
                    )
                self._failing = True
            else:
                self._failing = False
                for symbol, ts in newest.items():
                    self.observe(symbol, int(ts.value // 1_000_000))  # ns -> ms
                self.reads += 1
            if self._stop.wait(self.interval_s):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
