"""Serving's exceptions and ``to_status``, the one place where any exception (these, the memory's,
the pipeline's) becomes a gRPC status (docs/serving.md, "Status codes"). Anything unexpected is
INTERNAL with a generic message; its traceback is logged on the server, never sent.
"""

from __future__ import annotations

import logging

import grpc

from mem_core.features import InsufficientHistory
from mem_core.questdb.store import CandleStoreError
from mem_memory import errors as memory_errors

log = logging.getLogger(__name__)


class ServingError(Exception):
    """Base of the errors a handler raises on purpose; ``code`` says how the caller sees it."""

    code = grpc.StatusCode.INTERNAL


class InvalidArgument(ServingError):
    """The request is malformed; the message names the field. The caller must fix the request."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}")


class FailedPrecondition(ServingError):
    """The request is well formed but the server's data cannot answer it (e.g. QuestDB holds too
    little history for the symbol). Retrying is pointless until the data changes."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class NoModel(FailedPrecondition):
    """No champion model: PredictReversal cannot answer (EnhanceSignal still does, with the ML silent)."""


class DeadlineExceeded(ServingError):
    """The caller's deadline ran out before expensive work started; nothing was recorded."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


#: Memory errors (mem_memory.errors) in the order they are tested (subclasses first).
_MEMORY: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (memory_errors.RequestConflict, grpc.StatusCode.ALREADY_EXISTS),
    (memory_errors.InvalidRecord, grpc.StatusCode.INVALID_ARGUMENT),
    (memory_errors.UnknownDecision, grpc.StatusCode.NOT_FOUND),
    (memory_errors.DuplicateOutcome, grpc.StatusCode.ALREADY_EXISTS),
    (memory_errors.DuplicateDecision, grpc.StatusCode.ALREADY_EXISTS),
    (memory_errors.StoreClosed, grpc.StatusCode.UNAVAILABLE),
    (memory_errors.MemoryUnavailable, grpc.StatusCode.UNAVAILABLE),
    (memory_errors.CorruptRecord, grpc.StatusCode.DATA_LOSS),
    (memory_errors.StoreFull, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (memory_errors.MemoryStoreError, grpc.StatusCode.INTERNAL),
)


def to_status(exc: BaseException, method: str = "") -> tuple[grpc.StatusCode, str]:
    """The status code and caller-facing message for ``exc`` (the only mapping in serving)."""
    if isinstance(exc, ServingError):
        return exc.code, str(exc)
    for kind, code in _MEMORY:
        if isinstance(exc, kind):
            if code is grpc.StatusCode.INTERNAL:
                log.error("memory error in %s", method or "a call", exc_info=exc)
                return code, "memory store error (logged on the server)"
            return code, str(exc)
    if isinstance(exc, InsufficientHistory):
        return grpc.StatusCode.INVALID_ARGUMENT, f"candles: {exc}"
    if isinstance(exc, CandleStoreError):
        return grpc.StatusCode.UNAVAILABLE, f"candle store unavailable: {exc}"
    log.error("unexpected error in %s", method or "a call", exc_info=exc)
    return grpc.StatusCode.INTERNAL, "internal error (logged on the server)"
