"""Small thread-safe TTL caches (DESIGN §7; what each holds and for how long: docs/serving.md,
"Caches")."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
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

    def get_many(self, keys: Iterable[Hashable]) -> list[V | None]:
        """``get`` of each key, with one clock read."""
        get, now = self._items.get, self._clock()
        return [None if (item := get(key)) is None or item[0] <= now else item[1] for key in keys]

    def put_many(self, items: Iterable[tuple[Hashable, V]]) -> None:
        """``put`` of each (key, value) in order, under one lock and one clock read."""
        if self.ttl_s <= 0:
            return
        with self._lock:
            entries, expires = self._items, self._clock() + self.ttl_s
            for key, value in items:
                entries[key] = (expires, value)
                entries.move_to_end(key)
            while len(entries) > self.max_items:
                entries.popitem(last=False)

    def get_or_compute(self, key: Hashable, compute: Callable[[], V]) -> V:
        (value,) = self.get_many((key,))
        if value is None:
            value = compute()
            self.put_many(((key, value),))
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
