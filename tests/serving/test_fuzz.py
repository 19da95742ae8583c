"""Property: whatever a client sends, the server answers with a status within the deadline, never
an unexpected INTERNAL for a well-formed message, and stays SERVING."""

from __future__ import annotations

import math

import grpc
import pandas as pd
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mem_serving.api import SERVICE_NAME, pb

from .helpers import candles_pb
from .stack import Stack

METHODS = [m.name for m in pb.DESCRIPTOR.services_by_name["MemService"].methods]
#: Statuses a well-formed message may get; INTERNAL would be a server bug.
EXPECTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.ALREADY_EXISTS,
}
FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -1.0, 0.5, 1.0, 100.0, 1e308]))
seconds = st.one_of(st.integers(-(2**40), 2**40), st.integers(1_600_000_000, 1_800_000_000))


@st.composite
def candle(draw) -> pb.Candle:
    c = pb.Candle(open=draw(floats), high=draw(floats), low=draw(floats), close=draw(floats), volume=draw(floats))
    if draw(st.booleans()):
        c.ts.seconds = draw(seconds)
        c.ts.nanos = draw(st.integers(-5, 2_000_000_000))
    return c


@st.composite
def enhance_request(draw) -> pb.EnhanceSignalRequest:
    req = pb.EnhanceSignalRequest(
        symbol=draw(st.one_of(st.text(max_size=80), st.sampled_from(["BTCUSDT", "FUZZ", ""]))),
        action=draw(st.integers(-3, 9)),
        base_confidence=draw(floats),
        price=draw(floats),
        strategy=draw(st.text(max_size=300)),
        session_id=draw(st.text(max_size=20)),
        candles=draw(st.lists(candle(), max_size=60)),
        market_context=draw(st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=5)),
    )
    if draw(st.booleans()):
        req.ml_prediction.CopyFrom(
            pb.MlPrediction(
                confidence=draw(floats), direction=draw(st.integers(-1, 4)), model_version=draw(st.text(max_size=70))
            )
        )
    if draw(st.booleans()):
        req.time.seconds = draw(seconds)
    return req


@st.composite
def any_request(draw) -> tuple[str, bytes]:
    method = draw(st.sampled_from(METHODS))
    if method == "EnhanceSignal":
        msg = draw(enhance_request())
    elif method == "PredictReversal":
        msg = pb.PredictReversalRequest(
            symbol=draw(st.text(max_size=20)), candles=draw(st.lists(candle(), max_size=60))
        )
    elif method == "LogOutcome":
        msg = pb.LogOutcomeRequest(
            decision_id=draw(st.text(max_size=140)),
            entry_price=draw(floats),
            exit_price=draw(floats),
            size=draw(floats),
            pnl=draw(floats),
            pnl_pct=draw(floats),
            exit_reason=draw(st.text(max_size=300)),
        )
    elif method == "GetParameters":
        msg = pb.GetParametersRequest()
    else:
        msg = pb.ListStrategiesRequest(include_deprecated=draw(st.booleans()))
    return method, msg.SerializeToString()


def _call(stack: Stack, method: str, payload: bytes) -> grpc.StatusCode:
    call = stack.channel.unary_unary(f"/{SERVICE_NAME}/{method}", request_serializer=None, response_deserializer=None)
    try:
        call(payload, timeout=5)
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        return exc.code()


def _healthy(stack: Stack) -> bool:
    reply = health_pb2_grpc.HealthStub(stack.channel).Check(
        health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5
    )
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def test_well_formed_random_requests_get_an_expected_status(stack: Stack, serve_candles: pd.DataFrame) -> None:
    # give BTCUSDT a history so random single candles may reach the model too
    stack.stub.PredictReversal(
        pb.PredictReversalRequest(symbol="BTCUSDT", candles=candles_pb(serve_candles.iloc[:400])), timeout=10
    )

    @FUZZ
    @given(any_request())
    def check(request: tuple[str, bytes]) -> None:
        code = _call(stack, *request)
        assert code in EXPECTED, (request, code)

    check()
    assert _healthy(stack)


def test_random_bytes_get_a_status_and_the_server_stays_up(stack: Stack) -> None:
    @FUZZ
    @given(st.sampled_from(METHODS), st.binary(max_size=300))
    def check(method: str, payload: bytes) -> None:
        code = _call(stack, method, payload)
        # undecodable bytes are INVALID_ARGUMENT like bad fields; never INTERNAL
        assert code in EXPECTED, code

    check()
    assert _healthy(stack)
    assert stack.stub.GetParameters(pb.GetParametersRequest(), timeout=5).version


def test_nan_is_never_echoed_as_a_decision(stack: Stack) -> None:
    code = _call(
        stack,
        "EnhanceSignal",
        pb.EnhanceSignalRequest(symbol="X", action=1, base_confidence=math.nan, price=1).SerializeToString(),
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
