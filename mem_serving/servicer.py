"""The gRPC servicer (grpc.aio): thin. Each method converts the request (validated once, into
one request record), awaits a handler and converts the reply; every exception goes through
``errors.to_status`` (the one mapping) and ends the call with that status. The server never dies
of a request. EnhanceSignals answers every item with its own status instead.

Where a call runs is the handler's business for PredictReversal, EnhanceSignal and
EnhanceSignals (on the event loop; only QuestDB reads go to the thread pool, ``executor``). The
other calls run their synchronous handler in the pool: LogOutcome's commit, the memory queries
behind GetParameters and ListStrategies, GetModelInfo's registry read, PushCandles (converting up
to 5000 candles; the write to QuestDB is the candle sink's, in the background). A call cancelled
while awaiting (deadline, client gone, server stopping) ends with ``CancelledError``, which is
not mapped to a status.

Register it with ``add_to_server``: a request whose bytes do not parse as the method's request
message ends in INVALID_ARGUMENT "request: the bytes do not decode as mem.v1.<Request>" and is
counted so (a client's garbage, not a server bug; grpc.aio alone would answer UNKNOWN with the
parser's message, the synchronous grpc server INTERNAL).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

import grpc

from mem_serving import converters as conv
from mem_serving._gen.mem.v1 import mem_pb2 as pb
from mem_serving._gen.mem.v1 import mem_pb2_grpc
from mem_serving.coalesce import Coalescer
from mem_serving.errors import to_status
from mem_serving.handlers import Budget, Handlers
from mem_serving.time_sanity import FutureLimit
from mem_serving.types import EnhanceQuery, EnhanceResult

log = logging.getLogger(__name__)

T = TypeVar("T")


class Undecodable:
    """What the request deserializers return for bytes that do not parse."""

    def __init__(self, message: str) -> None:
        self.message = message


def _lenient(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    kind = getattr(deserialize, "__self__", None)
    name = kind.DESCRIPTOR.full_name if kind is not None and hasattr(kind, "DESCRIPTOR") else "the request message"
    undecodable = Undecodable(f"request: the bytes do not decode as {name}")

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:
            log.info("%s (%s)", undecodable.message, exc)
            return undecodable

    return parse


class _Collect:
    """Stands in for the server in the generated ``add_MemServiceServicer_to_server``."""

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.service, self.handlers = service, handlers


def add_to_server(servicer: MemServicer, server: grpc.aio.Server) -> dict[str, grpc.RpcMethodHandler]:
    """The generated registration, with deserializers that let the servicer refuse bad bytes;
    returns the handlers by full method name (``/mem.v1.MemService/EnhanceSignal``)."""
    got = _Collect()
    mem_pb2_grpc.add_MemServiceServicer_to_server(servicer, got)
    handlers = {}
    for name, h in got.handlers.items():
        assert not (h.request_streaming or h.response_streaming), name  # MemService is unary
        handlers[name] = grpc.unary_unary_rpc_method_handler(
            h.unary_unary,
            request_deserializer=_lenient(h.request_deserializer),
            response_serializer=lambda r, s=h.response_serializer: r if type(r) is bytes else s(r),  # bytes: as is
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(got.service, handlers),))
    server.add_registered_method_handlers(got.service, handlers)
    return {f"/{got.service}/{name}": h for name, h in handlers.items()}


class MemServicer(mem_pb2_grpc.MemServiceServicer):
    def __init__(self, handlers: Handlers, executor: Executor | None = None) -> None:
        """``executor`` runs the blocking calls (None: the event loop's default executor)."""
        self.h = handlers
        self._executor = executor
        self._requests = handlers.metrics.requests
        self._durations = handlers.metrics.request_duration
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}  # (method, code) -> (duration, count)
        self._max_candles = handlers.settings.max_candles
        self._no_future = FutureLimit(handlers.settings.max_clock_skew_s)
        #: Concurrent EnhanceSignal calls go through the batch path together (``mem_serving.coalesce``).
        self._singles: Coalescer[EnhanceQuery, EnhanceResult] = Coalescer(
            lambda queries, remaining: self.h.enhance(queries, Budget(remaining), self._blocking)
        )

    def _finished(self, method: str, code: str, started: float) -> None:
        """Count the call's final status and observe its duration, before the status is sent (a
        client that got its answer finds the call in the metrics)."""
        children = self._children.get((method, code))
        if children is None:  # prometheus_client's labels() locks and checks on every call
            children = self._children[method, code] = (
                self._durations.labels(method),
                self._requests.labels(method, code),
            )
        children[0].observe(time.perf_counter() - started)
        children[1].inc()

    async def _run(
        self, method: str, request: Any, context: grpc.aio.ServicerContext, work: Callable[[Budget], Awaitable[Any]]
    ) -> Any:
        started = time.perf_counter()
        if isinstance(request, Undecodable):  # a client's garbage, not a server bug
            self._finished(method, grpc.StatusCode.INVALID_ARGUMENT.name, started)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        try:
            reply = await work(Budget(context.time_remaining))
        except asyncio.CancelledError:  # deadline, client gone, server stopping: no status is sent
            self._finished(method, grpc.StatusCode.CANCELLED.name, started)
            raise
        except Exception as exc:  # the one place errors become statuses (CancelledError is not an Exception)
            code, message = to_status(exc, method)
            self._finished(method, code.name, started)
            await context.abort(code, message)  # raises; grpc ends the call with this status
        self._finished(method, "OK", started)
        return reply

    def _blocking(self, fn: Callable[..., T], *args: Any) -> Awaitable[T]:
        """``fn(*args)`` in the thread pool (it may block on QuestDB or SQLite)."""
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def PredictReversal(
        self, request: pb.PredictReversalRequest, context: grpc.aio.ServicerContext
    ) -> pb.PredictReversalResponse:
        async def work(budget: Budget) -> pb.PredictReversalResponse:
            query = conv.predict_query(request, self._max_candles, self._no_future)
            return conv.prediction_pb(await self.h.predict(query, budget, self._blocking))

        return await self._run("PredictReversal", request, context, work)

    async def EnhanceSignal(
        self, request: pb.EnhanceSignalRequest, context: grpc.aio.ServicerContext
    ) -> pb.EnhancedSignal:
        async def work(budget: Budget) -> pb.EnhancedSignal:
            query = conv.enhance_query(request, self._max_candles, self._no_future)
            result = await self._singles.one(query, context.time_remaining)  # with the calls of this loop turn
            if isinstance(result, Exception):
                raise result
            return pb.EnhancedSignal(**conv.signal_fields(result))

        return await self._run("EnhanceSignal", request, context, work)

    async def EnhanceSignals(self, request: pb.EnhanceSignalsRequest, context: grpc.aio.ServicerContext) -> bytes:
        async def work(budget: Budget) -> bytes:  # the serialized EnhanceSignalsResponse, sent as it is
            items = conv.enhance_queries(request, self._max_candles, conv.MAX_BATCH_ITEMS, self._no_future)
            queries = [q for q in items if not isinstance(q, Exception)]
            reply = conv.ReplyAhead()  # made while the decisions commit
            got = iter(await self.h.enhance(queries, budget, self._blocking, reply.ahead) if queries else [])
            return reply.bytes_of([q if isinstance(q, Exception) else next(got) for q in items])

        return await self._run("EnhanceSignals", request, context, work)

    async def LogOutcome(
        self, request: pb.LogOutcomeRequest, context: grpc.aio.ServicerContext
    ) -> pb.LogOutcomeResponse:
        async def work(budget: Budget) -> pb.LogOutcomeResponse:
            query = conv.outcome_query(request, self._no_future)
            request_id = conv.request_id(request.request_id)
            fingerprint = conv.request_fingerprint(request)
            return conv.learning_pb(await self._blocking(self.h.log_outcome, query, budget, request_id, fingerprint))

        return await self._run("LogOutcome", request, context, work)

    async def GetParameters(
        self, request: pb.GetParametersRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetParametersResponse:
        async def work(budget: Budget) -> pb.GetParametersResponse:
            return conv.parameters_pb(await self._blocking(self.h.parameters))

        return await self._run("GetParameters", request, context, work)

    async def ListStrategies(
        self, request: pb.ListStrategiesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListStrategiesResponse:
        async def work(budget: Budget) -> pb.ListStrategiesResponse:
            specs = await self._blocking(self.h.strategies, request.include_deprecated)
            return pb.ListStrategiesResponse(strategies=[conv.strategy_pb(s) for s in specs])

        return await self._run("ListStrategies", request, context, work)

    async def PushCandles(
        self, request: pb.PushCandlesRequest, context: grpc.aio.ServicerContext
    ) -> pb.PushCandlesResponse:
        def push() -> pb.PushCandlesResponse:  # up to max_candles to convert: off the loop
            return conv.push_pb(self.h.push_candles(*conv.push_query(request, self._max_candles, self._no_future)))

        async def work(budget: Budget) -> pb.PushCandlesResponse:
            return await self._blocking(push)

        return await self._run("PushCandles", request, context, work)

    async def GetModelInfo(self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext) -> pb.ModelInfo:
        async def work(budget: Budget) -> pb.ModelInfo:
            return conv.model_info_pb(await self._blocking(self.h.model_info))

        return await self._run("GetModelInfo", request, context, work)
