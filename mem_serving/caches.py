"""Small thread-safe TTL caches (DESIGN §7; what each holds and for how long: docs/serving.md,
"Caches")."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class TTLCache(Generic[V]):
    """Entries expire after ``ttl_s``; beyond ``max_items`` the least recently stored goes."""

    def __init__(self, ttl_s: float, max_items: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_items = max_items
        self._clock = clock
        self._items: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        item = self._items.get(key)
        return None if item is None or item[0] <= self._clock() else item[1]

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
        self._cache: TTLCache[tuple[Hashable, V]] = TTLCache(ttl_s, max_keys, clock)

    def get(self, key: Hashable, version: Hashable) -> V | None:
        item = self._cache.get(key)
        return None if item is None or item[0] != version else item[1]

    def put(self, key: Hashable, version: Hashable, value: V) -> None:
        self._cache.put(key, (version, value))

    def __len__(self) -> int:
        return len(self._cache)
