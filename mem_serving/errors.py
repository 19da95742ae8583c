"""Serving's exceptions and the one place where any exception becomes a gRPC status.

Handlers raise the domain errors below (or let the memory / pipeline errors through);
``to_status`` maps each to a status code and a message for the caller. Anything unexpected
becomes INTERNAL with a generic message; the traceback is logged server-side, never sent.
"""
from __future__ import annotations

import logging

import grpc

from mem_pipelines.lib.features import InsufficientHistory
from mem_pipelines.questdb.store import CandleStoreError

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


class NotFound(ServingError):
    """The request names something that does not exist (e.g. an unknown decision id)."""

    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(ServingError):
    """The request is well formed but the server's data cannot answer it (e.g. QuestDB holds too
    little history for the symbol). Retrying is pointless until the data changes."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(ServingError):
    """A dependency is missing or unreachable (no champion model yet, QuestDB down); the caller
    may retry later, typically with backoff."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ServingError):
    """The caller's deadline ran out before expensive work started; nothing was recorded."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


def _memory_not_found() -> tuple[type[BaseException], ...]:
    try:
        from mem_memory.errors import UnknownDecision  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - mem_memory layout differs
        try:
            from mem_memory import UnknownDecision  # type: ignore[attr-defined]
        except ImportError:
            return ()
    return (UnknownDecision,)


_NOT_FOUND: tuple[type[BaseException], ...] | None = None


def to_status(exc: BaseException, method: str = "") -> tuple[grpc.StatusCode, str]:
    """The status code and caller-facing message for ``exc`` (the only mapping in serving)."""
    global _NOT_FOUND
    if _NOT_FOUND is None:
        _NOT_FOUND = _memory_not_found()
    if isinstance(exc, ServingError):
        return exc.code, str(exc)
    if _NOT_FOUND and isinstance(exc, _NOT_FOUND):
        return grpc.StatusCode.NOT_FOUND, str(exc) or "unknown decision id"
    if isinstance(exc, InsufficientHistory):
        return grpc.StatusCode.INVALID_ARGUMENT, f"candles: {exc}"
    if isinstance(exc, CandleStoreError):
        return grpc.StatusCode.UNAVAILABLE, f"candle store unavailable: {exc}"
    log.error("unexpected error in %s", method or "a call", exc_info=exc)
    return grpc.StatusCode.INTERNAL, "internal error (logged on the server)"
