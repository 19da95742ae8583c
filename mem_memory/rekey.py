"""Memory key rotation: ``mem memory rekey`` re-encrypts every record under a new key.

Offline, by design: it holds the store's lock alone (``StoreInUse`` while a server, engine or
sensor has the store open) because running servers keep lookup tags made with the old key in
their codec. The work goes in batches, each its own durable transaction, in event-id order:

1. open with the new key as MEM_MEMORY_KEY and the old one in MEM_MEMORY_KEY_PREVIOUS
   (``rotate=True`` records the rotation in ``meta``: ``rekey_to`` and its key check, plus a
   ``rekey.start`` audit row);
2. every payload not yet under the new key is decrypted and encrypted again, byte-identical
   plaintext, same event id, kind and subject (the one rewrite the append-only log allows);
3. one last transaction checks that no payload is left under another key, re-tags the lookup
   columns (symbol tags, strategy names, parameter versions, strategy and symbol heads) with the new key,
   makes the new key the store's key (its key check) and writes ``rekey.finish``.

A SIGKILL anywhere leaves either the old store, or a store whose records are under the old or
the new key, each labelled with its key id, that opens with both keys and that the next run
finishes (records already under the new key are skipped).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mem_memory import audit, keys
from mem_memory.backend import Conn
from mem_memory.crypto import payload_key_id, payload_prefix
from mem_memory.errors import CorruptRecord, MemoryKeyError
from mem_memory.store import MemoryStore
from mem_memory.types import DECISION, PARAMETER_ADJUSTMENT, STRATEGY_UPSERT, SYMBOL_HEAD, Parameters

DEFAULT_BATCH = 2000
COMMAND = "mem memory rekey"


@dataclass(frozen=True)
class RekeyReport:
    from_key_id: str | None  # None: the store was already under the new key, nothing to do
    to_key_id: str
    events: int  # events in the store
    resealed: int  # payloads re-encrypted by this run
    already: int  # payloads found under the new key (an interrupted run's work)
    retagged: int  # distinct lookup values re-tagged
    batches: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def rekey(
    path: str | Path,
    new_key: bytes,
    previous_keys: Sequence[bytes],
    *,
    batch: int = DEFAULT_BATCH,
    command: str = COMMAND,
    progress: Callable[[int, int], None] | None = None,
) -> RekeyReport:
    """Rotate the store at ``path`` to ``new_key`` (``previous_keys`` must hold its current key).

    ``progress(resealed so far, last event id done)`` is called after each committed batch.
    Raises ``StoreInUse`` when anything else has the store open, ``MemoryKeyError`` when the keys
    do not fit (e.g. the store is not encrypted, or the old key is missing)."""
    if batch < 1:
        raise ValueError("batch must be >= 1")
    started = time.perf_counter()
    store = MemoryStore.open(path, new_key, previous_keys=previous_keys, exclusive=True, rotate=True, command=command)
    try:
        conn, codec = store._c(), store._codec  # the rotation works below the store's record API
        from_id, target = keys.rotation(conn)
        to_id = codec.key_id
        assert to_id is not None
        events = store.last_event_id()
        if target is None:  # settled under the new key already
            return RekeyReport(None, to_id, events, 0, 0, 0, 0, round(time.perf_counter() - started, 3))
        resealed = already = batches = 0
        cursor = 0
        while True:
            with store.transaction():
                rows = conn.execute(
                    "SELECT event_id, kind, payload FROM events WHERE event_id > ? ORDER BY event_id LIMIT ?",
                    (cursor, batch),
                ).fetchall()
                updates = []
                for event_id, kind, payload in rows:
                    if payload_key_id(payload) == to_id:
                        already += 1
                    else:
                        updates.append((codec.reseal(kind, payload), event_id))
                conn.executemany("UPDATE events SET payload = ? WHERE event_id = ?", updates)
            if not rows:
                break
            resealed += len(updates)
            batches += 1
            cursor = int(rows[-1][0])
            if progress is not None:
                progress(resealed, cursor)
        with store.transaction():
            retagged = _finish(store, from_id, to_id)
            audit.record(
                conn,
                audit.REKEY_FINISH,
                to_id,
                command,
                {
                    "from_key_id": from_id,
                    "to_key_id": to_id,
                    "events": events,
                    "resealed": resealed,
                    "retagged": retagged,
                },
            )
        store.checkpoint()
        return RekeyReport(
            from_id, to_id, events, resealed, already, retagged, batches, round(time.perf_counter() - started, 3)
        )
    finally:
        store.close()


def _finish(store: MemoryStore, from_id: str | None, to_id: str) -> int:
    """The rotation's last transaction: check every payload is under ``to_id``, re-tag the
    lookup columns, make ``to_id`` the store's key. Returns how many lookup values changed."""
    conn, codec = store._c(), store._codec
    prefix = payload_prefix(to_id)
    left = conn.execute(
        "SELECT count(*) FROM events WHERE substr(payload, 1, ?) != ?", (len(prefix), prefix)
    ).fetchone()[0]
    if left:
        raise MemoryKeyError(f"{left} records are not under key {to_id} after the rekey pass; nothing was switched")
    symbols: dict[str, str] = {}
    for tag, event_id in conn.execute("SELECT symbol_tag, min(event_id) FROM decisions GROUP BY symbol_tag").fetchall():
        symbols[tag] = codec.tag(str(_decoded(store, DECISION, event_id)["symbol"]), to_id)
    subjects: dict[tuple[str, str], str] = {}
    for kind, subject, event_id in conn.execute(
        "SELECT kind, subject, min(event_id) FROM events WHERE kind IN (?, ?) GROUP BY kind, subject",
        (PARAMETER_ADJUSTMENT, STRATEGY_UPSERT),
    ).fetchall():
        record = _decoded(store, kind, event_id)
        text = (
            Parameters.from_dict(record["parameters"]).version if kind == PARAMETER_ADJUSTMENT else str(record["name"])
        )
        subjects[(kind, subject)] = codec.tag(text, to_id)
    _retag_symbols(conn, symbols)
    conn.executemany(
        "UPDATE events SET subject = ? WHERE kind = ? AND subject = ?",
        [(new, k, old) for (k, old), new in subjects.items()],
    )
    conn.executemany(
        "UPDATE heads SET subject = ? WHERE kind = ? AND subject = ?",
        [(new, k, old) for (k, old), new in subjects.items()],
    )
    keys.finish(conn, codec)
    return len(symbols) + len(subjects)


def _retag_symbols(conn: Conn, symbols: dict[str, str], page: int = 50_000) -> None:
    """Re-tag the decisions (no index is keyed by symbol: one pass in decision-id order, each row
    updated by its key) and their symbols' heads."""
    after = ""
    while True:
        rows = conn.execute(
            "SELECT decision_id, symbol_tag FROM decisions WHERE decision_id > ? ORDER BY decision_id LIMIT ?",
            (after, page),
        ).fetchall()
        if not rows:
            break
        conn.executemany(
            "UPDATE decisions SET symbol_tag = ? WHERE decision_id = ?",
            [(symbols[tag], decision_id) for decision_id, tag in rows if tag in symbols],
        )
        after = rows[-1][0]
    conn.executemany(
        "UPDATE heads SET subject = ? WHERE kind = ? AND subject = ?",
        [(new, SYMBOL_HEAD, old) for old, new in symbols.items()],
    )


def _decoded(store: MemoryStore, kind: str, event_id: int) -> dict[str, Any]:
    row = store._c().execute("SELECT payload FROM events WHERE event_id = ?", (event_id,)).fetchone()
    if row is None:
        raise CorruptRecord(f"event {event_id} is referenced but missing")
    return store._codec.decode(kind, row[0])
