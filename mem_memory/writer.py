"""The decision writer process: commits prepared decisions outside the caller's interpreter.

Why a process: Python's ``sqlite3`` lets other threads take the GIL during every statement, and
a busy server thread then keeps the committing thread waiting to get it back (under load, many
times longer than the fsync itself; see docs/memory.md). A child process has its own GIL: the
parent hands it a batch over a pipe and gets one small reply after the COMMIT (``synchronous=
FULL``: the batch is on disk when the reply is sent).

The child holds no key and no other secret: its environment is a short allow-list
(``CHILD_ENV``). It gets decisions already encoded and, when the store is encrypted,
encrypted by the parent (``MemoryStore.prepare_decision``), and writes them with the same
statements as the in-process group commit (``MemoryStore.append_prepared_checked``) in one
``BEGIN IMMEDIATE`` transaction. Other processes' writers are serialised by SQLite as usual.

Protocol (``multiprocessing.connection`` framing over two pipes, and a file in memory shared
with the child for the batches): the child sends ``("ready", pid)`` once the store is open, then
answers every batch (``("batch", max_pages, [ids, tags, payloads, request tags, fingerprint
tags], more)``, a tuple per field and a value per decision, through the pipe for up to 16
decisions; a bigger one is written to the file, its payloads one after the other and then the
rest pickled with their lengths in their place, and the pipe carries ``("file", offset of the
payloads, offset of the rest, its length, more)``; ``max_pages``: the store's size cap,
``MemoryStore.set_max_bytes``; ``more``: a part of a batch whose next part follows, each
written to the file after the one before: the child inserts the parts as they come, in one
transaction committed after the last, and ``("abandon",)`` in place of the next part rolls
them back) with ``("ok", results)``
(per decision its event id, or a ``Replay``/``Conflict`` of its request id, checked inside the
transaction: ``MemoryStore.append_prepared_checked``), ``("integrity", message)`` (a repeated
decision id: nothing written), ``("full", message)`` (the disk is full or the cap reached:
nothing written) or ``("error", message)`` (nothing written, an abandoned batch too). It
exits when the parent's end of the pipe closes, which also happens when the parent dies, so it
never outlives its server (a batch whose last part never came is rolled back).

    python -c "<_CHILD>" <db path> <read fd> <write fd> <batch file fd>
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from mem_memory.errors import MemoryUnavailable, StoreFull
from mem_memory.settings import writer_child_environment
from mem_memory.store import MemoryStore, PreparedDecision

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 30.0
#: How often the child copies the WAL into the database file, between commits.
CHECKPOINT_EVERY_S = 0.1
#: Most decisions sent through the pipe itself (~1.5 KB each; Linux's pipe holds 64 KiB); a
#: bigger batch goes through the file in memory shared with the child, the pipe says where.
INLINE_DECISIONS = 16
#: Decisions in a batch (~0.7 WAL pages each) after which its checkpoint runs at once rather than
#: at the next tick: a candle close's batch, not the few of each paced single call (a checkpoint
#: per commit would add an fsync of the database file to each).
KICK_AFTER = 100
#: Commits after which the checkpoint runs at once too, in the pause after the reply: copied
#: before the next commit, the WAL is restarted by it, and the commits overwrite the WAL file from
#: its beginning instead of growing it (on ext4 an fdatasync that grows a file also commits the
#: journal: 9 pages here, 160 against 330 us, p99 0.3 against 3.9 ms; a restart costs one more
#: fsync, of the WAL header). The tick alone falls beside a commit in a stream of single calls and
#: rarely catches up: bench_serving's sequential WAL grew ~3.5 MB per 100 calls towards
#: ``wal_autocheckpoint`` (33 MB), restarted 2-3 times in 1,000 calls (20-25 times with this).
KICK_EVERY = 32
#: The child's program (``-c`` rather than ``-m``: the package imports this module first).
_CHILD = "import sys; from mem_memory.writer import main; sys.exit(main(sys.argv[1:]))"
Reply = tuple[Any, ...]


class WriterProcess:
    """The parent's handle on one writer child: start, send a batch, receive its reply, stop.

    Not thread-safe: one owner (the async committer) sends a batch and waits for its reply
    before it sends the next.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._proc: subprocess.Popen[bytes] | None = None
        self._to_child: Connection | None = None
        self._from_child: Connection | None = None
        self._buffer: int | None = None
        self._at = 0  # where the next part of a batch sent in parts goes in the file
        self.pid: int | None = None
        self.starts = 0

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and self._from_child is not None

    def start(self) -> None:
        """Spawn the child and wait until it has opened the store (``MemoryUnavailable`` if it
        cannot)."""
        self.stop()
        c_read, p_write = os.pipe()
        p_read, c_write = os.pipe()
        buffer = _batch_buffer()
        package_root = str(Path(__file__).resolve().parents[1])
        env = writer_child_environment(package_root)  # the child needs no key: never give it one
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(self.path), str(c_read), str(c_write), str(buffer)],
                pass_fds=(c_read, c_write, buffer),
                stdin=subprocess.DEVNULL,
                env=env,
                close_fds=True,
                process_group=0,  # a Ctrl-C is the parent's to handle: it stops the child itself
            )
        except BaseException:
            for fd in (c_read, p_write, p_read, c_write, buffer):
                os.close(fd)
            raise
        os.close(c_read)
        os.close(c_write)
        self._buffer, self._at = buffer, 0
        self._proc, self.pid = proc, proc.pid
        self._to_child = Connection(p_write, readable=False)
        self._from_child = Connection(p_read, writable=False)
        self.starts += 1
        if not self._from_child.poll(READY_TIMEOUT_S):
            self.stop()
            raise MemoryUnavailable(f"the memory writer process did not start within {READY_TIMEOUT_S:.0f} s")
        try:
            reply = self._from_child.recv()
        except (EOFError, OSError):
            code = proc.wait(timeout=5)
            self.stop()
            raise MemoryUnavailable(
                f"the memory writer process could not open {self.path} (exit code {code})"
            ) from None
        if reply[0] != "ready":
            self.stop()
            raise MemoryUnavailable(f"the memory writer process failed to start: {reply[1]}")
        log.info("memory writer process %d started for %s", proc.pid, self.path)

    def fileno(self) -> int:
        """The fd the child's replies arrive on (for an event loop's ``add_reader``)."""
        if self._from_child is None:
            raise MemoryUnavailable("the memory writer process is not running")
        return self._from_child.fileno()

    def send(self, batch: Sequence[PreparedDecision], max_pages: int | None = None, *, more: bool = False) -> None:
        """Hand the child one batch to commit under the store's size cap ``max_pages``
        (``MemoryUnavailable`` if it is gone). ``more``: a part of a batch, whose next part
        follows (``send`` again, ``more`` until its last part, or ``abandon``): the child inserts
        each part as it comes and commits them together after the last."""
        if self._to_child is None or self._buffer is None:
            raise MemoryUnavailable("the memory writer process is not running")
        columns = list(zip(*batch))  # columns, not rows: pickled in 0.2 ms rather than 1.4 ms
        try:
            if len(batch) <= INLINE_DECISIONS:  # fits the pipe (empty: the child read the last batch)
                self._to_child.send(("batch", max_pages, columns, more))
            else:  # the payloads as they are, then the rest pickled: never waits for the child
                start = self._at
                at = _write_payloads(self._buffer, columns[2], start)
                columns[2] = tuple(map(len, columns[2]))
                data = pickle.dumps((max_pages, columns), pickle.HIGHEST_PROTOCOL)
                _write_at(self._buffer, data, at)
                self._to_child.send(("file", start, at, len(data), more))
                self._at = at + len(data)
        except (BrokenPipeError, OSError) as exc:
            raise MemoryUnavailable(f"the memory writer process is gone ({exc.__class__.__name__})") from None
        if not more:  # the child has read every part of a batch before it answers it
            self._at = 0

    def abandon(self) -> None:
        """End a batch sent in parts without its last part: the child rolls back what it
        inserted of it and answers ``("error", ...)`` (``MemoryUnavailable`` if it is gone)."""
        if self._to_child is None:
            raise MemoryUnavailable("the memory writer process is not running")
        self._at = 0
        try:
            self._to_child.send(("abandon",))
        except (BrokenPipeError, OSError) as exc:
            raise MemoryUnavailable(f"the memory writer process is gone ({exc.__class__.__name__})") from None

    def recv(self) -> Reply:
        """The child's reply to the batch sent last (blocks until it arrives).
        ``MemoryUnavailable`` when the child died before replying."""
        if self._from_child is None:
            raise MemoryUnavailable("the memory writer process is not running")
        try:
            return self._from_child.recv()
        except (EOFError, OSError):
            raise MemoryUnavailable(f"the memory writer process exited ({self.exit_description()})") from None

    def exit_description(self) -> str:
        if self._proc is None:
            return "not started"
        try:
            code = self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "still running"
        return f"killed by signal {-code}" if code < 0 else f"exit code {code}"

    def stop(self, timeout: float = 5.0) -> None:
        """Close the pipes (the child finishes its batch and exits) and reap it."""
        for conn in (self._to_child, self._from_child):
            if conn is not None:
                conn.close()
        self._to_child = self._from_child = None
        if self._buffer is not None:
            os.close(self._buffer)
            self._buffer = None
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _batch_buffer() -> int:
    """A file in memory for the batches (``memfd``; elsewhere an unlinked temporary file, 0600)."""
    try:
        return os.memfd_create("mem-writer-batch")
    except (AttributeError, OSError):
        fd, name = tempfile.mkstemp(prefix="mem-writer-batch-")
        os.unlink(name)
        return fd


