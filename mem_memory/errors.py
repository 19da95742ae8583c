"""What can go wrong in the memory, by name. Each docstring says how the system reacts.

Every error derives from ``MemoryStoreError`` so a caller can catch the family; the serving layer
maps ``UnknownDecision`` to NOT_FOUND and ``InvalidRecord`` to INVALID_ARGUMENT. No message ever
contains a key or a payload.
"""

from __future__ import annotations


class MemoryStoreError(Exception):
    """Base of every memory error. Unexpected ones are logged by the caller and fail the call."""


class InvalidRecord(MemoryStoreError, ValueError):
    """A record (signal request, outcome, decision, spec, parameters) has an invalid field.

    Raised before anything is written; the caller gets the field name (``.field``) and fixes
    the input. Nothing in the store changes.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class UnknownDecision(MemoryStoreError, LookupError):
    """An outcome names a decision id the store has never recorded. Nothing is written; serving
    answers NOT_FOUND."""


class DuplicateOutcome(MemoryStoreError):
    """A second outcome for a decision that is already closed. The first outcome stands and
    nothing is written (a retried LogOutcome is therefore harmless but reported)."""


class DuplicateDecision(MemoryStoreError):
    """A decision id that is already stored (ids carry 74 random bits, so this means a replayed
    write). Nothing is written."""


class RequestConflict(MemoryStoreError):
    """A request id already used, within the window, for a different request (its fingerprint
    differs: another price, time, strategy, ...). Refused (gRPC ALREADY_EXISTS naming
    ``request_id``); nothing is recorded."""

    def __init__(self, message: str, event_id: int = 0) -> None:
        self.event_id = event_id
        super().__init__(message)


class UnknownParameterVersion(MemoryStoreError, LookupError):
    """``restore_parameters`` was given a version hash that no stored parameter set has.
    Parameters stay as they are."""


class MemoryKeyError(MemoryStoreError):
    """The encryption key does not fit the store: malformed, missing for an encrypted store,
    wrong for this store, or given for a store created without encryption. The store is not
    opened; fix MEM_MEMORY_KEY. Never shows the key."""


class MalformedMemoryKey(MemoryKeyError):
    """MEM_MEMORY_KEY is not base64 of exactly 32 bytes."""


class MissingMemoryKey(MemoryKeyError):
    """The store is encrypted and no key was given."""


class WrongMemoryKey(MemoryKeyError):
    """The key given is not the key the store was created with (its key-check record does not
    decrypt)."""


class UnencryptedStoreKeyError(MemoryKeyError):
    """A key was given for a store created without encryption; refusing to mix clear and
    encrypted records."""


class CorruptRecord(MemoryStoreError):
    """A stored record fails authentication, decoding or its own checks although the key is
    right: the file was altered. Nothing is guessed: a read of that one record fails (serving
    answers DATA_LOSS), reads of many records leave it out and report it (log line with the
    event id, ``MemoryStore.corrupt``), and ``mem memory verify`` lists every one."""

    def __init__(self, message: str, event_id: int | None = None, kind: str | None = None) -> None:
        self.event_id = event_id
        self.kind = kind
        super().__init__(message)


class StoreFull(MemoryStoreError):
    """A write needed space the store does not have: its disk is full, or its size cap
    (``MemoryStore.set_max_bytes``) is reached. Nothing of the call is stored (its transaction is
    rolled back). Serving answers RESOURCE_EXHAUSTED and reports NOT_SERVING until a write
    succeeds again (the memory probes with a small write while it is full)."""


class StoreClosed(MemoryStoreError):
    """The store was used after ``close()``."""


class MemoryUnavailable(MemoryStoreError):
    """The memory's writer process is gone or cannot start, or a PostgreSQL store's connection
    is lost, and the call's records are not stored (what was committed before is acknowledged, not
    lost). Serving answers UNAVAILABLE; the next call starts a new writer, or reconnects."""


class StoreInUse(MemoryStoreError):
    """The store is held by another opener in a way the operation cannot share: a rekey or a
    restore needs it to itself (servers, engines and sensors hold it shared while open), and
    nothing opens it while a rekey or restore runs. Nothing is changed; stop the holders named
    in the message, or wait, and retry."""


class StoreTooNew(MemoryStoreError):
    """The store was written by a newer MEM (its revision is beyond what this code knows). It is
    not opened and nothing is changed: upgrade MEM."""


class StoreNeedsUpgrade(MemoryStoreError):
    """The store needs a migration that cannot run while it is in use. It is not opened and
    nothing is changed: stop its servers and run ``mem memory upgrade`` (backup first)."""
