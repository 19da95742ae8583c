"""Which keys an encrypted store needs, kept in its ``meta`` table, and the checks at open.

``meta`` holds ``key_id`` (the store's key: its key-check record is ``key_check``, and lookup
tags are made with it) and, while a rotation is unfinished, ``rekey_to`` with ``rekey_check``
(the key the records are being re-encrypted to). A store is therefore in one of two states:

- settled: every record is under ``key_id`` (or unlabelled, from before key ids: the same key);
- rotating: records are under ``key_id`` or ``rekey_to``; new records are written under
  ``rekey_to``. ``mem memory rekey`` moves the rest, re-tags the lookup columns and makes
  ``rekey_to`` the store's key in its last transaction.

Opening needs every key the records may be under: the store's key, and while rotating the new
key as MEM_MEMORY_KEY (with the store's key in MEM_MEMORY_KEY_PREVIOUS). Only ``rekey`` starts a
rotation (``rotate=True``); any other open with a key that is not the store's is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mem_memory import audit
from mem_memory.backend import Conn
from mem_memory.crypto import KEY_ENV, PREVIOUS_KEYS_ENV, Codec
from mem_memory.errors import MemoryKeyError, MissingMemoryKey, WrongMemoryKey


def settle(
    conn: Conn,
    meta: dict[str, Any],
    codec: Codec,
    path: Path | str,
    rotate: bool,
    command: str,
    *,
    read_only: bool = False,
) -> None:
    """Check ``codec``'s keys against an existing encrypted store and point its tags at the
    store's key, inside the open's write transaction; with ``rotate``, start a rotation to
    ``codec``'s writing key (recorded, with a ``rekey.start`` audit row). Raises a
    ``MemoryKeyError`` naming the key ids (never the keys) that are missing. ``read_only``:
    the same checks, nothing written (a store opened on a full disk)."""
    if not codec.encrypted:
        raise MissingMemoryKey(f"the memory store {path} is encrypted; set {KEY_ENV} to the key it was created with")
    store_id = _text(meta.get("key_id"))
    if store_id is None:  # a store from before key ids: find its key by its key-check record
        store_id = next((k for k in codec.key_ids if codec.verify(bytes(meta["key_check"]), k)), None)
        if store_id is None:
            raise WrongMemoryKey(f"the key given ({KEY_ENV}) is not the key of the memory store {path}")
        if not read_only:
            conn.execute("INSERT INTO meta VALUES ('key_id', ?)", (store_id,))
    target = _text(meta.get("rekey_to"))
    if not codec.holds(store_id):
        if target is not None and codec.key_id == target:
            raise MissingMemoryKey(
                f"the memory store {path} is being rekeyed from key {store_id} to key {target}: "
                f"set {PREVIOUS_KEYS_ENV} to the key {store_id}"
            )
        raise WrongMemoryKey(
            f"the key given ({KEY_ENV}) is not the key of the memory store {path} (its key id is {store_id})"
        )
    if not codec.verify(bytes(meta["key_check"]), store_id):
        raise WrongMemoryKey(f"the key check of the memory store {path} does not match the key with id {store_id}")
    codec.use_store_key(store_id)
    if target is not None:
        if not codec.holds(target) or codec.key_id != target:
            raise MissingMemoryKey(
                f"the memory store {path} has an unfinished rekey to key {target}: set {KEY_ENV} to that key and "
                f"{PREVIOUS_KEYS_ENV} to the key {store_id}, then finish it with `mem memory rekey`"
            )
        if not codec.verify(bytes(meta["rekey_check"]), target):
            raise WrongMemoryKey(f"the rekey check of the memory store {path} does not match the key with id {target}")
    elif codec.key_id != store_id:
        if not rotate:
            raise WrongMemoryKey(
                f"{KEY_ENV} (key id {codec.key_id}) is not the key of the memory store {path} (key id {store_id}); "
                f"to rotate to it run `mem memory rekey` with the store's key in {PREVIOUS_KEYS_ENV}"
            )
        assert codec.key_id is not None
        conn.execute("INSERT INTO meta VALUES ('rekey_to', ?)", (codec.key_id,))
        conn.execute("INSERT INTO meta VALUES ('rekey_check', ?)", (codec.key_check(),))
        audit.record(
            conn, audit.REKEY_START, codec.key_id, command, {"from_key_id": store_id, "to_key_id": codec.key_id}
        )


def rotation(conn: Conn) -> tuple[str | None, str | None]:
    """(the store's key id, the key id of an unfinished rotation or None)."""
    meta = dict(conn.execute("SELECT k, v FROM meta WHERE k IN ('key_id', 'rekey_to')").fetchall())
    return _text(meta.get("key_id")), _text(meta.get("rekey_to"))


def finish(conn: Conn, codec: Codec) -> None:
    """Make the rotation's key the store's key (inside the caller's transaction, after every
    record and tag has moved to it): its key check, its id; the rotation's rows removed."""
    target = codec.key_id
    if target is None or rotation(conn)[1] != target:
        raise MemoryKeyError("no rekey to this key is in progress")
    conn.execute("UPDATE meta SET v = ? WHERE k = 'key_check'", (codec.key_check(),))
    conn.execute("UPDATE meta SET v = ? WHERE k = 'key_id'", (target,))
    conn.execute("DELETE FROM meta WHERE k IN ('rekey_to', 'rekey_check')")
    codec.use_store_key(target)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value)
