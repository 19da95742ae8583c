"""Versioned migrations of a memory store: its schema and its payload formats.

Every store records its revision in ``meta`` 'format' ("1": the first release). ``STEPS`` lists,
in order, what brings a store from one revision to the next. Opening a store (``MemoryStore.open``)
runs the pending steps that are ``online`` (safe while other processes use the store); a pending
step that is not online makes the open fail with one line naming ``mem memory upgrade``, which
takes a backup first and then runs them. A store newer than ``head()`` is refused (``StoreTooNew``).

Kill-safe: a step runs in chunks, each chunk in one write transaction (``BEGIN IMMEDIATE``; on
PostgreSQL the write lock) together with what says how far it got (the data itself, or a ``meta``
row of the step's own), and the revision moves in the transaction of the chunk that finishes the
step. A process killed in the middle of a migration leaves its last chunk rolled back and the store
at the old revision, with the chunks before committed; the next open resumes where they stopped.
A step's ``run`` is therefore idempotent per chunk and returns True once nothing is left.

Adding a step: append ``Step(head() + 1, "what it does", online, run)`` below, write the new
release's fixture (docs/memory.md, "Upgrades") and declare any new table or column in
``mem_memory.schema`` (new stores get it from there; the step brings old ones to the same shape).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from mem_memory.backend import Conn, has_table
from mem_memory.crypto import Codec
from mem_memory.dialect import dialect_of
from mem_memory.errors import StoreNeedsUpgrade, StoreTooNew

log = logging.getLogger(__name__)

#: The first release's revision (stores it wrote say "1").
FIRST = 1


@dataclass(frozen=True)
class Step:
    """One migration: brings a store at ``revision - 1`` to ``revision``. ``run`` does one chunk
    inside the caller's write transaction and returns True when the step is complete."""

    revision: int
    what: str
    online: bool
    run: Callable[[Conn, Codec], bool]


def _revision_2(conn: Conn, codec: Codec) -> bool:
    """What revision 1 stores gained without a revision: the tables and indexes added since the
    first of them (``requests``, ``audit``, ``probe``) and a store id (a random UUID, once)."""
    dialect_of(conn).create_schema(conn)
    if conn.execute("SELECT 1 FROM meta WHERE k = 'store_id'").fetchone() is None:
        conn.execute("INSERT INTO meta VALUES ('store_id', ?)", (str(uuid.uuid4()),))
    return True


#: Every migration, oldest first (revisions consecutive from FIRST + 1).
STEPS: list[Step] = [
    Step(2, "the tables, indexes and store id that revision 1 stores gained later", True, _revision_2),
]


def head() -> int:
    """The revision this code writes: a new store gets it, an older one is migrated to it."""
    return STEPS[-1].revision if STEPS else FIRST


def revision_of(conn: Conn) -> int | None:
    """The store's revision, or None for a store not created yet (no ``meta`` or no 'format')."""
    if not has_table(conn, "meta"):
        return None
    row = conn.execute("SELECT v FROM meta WHERE k = 'format'").fetchone()
    if row is None:
        return None
    v = row[0]
    return int(bytes(v).decode() if isinstance(v, (bytes, memoryview)) else v)


def pending(revision: int | None, location: str, upgrading: bool = False) -> list[Step]:
    """The steps a store at ``revision`` needs. ``StoreTooNew`` for a store newer than this code;
    ``StoreNeedsUpgrade`` when one of them must run offline and this is not ``mem memory upgrade``."""
    if revision is None:
        return []
    if revision > head():
        raise StoreTooNew(
            f"the memory store {location} is at revision {revision}, newer than this MEM knows ({head()}): "
            "upgrade MEM (nothing was changed)"
        )
    steps = [s for s in STEPS if s.revision > revision]
    if not upgrading and any(not s.online for s in steps):
        raise StoreNeedsUpgrade(
            f"the memory store {location} is at revision {revision} and needs an offline migration to {head()}: "
            "stop its servers and run `mem memory upgrade` (it takes a backup first)"
        )
    return steps


def migrate(conn: Conn, codec: Codec, location: str, upgrading: bool = False) -> int:
    """Bring the store on ``conn`` (outside a transaction) to ``head()``, one chunk per write
    transaction; returns the number of steps completed here. The revision is re-read inside each
    transaction, so concurrent openers never run a chunk twice."""
    done = 0
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            steps = pending(revision_of(conn), location, upgrading)
            if not steps:
                conn.execute("COMMIT")
                return done
            step = steps[0]
            if step.run(conn, codec):
                conn.execute("UPDATE meta SET v = ? WHERE k = 'format'", (str(step.revision),))
                log.warning("the memory store %s: migrated to revision %d (%s)", location, step.revision, step.what)
                done += 1
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
