"""Client request ids: what makes a retried call idempotent.

A caller may give each EnhanceSignal / LogOutcome / PushCandles call an id of its own choosing.
The memory stores it, keyed by the kind of call, in the same transaction as the call's records
(the ``requests`` table of ``mem_memory.store``; a keyed HMAC tag of the id when the store is
encrypted), with the event the call wrote, a fingerprint of the request (``fingerprint``; a
keyed tag of it when encrypted) and, for an outcome or a push, the answer it got. The id is
checked once, inside the transaction that would record the call: a later call with the same id
and the same fingerprint gets the stored answer (``Replay``) and writes nothing; with another
fingerprint it is refused (``RequestConflict``) and writes nothing. Ids stored before
fingerprints existed match any request about the same subject. Ids are remembered for at least
``REQUEST_ID_WINDOW_S`` (24 hours) after their call was recorded, across restarts; older ones are
forgotten a few at a time by later write transactions.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

from mem_memory.errors import InvalidRecord

#: How long a request id is remembered after its call was recorded (at least).
REQUEST_ID_WINDOW_S = 24 * 3600.0
#: Longest request id, in characters.
MAX_REQUEST_ID_LEN = 128
#: Kind of the encrypted answers stored with request ids (associated data of their AES-GCM).
REPLY = "request_reply"
#: Kind of the request ids of PushCandles calls (no event of their own: event id 0).
PUSH = "push_candles"


class Replay(NamedTuple):
    """A request id already recorded with the same fingerprint: the event its first call wrote
    and that event's stored payload (a decision), nothing written now."""

    event_id: int
    payload: bytes
    #: False for an id stored before fingerprints existed (the caller checks what it can).
    fingerprinted: bool = True


class Conflict(NamedTuple):
    """A request id already recorded with another fingerprint: nothing written."""

    event_id: int


def fingerprint(request: bytes) -> str:
    """The fingerprint of a request: a digest of its canonical bytes (a protobuf message's
    deterministic serialization). Same request, same fingerprint."""
    return hashlib.blake2b(request, digest_size=16).hexdigest()


def request_id_problem(value: Any) -> str | None:
    """Why ``value`` is not a request id, or None when it is one (or empty: no id)."""
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if len(value) > MAX_REQUEST_ID_LEN:
        return f"longer than {MAX_REQUEST_ID_LEN} characters"
    if value and (not value.isprintable() or any(c.isspace() for c in value)):
        return "must be printable, without spaces"
    return None


def validate_request_id(value: Any, field: str = "request_id") -> str:
    """``value`` if it is a request id or empty; ``InvalidRecord(field, problem)`` otherwise."""
    problem = request_id_problem(value)
    if problem is not None:
        raise InvalidRecord(field, problem)
    return str(value)
