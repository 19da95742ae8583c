"""Connection hygiene and authentication (issue 31, point 8): an idle connection is closed, a peer
that does not answer the server's pings is dropped, one connection holds at most
``max_streams`` calls at once, authentication runs before method routing, and the bearer scheme
is case-insensitive (RFC 7235).

Real servers over loopback; the HTTP/2 tests speak raw frames on a TCP socket, as a client that
opens a connection and then does nothing would."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mem_serving.api import SERVICE_NAME, pb
from mem_serving.server import connection_options
from mem_serving.settings import ServingSettings

from .stack import Stack, start_stack

TOKEN = "s3cret-token"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS, PING, GOAWAY = 0x4, 0x6, 0x7
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3


@pytest.fixture
def serve(mlflow_uri: str, tmp_path: Path, warm_features: None) -> Iterator:
    started: list[Stack] = []

    def start(**settings: object) -> Stack:
        stack = start_stack(mlflow_uri, tmp_path / f"memory-{len(started)}" / "memory.db", **settings)
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.channel.close()
        stack.running.stop(grace=1.0)


def _frames(sock: socket.socket, seconds: float) -> tuple[list[tuple[int, int, bytes]], float | None]:
    """Open an HTTP/2 connection on ``sock`` (preface and empty SETTINGS, nothing else: no call,
    no token, pings unanswered) and read frames for up to ``seconds``. Returns the frames (type,
    flags, payload) and when the server closed the connection (None: still open)."""
    sock.sendall(PREFACE + struct.pack(">I", 0)[1:] + bytes([SETTINGS, 0]) + struct.pack(">I", 0))
    started = time.monotonic()
    buffer, frames = b"", []
    while (left := seconds - (time.monotonic() - started)) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return frames, time.monotonic() - started
        if not chunk:
            return frames, time.monotonic() - started
        buffer += chunk
        while len(buffer) >= 9:
            length = int.from_bytes(buffer[:3], "big")
            if len(buffer) < 9 + length:
                break
            frames.append((buffer[3], buffer[4], buffer[9 : 9 + length]))
            buffer = buffer[9 + length :]
    return frames, None


def _settings(frames: list[tuple[int, int, bytes]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for kind, flags, payload in frames:
        if kind == SETTINGS and not flags & 0x1:  # not an ACK
            for i in range(0, len(payload), 6):
                key, value = struct.unpack(">HI", payload[i : i + 6])
                out[key] = value
    return out


def test_an_idle_connection_is_closed_after_the_idle_time(serve) -> None:
    stack = serve(max_idle_s=1.0, keepalive_s=0)
    with socket.create_connection(("127.0.0.1", stack.running.port)) as sock:
        frames, closed = _frames(sock, 10.0)
    assert closed is not None and 0.8 <= closed <= 5.0, (closed, frames)
    assert GOAWAY in [kind for kind, _, _ in frames]
    # the server itself goes on answering new connections
    assert stack.stub.GetParameters(pb.GetParametersRequest(), timeout=10).version


def test_a_connection_used_for_calls_is_closed_once_idle_and_the_client_reconnects(serve) -> None:
    stack = serve(max_idle_s=1.0)
    states: list[grpc.ChannelConnectivity] = []
    stack.channel.subscribe(states.append, try_to_connect=False)
    assert stack.stub.GetParameters(pb.GetParametersRequest(), timeout=10).version
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and states[-1:] != [grpc.ChannelConnectivity.IDLE]:
        time.sleep(0.05)
    assert states[-1] == grpc.ChannelConnectivity.IDLE, states  # the server closed it
    assert stack.stub.GetParameters(pb.GetParametersRequest(), timeout=10).version  # a new one


def test_a_peer_that_does_not_answer_pings_is_dropped(serve) -> None:
    stack = serve(keepalive_s=0.5, keepalive_timeout_s=0.5, max_idle_s=0)
    with socket.create_connection(("127.0.0.1", stack.running.port)) as sock:
        frames, closed = _frames(sock, 10.0)
    assert PING in [kind for kind, _, _ in frames], frames
    assert closed is not None and closed <= 5.0, closed


def test_a_connection_is_asked_to_go_away_at_its_max_age(serve) -> None:
    stack = serve(max_connection_age_s=1.0, max_connection_age_grace_s=0.5, max_idle_s=0, keepalive_s=0)
    with socket.create_connection(("127.0.0.1", stack.running.port)) as sock:
        frames, closed = _frames(sock, 10.0)
    assert GOAWAY in [kind for kind, _, _ in frames], frames
    assert closed is not None and 0.8 <= closed <= 5.0, closed  # the age (+-10 % jitter), then the grace


def test_the_cap_on_concurrent_streams_holds(serve, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = serve(max_streams=2, max_workers=8)
    with socket.create_connection(("127.0.0.1", stack.running.port)) as sock:
        frames, _ = _frames(sock, 0.5)
    assert _settings(frames)[SETTINGS_MAX_CONCURRENT_STREAMS] == 2  # what the server announces

    # the client learns the cap from the server's SETTINGS; a burst sent on a connection that has
    # not had them yet would be refused (REFUSED_STREAM), so the channel connects first
    stack.stub.GetParameters(pb.GetParametersRequest(), timeout=30)
    lock, in_flight, most = threading.Lock(), [0], [0]
    real = stack.handlers.parameters

    def slow() -> object:  # the real call, held open for a while
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(0.4)
        with lock:
            in_flight[0] -= 1
        return real()

    monkeypatch.setattr(stack.handlers, "parameters", slow)
    futures = [stack.stub.GetParameters.future(pb.GetParametersRequest(), timeout=30) for _ in range(6)]
    answered = _answered(futures)
    assert answered >= 3  # the rest waited in the client (or, in a race, were refused before the handler)
    assert most[0] == 2
    # another connection has its own streams
    other = grpc.insecure_channel(stack.address, options=[("grpc.use_local_subchannel_pool", 1)])
    try:
        most[0] = 0
        both = [stack.stub.GetParameters.future(pb.GetParametersRequest(), timeout=30) for _ in range(2)]
        stub = other.unary_unary(
            f"/{SERVICE_NAME}/GetParameters",
            request_serializer=pb.GetParametersRequest.SerializeToString,
            response_deserializer=pb.GetParametersResponse.FromString,
        )
        both += [stub.future(pb.GetParametersRequest(), timeout=30) for _ in range(2)]
        assert _answered(both) == 4
        assert most[0] == 4
    finally:
        other.close()


def _answered(futures: list) -> int:
    """How many calls answered OK; every other one must have been refused before it reached the
    server: UNAVAILABLE with REFUSED_STREAM (a stream sent the instant another ended, before the
    server released it: safe to retry)."""
    ok = 0
    for f in futures:
        try:
            ok += bool(f.result().version)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE and "RST_STREAM" in (exc.details() or ""), exc
    return ok


def _call(channel: grpc.Channel, method: str, authorization: str | None = None) -> grpc.StatusCode:
    metadata = [("authorization", authorization)] if authorization is not None else None
    try:
        channel.unary_unary(method)(pb.GetParametersRequest().SerializeToString(), timeout=10, metadata=metadata)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_the_bearer_scheme_is_case_insensitive(serve) -> None:
    stack = serve(token=TOKEN)
    method = f"/{SERVICE_NAME}/GetParameters"
    for header in (f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER {TOKEN}", f"bEaReR  {TOKEN}"):
        assert _call(stack.channel, method, header) == grpc.StatusCode.OK, header
    for header in (None, TOKEN, f"Basic {TOKEN}", f"bearer{TOKEN}", f"bearer {TOKEN} ", f"bearer x{TOKEN}", "bearer "):
        assert _call(stack.channel, method, header) == grpc.StatusCode.UNAUTHENTICATED, header


def test_authentication_runs_before_method_routing(serve) -> None:
    stack = serve(token=TOKEN)
    for method in (f"/{SERVICE_NAME}/NoSuchMethod", "/no.such.Service/Call", f"/{SERVICE_NAME}/GetParameters"):
        assert _call(stack.channel, method) == grpc.StatusCode.UNAUTHENTICATED, method
        assert _call(stack.channel, method, "Bearer wrong") == grpc.StatusCode.UNAUTHENTICATED, method
    # with the token, routing tells what exists
    assert _call(stack.channel, f"/{SERVICE_NAME}/NoSuchMethod", f"Bearer {TOKEN}") == grpc.StatusCode.UNIMPLEMENTED
    assert _call(stack.channel, f"/{SERVICE_NAME}/GetParameters", f"Bearer {TOKEN}") == grpc.StatusCode.OK
    # the health stays open to probes without a token
    reply = health_pb2_grpc.HealthStub(stack.channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_connection_settings_come_from_the_environment() -> None:
    env = {
        "MEM_SERVING_KEEPALIVE_S": "30",
        "MEM_SERVING_KEEPALIVE_TIMEOUT_S": "10",
        "MEM_SERVING_MAX_IDLE_S": "120",
        "MEM_SERVING_MAX_CONNECTION_AGE_S": "0",
        "MEM_SERVING_MAX_CONNECTION_AGE_GRACE_S": "15",
        "MEM_SERVING_MAX_STREAMS": "64",
    }
    options = dict(connection_options(ServingSettings.from_env(env)))
    assert options == {
        "grpc.keepalive_time_ms": 30_000,
        "grpc.keepalive_timeout_ms": 10_000,
        "grpc.http2.ping_timeout_ms": 10_000,
        "grpc.keepalive_permit_without_calls": 1,
        "grpc.max_connection_idle_ms": 120_000,
        "grpc.max_connection_age_ms": 2**31 - 1,  # 0: never
        "grpc.max_connection_age_grace_ms": 15_000,
        "grpc.max_concurrent_streams": 64,
    }
    defaults = dict(connection_options(ServingSettings.from_env({})))
    assert defaults["grpc.max_connection_idle_ms"] == 300_000 and defaults["grpc.max_concurrent_streams"] == 2048
    for name, bad in (
        ("MEM_SERVING_MAX_STREAMS", "0"),
        ("MEM_SERVING_MAX_IDLE_S", "-1"),
        ("MEM_SERVING_KEEPALIVE_S", "x"),
    ):
        with pytest.raises(ValueError, match=name):
            ServingSettings.from_env({name: bad})