def _write_payloads(fd: int, payloads: Sequence[bytes], at: int) -> int:
    """Write ``payloads`` one after the other into ``fd`` from offset ``at`` (``pwritev``: no
    copy of them in this process); returns the offset after them."""
    for i in range(0, len(payloads), 1024):  # Linux's IOV_MAX
        chunk = payloads[i : i + 1024]
        size = sum(map(len, chunk))
        done = os.pwritev(fd, chunk, at) if hasattr(os, "pwritev") else 0
        if done < size:  # short (not seen on a memfd), or no pwritev here
            _write_at(fd, b"".join(chunk)[done:], at + done)
        at += size
    return at


def _write_at(fd: int, data: bytes, at: int) -> None:
    view, done = memoryview(data), 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], at + done)


def _read_batch(fd: int, start: int, at: int, n: int) -> tuple[int | None, list[Any]]:
    """The batch ``WriterProcess.send`` wrote to ``fd``: its payloads from ``start``, then ``n``
    bytes at ``at`` (the rest, pickled, with the payloads' lengths in their place)."""
    parts, done = [], start
    while done < at + n:
        part = os.pread(fd, at + n - done, done)
        if not part:
            raise EOFError(f"the batch file holds {done} of {at + n} bytes")
        parts.append(part)
        done += len(part)
    data = b"".join(parts)
    max_pages, columns = pickle.loads(memoryview(data)[at - start :])
    payloads, begin = [], 0
    for size in columns[2]:
        payloads.append(data[begin : begin + size])
        begin += size
    columns[2] = payloads
    return max_pages, columns


