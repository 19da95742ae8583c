"""The compiled gRPC front (``MEM_SERVING_FRONT=go``): ``front/`` (Go) holds the clients'
connections and hands each MemService call to this process over one local socket; here the
call runs through the same servicer methods as under grpc.aio, on the same event loop.

Why: at 1,000 calls/s grpc.aio's own work (HTTP/2, its completion-queue thread, waking the loop)
took ~0.4 ms of the event loop's ~1 ms per call; over the socket a call costs this process a
frame to parse and one to write (docs/serving.md, "The compiled front").

What stays in grpc.aio: health and reflection (the front proxies every other method to this
process's own server on a loopback port, plaintext, stream for stream), and the whole server when
the front is off. TLS: this process reads and checks the certificate pair as before
(``credentials.CertificatePair``) and sends the front each pair in force; the front serves it
from the next handshake.

Frames, little-endian, each preceded by its length (uint32); the Go side documents them too:

- call (from the front): kind 1 (u8), id (u64), timeout in µs (i64, -1: none), method (u16 +
  bytes), authorization header (u16 + bytes), request bytes;
- cancel (from the front): kind 2 (u8), id (u64): the client's deadline passed or it left;
- reply (to the front): id (u64), status code (u8), message (u16 + bytes), response bytes;
- TLS pair (to the front): id 0, kind 1 (u8), message (u16, empty), key length (u32), key PEM,
  certificate PEM.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from mem_serving.credentials import UNAUTHENTICATED_MESSAGE, CertificatePair, TokenSet
from mem_serving.settings import front_environment, go_build_environment
from mem_serving.startup import StartupError

log = logging.getLogger(__name__)

#: The Go module of the front, and where its binary is built (on first use, like bench/loadgen).
SOURCE = Path(__file__).resolve().parents[1] / "front"
BINARY = Path(__file__).resolve().parents[1] / ".cache" / "bin" / "mem-front"

_CALL, _CANCEL = 1, 2
_TLS_PAIR = 1
_HEAD = struct.Struct("<I")
_CALL_FIXED = struct.Struct("<BQqH")  # kind, id, timeout_us, method length
_REPLY_FIXED = struct.Struct("<IQBH")  # frame length, id, code, message length


class _Abort(Exception):
    """``context.abort`` under the front: ends the call with this status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


class FrameContext:
    """The part of ``grpc.aio.ServicerContext`` the servicer uses: the deadline and ``abort``."""

    __slots__ = ("_deadline",)

    def __init__(self, timeout_s: float | None) -> None:
        self._deadline = None if timeout_s is None else time.monotonic() + timeout_s

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        raise _Abort(code, details)


def _reply(call_id: int, code: int, message: str, payload: bytes = b"") -> bytes:
    text = message.encode()[:65535]
    return _REPLY_FIXED.pack(8 + 1 + 2 + len(text) + len(payload), call_id, code, len(text)) + text + payload


