"""The gRPC servicer: thin. Each method converts the request, calls a handler, converts the
reply; every exception goes through ``errors.to_status`` (the one mapping) and ends the call
with that status. The server never dies of a request.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import grpc

from mem_serving import converters as conv
from mem_serving._gen.mem.v1 import mem_pb2 as pb
from mem_serving._gen.mem.v1 import mem_pb2_grpc
from mem_serving.errors import to_status
from mem_serving.handlers import Budget, Handlers

log = logging.getLogger(__name__)


class MemServicer(mem_pb2_grpc.MemServiceServicer):
    def __init__(self, handlers: Handlers) -> None:
        self.h = handlers
        self._requests = handlers.metrics.requests
        self._max_candles = handlers.settings.max_candles

    def _run(self, method: str, context: grpc.ServicerContext, work: Callable[[Budget], Any]) -> Any:
        try:
            reply = work(Budget(context.time_remaining))
        except Exception as exc:  # the one place errors become statuses
            code, message = to_status(exc, method)
            self._requests.labels(method, code.name).inc()
            context.abort(code, message)  # raises; grpc ends the call with this status
        self._requests.labels(method, "OK").inc()
        return reply

    def PredictReversal(self, request: pb.PredictReversalRequest, context: grpc.ServicerContext) -> pb.PredictReversalResponse:
        def work(budget: Budget) -> pb.PredictReversalResponse:
            query = conv.predict_query(request, self._max_candles)
            return conv.prediction_pb(self.h.predict(query, budget))

        return self._run("PredictReversal", context, work)

    def EnhanceSignal(self, request: pb.EnhanceSignalRequest, context: grpc.ServicerContext) -> pb.EnhancedSignal:
        def work(budget: Budget) -> pb.EnhancedSignal:
            query = conv.enhance_query(request, self._max_candles)
            return conv.enhanced_pb(self.h.enhance(query, budget), query)

        return self._run("EnhanceSignal", context, work)

    def LogOutcome(self, request: pb.LogOutcomeRequest, context: grpc.ServicerContext) -> pb.LogOutcomeResponse:
        def work(budget: Budget) -> pb.LogOutcomeResponse:
            query = conv.outcome_query(request)
            return conv.learning_pb(self.h.log_outcome(query, budget), query)

        return self._run("LogOutcome", context, work)

    def GetParameters(self, request: pb.GetParametersRequest, context: grpc.ServicerContext) -> pb.GetParametersResponse:
        return self._run("GetParameters", context, lambda budget: conv.parameters_pb(self.h.parameters()))

    def ListStrategies(self, request: pb.ListStrategiesRequest, context: grpc.ServicerContext) -> pb.ListStrategiesResponse:
        def work(budget: Budget) -> pb.ListStrategiesResponse:
            specs = self.h.strategies(include_deprecated=request.include_deprecated)
            return pb.ListStrategiesResponse(strategies=[conv.strategy_pb(s) for s in specs])

        return self._run("ListStrategies", context, work)