#: A part of a batch as the child receives it: the store's size cap, the columns, whether more
#: parts follow; None: the parent abandoned the batch.
Part = tuple[int | None, list[Any], bool] | None


def _receive(inbox: Connection, buffer: int) -> Part:
    """The next batch, or part of one, from the parent (``EOFError`` once it is gone)."""
    message = inbox.recv()
    if message[0] == "batch":
        return message[1], message[2], message[3]
    if message[0] == "file":
        return (*_read_batch(buffer, message[1], message[2], message[3]), message[4])
    return None


class _Abandoned(Exception):
    """The parent ended a batch sent in parts without its last part."""


def _commit(store: MemoryStore, first: tuple[int | None, list[Any], bool], receive: Callable[[], Part]) -> Reply:
    """Commit the batch whose first part is ``first`` in one transaction: with ``more``, its next
    parts come from ``receive``, each inserted as it comes (its request ids checked against the
    store and the parts before), and the COMMIT follows the last. A failure rolls back the
    whole batch; its parts still to come are read and dropped. ``EOFError`` (the parent is
    gone) rolls back a batch whose last part never came, and is raised."""
    max_pages, columns, more = first
    results: list[Any] = []
    written: dict[str, Any] | None = {} if more else None  # the request ids of the parts before
    reply: Reply
    try:
        store.apply_max_pages(max_pages)
        with store.group_transaction():
            while True:
                results += store.append_prepared_checked([PreparedDecision(*r) for r in zip(*columns)], written)
                if not more:
                    break
                part = receive()
                if part is None:
                    raise _Abandoned
                columns, more = part[1], part[2]
        return ("ok", results)
    except EOFError:
        raise
    except _Abandoned:
        return ("error", "the server abandoned the batch before its last part")
    except sqlite3.IntegrityError as exc:
        reply = ("integrity", str(exc))
    except StoreFull as exc:
        reply = ("full", str(exc))
    except Exception as exc:  # nothing of the batch is stored (rolled back)
        reply = ("error", f"{exc.__class__.__name__}: {exc}")
    while more:  # the parts of the failed batch still to come
        part = receive()
        more = part is not None and part[2]
    return reply