class FrameProtocol(asyncio.Protocol):
    """The event loop's end of the socket: parses calls, runs each as a task, writes replies."""

    def __init__(
        self,
        handlers: dict[str, grpc.RpcMethodHandler],
        tokens: Callable[[], TokenSet | None],
        max_in_flight: int,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self._handlers = handlers
        self._tokens = tokens
        self._max_in_flight = max_in_flight
        self._on_lost = on_lost
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._transport: asyncio.Transport | None = None
        self._outgoing: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        """The front is gone (stopped, or died): its calls' clients have lost their connections."""
        for task in list(self._tasks.values()):
            task.cancel()
        if self._on_lost is not None:
            self._on_lost()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while len(buffer) - start >= 4:
            (size,) = _HEAD.unpack_from(buffer, start)
            if len(buffer) - start - 4 < size:
                break
            self._frame(memoryview(buffer)[start + 4 : start + 4 + size].tobytes())
            start += 4 + size
        del buffer[:start]

    def _frame(self, frame: bytes) -> None:
        kind = frame[0]
        if kind == _CANCEL:
            task = self._tasks.get(int.from_bytes(frame[1:9], "little"))
            if task is not None:
                task.cancel()
            return
        if kind != _CALL:
            log.warning("the gRPC front sent a frame of unknown kind %d; ignored", kind)
            return
        _, call_id, timeout_us, method_len = _CALL_FIXED.unpack_from(frame)
        at = _CALL_FIXED.size
        method = frame[at : at + method_len].decode()
        at += method_len
        auth_len = int.from_bytes(frame[at : at + 2], "little")
        auth = frame[at + 2 : at + 2 + auth_len]
        request = frame[at + 2 + auth_len :]
        refusal = self._refusal(method, auth)
        if refusal is not None:
            self._write(_reply(call_id, refusal[0].value[0], refusal[1]))
            return
        timeout_s = None if timeout_us < 0 else timeout_us / 1e6
        # eager: the call runs now, up to its first await (the memory's durable write), instead
        # of one loop iteration later
        task = asyncio.Task(self._call(call_id, method, timeout_s, request), loop=self._loop, eager_start=True)
        if not task.done():
            self._tasks[call_id] = task

    def _refusal(self, method: str, auth: bytes) -> tuple[grpc.StatusCode, str] | None:
        """Why a call is refused before it runs (what grpc.aio's server and interceptor refuse)."""
        if method not in self._handlers:
            return grpc.StatusCode.UNIMPLEMENTED, "Method not found!"
        tokens = self._tokens()
        if tokens is not None and not tokens.accepts(auth):
            return grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE
        if len(self._tasks) >= self._max_in_flight:
            return grpc.StatusCode.RESOURCE_EXHAUSTED, "Concurrent RPC limit exceeded!"
        return None

    async def _call(self, call_id: int, method: str, timeout_s: float | None, request: bytes) -> None:
        handler = self._handlers[method]
        try:
            reply = await handler.unary_unary(handler.request_deserializer(request), FrameContext(timeout_s))
            frame = _reply(call_id, 0, "", handler.response_serializer(reply))
        except _Abort as abort:
            frame = _reply(call_id, abort.code.value[0], abort.details)
        except asyncio.CancelledError:  # the front cancelled it: the client has its status already
            return
        except Exception:
            log.exception("%s failed outside the servicer's mapping", method)
            frame = _reply(call_id, grpc.StatusCode.UNKNOWN.value[0], "Unexpected error")
        finally:
            self._tasks.pop(call_id, None)
        self._write(frame)

    def send_pair(self, key_pem: bytes, cert_pem: bytes) -> None:
        """Hand the front the TLS pair to serve from its next handshake (on the loop)."""
        self._write(_reply(0, _TLS_PAIR, "", struct.pack("<I", len(key_pem)) + key_pem + cert_pem))

    def _write(self, frame: bytes) -> None:
        """Queue ``frame``; the frames of one loop iteration go out in one write."""
        if not self._outgoing:
            self._loop.call_soon(self._flush)
        self._outgoing.append(frame)

    def _flush(self) -> None:
        frames, self._outgoing = self._outgoing, []
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(frames))


def binary() -> Path:
    """The front's binary, built from ``front/`` when missing or older than its sources."""
    sources = [p for p in SOURCE.iterdir() if p.suffix in (".go", ".mod", ".sum")] if SOURCE.is_dir() else []
    if not sources:
        raise StartupError(f"MEM_SERVING_FRONT=go needs the front's sources in {SOURCE}")
    if BINARY.exists() and BINARY.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
        return BINARY
    go = shutil.which("go")
    if go is None:
        raise StartupError("MEM_SERVING_FRONT=go needs Go to build the front (front/); install Go or unset it")
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    built = subprocess.run(
        [go, "build", "-o", str(BINARY), "."],
        cwd=SOURCE,
        capture_output=True,
        text=True,
        env=go_build_environment(),
    )
    if built.returncode != 0:
        raise StartupError(f"cannot build the front (front/): {built.stderr.strip()[-500:]}")
    log.info("built the gRPC front: %s", BINARY)
    return BINARY


