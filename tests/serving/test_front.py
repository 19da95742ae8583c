"""The compiled gRPC front (``MEM_SERVING_FRONT=go``, ``mem_serving.front``): what it adds to the
server. The service's own behaviour behind it is tested by ``test_server.py`` (run behind both)
and, all of it, by ``MEM_TEST_FRONT=go bash scripts/test.sh tests/serving``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mem_serving.api import MemServiceStub, pb
from mem_serving.front import FrameProtocol
from mem_serving.startup import StartupError

from .helpers import children, mem_serve_process, self_signed_cert
from .stack import ModelStore, Stack, start_stack
from .test_grpcurl_client import grpcurl  # noqa: F401 - the fixture that builds grpcurl

ROOT = Path(__file__).resolve().parents[2]


#: The ``stack`` fixture's servers here are behind the front.
FRONTS = ("go",)


def test_health_and_reflection_reach_the_server_through_the_front(stack: Stack, grpcurl: str) -> None:  # noqa: F811
    """The front proxies what it does not serve itself: unary health, the Watch stream, and
    reflection's bidirectional stream (grpcurl lists the services through it)."""
    assert stack.running.front is not None and stack.running.port == stack.running.front.port
    health = health_pb2_grpc.HealthStub(stack.channel)
    assert health.Check(health_pb2.HealthCheckRequest(service="mem.v1.MemService"), timeout=10).status == 1
    with pytest.raises(grpc.RpcError) as err:
        health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()
    listed = subprocess.run(
        [grpcurl, "-plaintext", "-max-time", "20", stack.address, "list"], capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    assert {"mem.v1.MemService", "grpc.health.v1.Health"} <= set(listed.stdout.split())
    with pytest.raises(grpc.RpcError) as err:  # a method the service lacks
        stack.channel.unary_unary("/mem.v1.MemService/Nope")(b"", timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_tls_is_served_by_the_front_and_a_reloaded_pair_from_the_next_handshake(
    mlflow_uri: str, tmp_path: Path, warm_features: None
) -> None:
    (tmp_path / "next").mkdir()
    cert, key = self_signed_cert(tmp_path)
    key.chmod(0o600)
    s = start_stack(mlflow_uri, tmp_path / "memory.db", tls_cert=cert, tls_key=key, token="t0k", front="go")
    try:
        port = s.running.port
        assert _served_cert(port) == _der(cert)
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"localhost:{port}", creds) as channel:
            reply = MemServiceStub(channel).GetParameters(
                pb.GetParametersRequest(), timeout=10, metadata=(("authorization", "Bearer t0k"),)
            )
            assert reply.version
        with grpc.insecure_channel(f"localhost:{port}") as plain, pytest.raises(grpc.RpcError):
            MemServiceStub(plain).GetParameters(pb.GetParametersRequest(), timeout=3)
        second_cert, second_key = self_signed_cert(tmp_path / "next")
        cert.write_bytes(second_cert.read_bytes())
        key.write_bytes(second_key.read_bytes())
        assert s.running.reload_credentials("test")["certificate"]
        deadline = time.monotonic() + 10
        while _served_cert(port) != _der(cert) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _served_cert(port) == _der(cert)
    finally:
        s.channel.close()
        s.running.stop(grace=1.0)


def test_a_front_that_dies_is_started_again_on_the_same_port(stack: Stack) -> None:
    front = stack.running.front
    assert front is not None and front.process is not None
    first, port = front.process.pid, front.port
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while (front.restarts == 0 or front.process.pid == first) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert front.restarts == 1 and front.process.pid != first and front.port == port
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:  # a client reconnecting
        assert MemServiceStub(channel).GetParameters(pb.GetParametersRequest(), timeout=10).version


def _served_cert(port: int) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert(binary_form=True) or b""


def _der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def test_a_busy_port_is_one_startup_error_and_leaves_nothing_running(
    mlflow_uri: str, tmp_path: Path, warm_features: None
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        before = _fronts()
        with pytest.raises(StartupError, match=f"127.0.0.1:{port}"):
            start_stack(mlflow_uri, tmp_path / "memory.db", port=port, front="go")
        assert _fronts() <= before


def _fronts() -> set[int]:
    return {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _comm(p) == "mem-front"}


def _comm(proc: Path) -> str:
    try:
        return (proc / "comm").read_text().strip()
    except OSError:
        return ""


def test_the_front_holds_no_secret_and_leaves_when_mem_serve_is_killed(
    mlflow_uri: str, model_store: ModelStore, tmp_path: Path
) -> None:
    """SIGKILL of ``mem serve`` closes the front's socket: the front stops within seconds, so no
    orphan holds the port. Its environment has none of the ``MEM_*`` variables (the token)."""
    env = {
        **os.environ,
        "MEM_HOME": str(tmp_path),
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "MEM_QUESTDB_PG_PORT": "1",
        "MEM_SERVING_FRONT": "go",
        "MEM_SERVING_TOKEN": "tok-in-env",
    }
    proc = mem_serve_process(env, tmp_path / "m.db", metrics_port=-1)
    try:
        ready = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
        with grpc.insecure_channel(ready["grpc"]) as channel:
            reply = MemServiceStub(channel).GetParameters(
                pb.GetParametersRequest(), timeout=10, metadata=(("authorization", "Bearer tok-in-env"),)
            )
            assert reply.version
        fronts = [c for c in children(proc.pid) if _comm(Path(f"/proc/{c}")) == "mem-front"]
        assert len(fronts) == 1
        environ = Path(f"/proc/{fronts[0]}/environ").read_bytes().split(b"\0")
        assert not [v for v in environ if v.startswith(b"MEM_") or b"tok-in-env" in v]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{fronts[0]}").exists() and _comm(Path(f"/proc/{fronts[0]}")) == "mem-front":
            assert time.monotonic() < deadline, "the front outlived mem serve"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- the frame protocol, in process


class _Transport:
    """Collects what the protocol writes (a fake: the protocol's unit tests need no front)."""

    def __init__(self) -> None:
        self.out = bytearray()

    def write(self, data: bytes) -> None:
        self.out += data

    def is_closing(self) -> bool:
        return False

    def replies(self) -> list[tuple[int, int, str, bytes]]:
        found, at = [], 0
        while at < len(self.out):
            size, call_id, code, n = struct.unpack_from("<IQBH", self.out, at)
            message = bytes(self.out[at + 15 : at + 15 + n]).decode()
            found.append((call_id, code, message, bytes(self.out[at + 15 + n : at + 4 + size])))
            at += 4 + size
        return found


def _call(call_id: int, method: str, request: bytes, auth: bytes = b"", timeout_us: int = -1) -> bytes:
    body = struct.pack("<BQqH", 1, call_id, timeout_us, len(method)) + method.encode()
    body += struct.pack("<H", len(auth)) + auth + request
    return struct.pack("<I", len(body)) + body


def _cancel(call_id: int) -> bytes:
    return struct.pack("<IBQ", 9, 2, call_id)


def test_frames_split_anywhere_are_reassembled_and_refusals_need_no_handler() -> None:
    from mem_serving.credentials import TokenSet

    release = asyncio.Event()
    seen: list[tuple[bytes, float | None]] = []

    async def echo(request: bytes, context) -> bytes:
        seen.append((request, context.time_remaining()))
        if request == b"wait":
            await release.wait()
        if request == b"fail":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "symbol: bad")
        return request.upper()

    handler = grpc.unary_unary_rpc_method_handler(echo, request_deserializer=bytes, response_serializer=bytes)

    async def run() -> list[tuple[int, int, str, bytes]]:
        protocol = FrameProtocol({"/m/Echo": handler}, lambda: TokenSet(["k"]), max_in_flight=2)
        transport = _Transport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        ok = b"Bearer k"
        stream = (
            _call(1, "/m/Echo", b"abc", ok, timeout_us=2_000_000)
            + _call(2, "/m/Echo", b"abc", b"Bearer x")
            + _call(3, "/m/Nope", b"", ok)
            + _call(4, "/m/Echo", b"fail", ok)
        )
        for i in range(0, len(stream), 7):  # the socket may cut frames anywhere
            protocol.data_received(stream[i : i + 7])
        await asyncio.sleep(0.05)
        protocol.data_received(_call(5, "/m/Echo", b"wait", ok) + _call(6, "/m/Echo", b"wait", ok))
        protocol.data_received(_call(7, "/m/Echo", b"third", ok))  # two are in flight: refused
        await asyncio.sleep(0.05)
        protocol.data_received(_cancel(5))  # the client left: no reply for 5
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.sleep(0.05)
        return transport.replies()

    replies = {r[0]: r[1:] for r in asyncio.run(run())}
    assert replies[1] == (0, "", b"ABC")
    assert replies[2] == (grpc.StatusCode.UNAUTHENTICATED.value[0], "missing or invalid bearer token", b"")
    assert replies[3][0] == grpc.StatusCode.UNIMPLEMENTED.value[0]
    assert replies[4] == (grpc.StatusCode.INVALID_ARGUMENT.value[0], "symbol: bad", b"")
    assert replies[7][0] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert 5 not in replies and replies[6] == (0, "", b"WAIT")
    assert seen[0][1] is not None and 1.9 < seen[0][1] <= 2.0 and seen[1][1] is None
