"""The newest candle of each symbol in QuestDB, read at start-up and every minute, so that
``mem_candles_newest_age_seconds{symbol}`` has a series from the server's start (an alert on
stale candles is not silent after a restart) and follows candles written by others (``mem
ingest``, another replica), not only those this server wrote or read.

A daemon thread ("mem-candle-age") runs one ``LATEST ON ts PARTITION BY symbol`` query per
``interval_s`` and hands each symbol's newest open time to ``observe`` (the candle write-behind's
``observe_stored``, which exports the gauge). QuestDB out of reach: logged once, retried at the
next interval; nothing waits for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from mem_core.questdb.store import CandleStoreError, newest_candle_times
from mem_core.settings import QuestDBSettings

log = logging.getLogger(__name__)

THREAD_NAME = "mem-candle-age"
INTERVAL_S = 60.0


class CandleAgeWatcher:
    """Reads the newest candle per symbol from QuestDB now and every ``interval_s``; ``stop`` ends it."""

    def __init__(
        self, settings: QuestDBSettings, observe: Callable[[str, int], None], interval_s: float = INTERVAL_S
    ) -> None:
        self.settings = settings
        self.interval_s = interval_s
        self._observe = observe
        self._stop = threading.Event()
        self._failing = False
        self.reads = 0  # successful reads (for tests)
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)

    def start(self) -> CandleAgeWatcher:
        self._thread.start()
        return self

    def read_once(self) -> bool:
        """One read; True when QuestDB answered."""
        try:
            newest = newest_candle_times(self.settings)
        except CandleStoreError as exc:
            if not self._failing:
                log.warning(
                    "cannot read the newest candles from QuestDB (retrying every %.0f s): %s", self.interval_s, exc
                )
            self._failing = True
            return False
        self._failing = False
        for symbol, ts in newest.items():
            self._observe(symbol, int(ts.value // 1_000_000))  # ns -> ms
        self.reads += 1
        return True

    def _run(self) -> None:
        while True:
            self.read_once()
            if self._stop.wait(self.interval_s):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
