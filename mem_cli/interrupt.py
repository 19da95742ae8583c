"""Ctrl-C for every ``mem`` command: a KeyboardInterrupt, as Python's own handler raises it, and
remembered in ``requested``: Python prints and drops one raised inside a C callback or a finalizer
(numba's cache hooks through ctypes, the import system's weakref callbacks), and the command goes
on as if nothing had happened. ``deferred`` is for a start whose threads import and load compiled
code (``mem serve``): there a KeyboardInterrupt raised wherever the main thread is can also leave
the import lock held, and the exit then waits forever for a thread that imports (1 of 9 Ctrl-Cs
sent 0.8-1.4 s after the start of ``mem serve`` hung so)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

requested = threading.Event()


def install() -> None:
    """Take SIGINT over from Python's default handler: the same KeyboardInterrupt, remembered (in
    the main thread only, where Python runs signal handlers)."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        requested.set()
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, interrupt)


@contextmanager
def deferred(notice: str) -> Iterator[None]:
    """Inside, a first Ctrl-C only sets ``requested`` and prints ``notice`` (the command looks at it
    when it can stop cleanly); a second raises KeyboardInterrupt at once. The handler before it is
    back after."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()
        os.write(2, notice.encode() + b"\n")  # not sys.stderr: the main thread may be writing to it

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
