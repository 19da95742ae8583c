"""The durable memory: one SQLite file in WAL mode, an append-only event log plus two small
lookup tables kept in the same transactions.

Layout (declared once for both engines in ``mem_memory.schema``; docs/memory.md):

- ``events(event_id INTEGER PRIMARY KEY AUTOINCREMENT, kind, subject, payload)`` — the audit
  trail. Every change is one appended row; nothing is updated or deleted (a key rotation,
  ``mem_memory.rekey``, alone re-encrypts payloads in place with the same plaintext). ``payload`` is the
  record as JSON, AES-GCM encrypted when the store has a key. ``subject`` is the decision id
  (a version-7 UUID: time, then random bits) for decisions and outcomes, and a keyed HMAC tag of the strategy name or the
  parameter version otherwise (the text itself without a key).
- ``decisions(decision_id PRIMARY KEY, symbol_tag, event_id, outcome_event_id, prev_event_id)`` —
  finds a decision, its symbol's recent decisions (``prev_event_id``: the symbol's decision
  before, ``mem_memory.chains``), and the closed trades; ``outcome_event_id`` set once makes "one
  outcome per decision" atomic across processes.
- ``heads(kind, subject, event_id)`` — the latest event per strategy name, and the newest
  decision per symbol tag.
- ``requests(kind, tag, event_id, reply, created)`` — callers' request ids (a keyed tag when
  encrypted) with the event their call wrote and ``reply``: for a decision the tag of the
  request's fingerprint, for an outcome or a push its (encrypted) answer with that tag; kept
  for ``REQUEST_ID_WINDOW_S`` (``mem_memory.requests``), then forgotten.
- ``probe`` — empty; the write probe of a full store writes and deletes a row in it.
- ``meta`` — the store's revision ('format', ``mem_memory.migrations``), whether the store is encrypted, the key-check record, the key
  ids (``mem_memory.keys``) and the store's id (a random UUID created once: which store a server
  writes, ``store_id``).
- ``audit`` — the audit trail of credential use (``mem_memory.audit``), in clear.

Every open holds ``<db>.lock`` shared (``mem_memory.lock``); a rekey or restore needs it alone.

The same store runs on PostgreSQL when ``open`` is given a ``postgresql://`` URL: the SQL that
differs (placeholders, the write lock, event ids, a lost connection) is in
``mem_memory.backend``; docs/memory.md ("PostgreSQL") says what is SQLite-only.

Writes run in ``BEGIN IMMEDIATE`` transactions (one writer at a time across processes, waiting up
to ``busy_timeout``), so event ids are committed in increasing order: a reader that has seen id N
has seen every event <= N. ``synchronous=FULL`` makes every acknowledged commit durable before
it returns. ``group_transaction`` + ``savepoint`` + ``append_prepared_many`` are the pieces the
group committer (``mem_memory.group``) writes several callers' records with, in one commit. The
file is created 0600 (in a directory created 0700, ``mem_memory.files``) and SQLite creates
``-wal``/``-shm`` with the database's mode; ``open`` tightens any of the three that are looser.
"""

from __future__ import annotations

from mem_memory.errors import MemoryKeyError
from mem_memory.store.base import PreparedDecision, StoredRequest
from mem_memory.store.connect import (
    BUSY_TIMEOUT_MS,
    FULL_BELOW_BYTES,
    NO_PAGE_CAP,
    PROBE_BYTES,
    _connect,
    _no_space,
    free_bytes,
    is_full,
    read_only_connect,
)
from mem_memory.store.opening import StoreOpening


class MemoryStore(StoreOpening):
    """The shared, durable memory store. Thread-safe (one connection behind a lock); open one
    per process (do not share across fork).

    Its parts, one module each (each class extends the one before): ``base`` (the shared state),
    ``integrity`` (checked records, verify), ``transactions`` (transactions, the size cap),
    ``request_ids``, ``queries``, ``writes`` and ``opening`` (open, meta and keys, close)."""


__all__ = [
    "BUSY_TIMEOUT_MS",
    "FULL_BELOW_BYTES",
    "NO_PAGE_CAP",
    "PROBE_BYTES",
    "MemoryKeyError",
    "MemoryStore",
    "PreparedDecision",
    "StoredRequest",
    "_connect",
    "_no_space",
    "free_bytes",
    "is_full",
    "read_only_connect",
]
