"""Small thread-safe TTL caches (DESIGN §7).

- Predictions: 5 minutes, one entry per symbol: the prediction for its newest candle (time and
  values) and the model version (``NewestPerKey``). What repeats is a second call about the same
  newest candle (PredictReversal then EnhanceSignal, several strategies on one bar, a retry); a new
  or revised candle, or a new champion, replaces the symbol's entry. So the cache never holds
  more than one prediction per symbol (at most 10,000 symbols) however many candles arrive.
- Memory queries (parameters, strategies, stats): 1 minute, cleared whenever this server records
  a decision or an outcome; the TTL bounds staleness from changes made by other processes
  (Dagster's pattern discovery and performance monitor).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TTLCache(Generic[V]):
    """Least-recently-inserted eviction beyond ``max_items``; entries expire after ``ttl_s``."""

    def __init__(self, ttl_s: float, max_items: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_items = max_items
        self._clock = clock
        self._items: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> V | None:
        now = self._clock()
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] <= now:
                if item is not None:
                    del self._items[key]
                self.misses += 1
                return None
            self.hits += 1
            return item[1]

    def put(self, key: Hashable, value: V) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            self._items[key] = (self._clock() + self.ttl_s, value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def get_or_compute(self, key: Hashable, compute: Callable[[], V]) -> V:
        value = self.get(key)
        if value is None:
            value = compute()
            self.put(key, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class NewestPerKey(Generic[V]):
    """One value per key, for one version of it (e.g. per symbol, for its newest candle and the
    model): a lookup hits only that version; storing another version replaces it. At most
    ``max_keys`` keys (the least recently stored is evicted); entries expire after ``ttl_s``."""

    def __init__(self, ttl_s: float, max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_keys = max_keys
        self._clock = clock
        self._items: OrderedDict[Hashable, tuple[Hashable, float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, version: Hashable) -> V | None:
        item = self._items.get(key)
        if item is None or item[0] != version or item[1] <= self._clock():
            return None
        return item[2]

    def put(self, key: Hashable, version: Hashable, value: V) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            self._items[key] = (version, self._clock() + self.ttl_s, value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_keys:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
