"""Whether the memory can write, as its writes find it, for health reporting.

A write that fails because the store is full (``StoreFull``: no space on its disk, or its size
cap) or out of reach (``MemoryUnavailable``: its PostgreSQL server down, the writer process
gone) turns ``ok`` False; any write that commits turns it True again. While it is False a daemon
thread tries a small write every ``interval_s`` (``MemoryStore.probe_write``), so the memory
notices freed space even when no caller writes (an orchestrator that saw NOT_SERVING sends no
traffic). Listeners hear every change, from whichever thread made it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from mem_memory.errors import MemoryUnavailable, StoreFull

log = logging.getLogger(__name__)

Listener = Callable[[bool], None]


class WriteHealth:
    """See the module docstring. Thread-safe; ``succeeded`` costs one attribute read when ok."""

    def __init__(self, probe: Callable[[], None], interval_s: float = 1.0) -> None:
        self._probe = probe
        self.interval_s = interval_s
        self._ok = True
        self.reason = ""
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    @property
    def ok(self) -> bool:
        return self._ok

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(ok)`` on every change (and once now)."""
        self._listeners.append(listener)
        listener(self._ok)

    def failed(self, exc: BaseException) -> None:
        """A write failed for lack of space or because the store is out of reach."""
        with self._lock:
            if self._closed.is_set() or not self._ok:
                return
            self._ok, self.reason = False, str(exc)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._probing, name="mem-memory-write-probe", daemon=True)
                self._thread.start()
        log.error(
            "memory writes fail: %s; reporting NOT_SERVING until a write succeeds (a probe tries every %g s)",
            exc,
            self.interval_s,
        )
        self._notify(False)

    def succeeded(self) -> None:
        """A write committed."""
        if self._ok:
            return
        with self._lock:
            if self._ok:
                return
            self._ok, self.reason = True, ""
        log.warning("memory writes succeed again; reporting SERVING")
        self._notify(True)

    def _notify(self, ok: bool) -> None:
        for listener in list(self._listeners):
            try:
                listener(ok)
            except Exception:  # one listener's failure must not hide the change from the others
                log.exception("a write-health listener failed")

    def _probing(self) -> None:
        while not self._closed.wait(self.interval_s) and not self._ok:
            try:
                self._probe()
            except (StoreFull, MemoryUnavailable):
                continue
            except Exception:
                log.exception("the memory's write probe failed")
                continue
            self.succeeded()
            return

    def close(self) -> None:
        """Stop probing (idempotent)."""
        self._closed.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