class Front:
    """The front process and the loop's end of its socket: started on the server's loop, started
    again when it dies (its clients reconnect to the same port), stopped by ``stop``."""

    def __init__(
        self,
        host: str,
        port: int,
        upstream_port: int,
        handlers: dict[str, grpc.RpcMethodHandler],
        tokens: Callable[[], TokenSet | None],
        max_in_flight: int,
        grace: float,
        tls: CertificatePair | None = None,
    ) -> None:
        self.host, self.port = host, port
        self._upstream_port = upstream_port
        self._handlers, self._tokens, self._max_in_flight = handlers, tokens, max_in_flight
        self._grace = grace
        self._tls = tls
        self.process: subprocess.Popen[str] | None = None
        self.protocol: FrameProtocol | None = None
        self.restarts = 0
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Start the front (on the server's loop); ``StartupError`` when it cannot bind."""
        loop = self._loop = asyncio.get_running_loop()
        path = await loop.run_in_executor(None, binary)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        address = f"{self.host}:{self.port}"
        try:
            process = subprocess.Popen(
                [str(path), "-listen", address, "-upstream", f"127.0.0.1:{self._upstream_port}"]
                + ["-grace", str(self._grace), "-fd", str(theirs.fileno())]
                + (["-tls"] if self._tls is not None else []),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                text=True,
                pass_fds=(theirs.fileno(),),
                env=front_environment(),  # no secret reaches it
            )
        finally:
            theirs.close()
        first = await loop.run_in_executor(None, _first_line, process)
        if not first.startswith("port "):
            process.wait()
            ours.close()
            if "bind" in first:
                raise StartupError(
                    first.removeprefix("error: ") + "; choose another port with MEM_SERVING_PORT or --port"
                )
            raise StartupError(f"the gRPC front did not start: {first or 'no output'}")
        _, protocol = await loop.create_connection(
            lambda: FrameProtocol(self._handlers, self._tokens, self._max_in_flight, self._lost), sock=ours
        )
        if self._tls is not None:
            if self.process is None:  # the first start: follow the reloads from now on
                self._tls.subscribe(self._pair_changed)
            protocol.send_pair(*self._tls.current)
        self.process, self.protocol, self.port = process, protocol, int(first.split()[1])

    def _pair_changed(self, key: bytes, cert: bytes) -> None:
        """A reload changed the TLS pair (the credentials' watcher or SIGHUP): hand it over."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._send_pair, key, cert)

    def _send_pair(self, key: bytes, cert: bytes) -> None:
        if self.protocol is not None:
            self.protocol.send_pair(key, cert)

    def _lost(self) -> None:
        if self._stopping or self._loop is None:
            return
        code = self.process.poll() if self.process is not None else None
        log.error("the gRPC front exited (code %s); starting another on port %d", code, self.port)
        self._loop.create_task(self._restart())

    async def _restart(self) -> None:
        """Start the front again, every 0.1 s at first and at most every 5 s, until it runs."""
        pause = 0.1
        while not self._stopping:
            if self.process is not None:
                await asyncio.get_running_loop().run_in_executor(None, self.process.wait)
            try:
                await self.start()
            except StartupError as exc:
                log.error("the gRPC front could not start again: %s", exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            self.restarts += 1
            log.info("the gRPC front runs again on port %d", self.port)
            return

    def stop(self, grace: float | None) -> None:
        """SIGTERM: the front stops taking calls and lets those in flight finish within ``grace``."""
        self._stopping = True
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=(grace or 0) + 5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _first_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    threading.Thread(target=process.stdout.read, daemon=True).start()  # never block the front on a full pipe
    return line