class Checkpoints:
    """PASSIVE WAL checkpoints on a thread of their own: right after a big commit (``kick``) and
    every ``every_s`` otherwise, until ``stop``.

    A COMMIT that takes the WAL past ``wal_autocheckpoint`` pages copies it into the database
    file and fsyncs it inside the commit: 20-30 ms, the writer's p99. Here the copying happens
    beside the commits, while the parent acknowledges the batch and prepares the next (a PASSIVE
    checkpoint never waits for the writer, and sqlite3 releases the GIL while it runs), so the
    next commit finds the WAL copied and starts it from the beginning: it never checkpoints
    itself while this thread keeps up (the writer's connection raises ``wal_autocheckpoint``:
    ``store.connect.WRITER_PRAGMAS``)."""

    def __init__(self, path: str, every_s: float = CHECKPOINT_EVERY_S) -> None:
        self._wake = threading.Event()
        self._stopped = False
        self._path, self._every_s = path, every_s
        threading.Thread(target=self._run, name="wal-checkpoint", daemon=True).start()

    def kick(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        failing = False
        try:
            while True:
                self._wake.wait(self._every_s)
                self._wake.clear()
                if self._stopped:
                    return
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:  # the commits' own checkpoints still bound the WAL
                    if not failing:
                        log.warning("background WAL checkpoints fail (%s); commits checkpoint as before", exc)
                    failing = True
                else:
                    failing = False
        finally:
            conn.close()


def main(argv: list[str]) -> int:
    """The child: open the store, then commit batch after batch until the parent goes away."""
    path, read_fd, write_fd, buffer = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    # a terminal's Ctrl-C reaches the whole process group: the parent stops this child (it ends
    # when the pipe closes), so the interrupt is not a traceback here
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    inbox, outbox = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    try:
        store = MemoryStore.attach_prepared_writer(path)
    except Exception as exc:
        outbox.send(("failed", f"{exc.__class__.__name__}: {exc}"))
        return 1
    checkpoints = Checkpoints(path)
    outbox.send(("ready", os.getpid()))
    commits = 0
    try:
        while True:
            try:
                first = _receive(inbox, buffer)
                if first is None:  # abandoning a batch the child already answered: nothing to do
                    continue
                reply = _commit(store, first, lambda: _receive(inbox, buffer))
            except EOFError:
                return 0  # the parent is gone; a batch whose last part never came was rolled back
            outbox.send(reply)
            if reply[0] == "ok":
                commits += 1
                if len(reply[1]) >= KICK_AFTER or commits % KICK_EVERY == 0:
                    checkpoints.kick()
    except (BrokenPipeError, OSError):
        return 0  # the parent is gone; whatever was committed stays committed
    finally:
        checkpoints.stop()
        store.close()
