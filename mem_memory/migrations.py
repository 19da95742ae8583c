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

from mem_memory import chains
from mem_memory.backend import SQLITE, Conn, has_table
from mem_memory.crypto import Codec
from mem_memory.dialect import dialect_of
from mem_memory.errors import StoreNeedsUpgrade, StoreTooNew
from mem_memory.types import SYMBOL_HEAD

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


#: The revision from which a symbol's decisions are chained (``mem_memory.chains``).
CHAINED = 3
#: Decisions whose chain links one chunk of revision 3 writes (whole symbols: at least one).
CHAIN_CHUNK = 20_000
_CHAIN_PROGRESS = "revision_3_chained"  # meta: the last symbol tag whose chain is written (tag order)


def _revision_3(conn: Conn, codec: Codec) -> bool:
    """Each symbol's decisions as a chain (``mem_memory.chains``): the ``prev_event_id`` column,
    filled symbol by symbol in tag order from the ``decisions_symbol`` index, with the symbol's
    head; the chunk that finds no symbol left checks every head against the index once more
    (a symbol written meanwhile is chained again), then drops the index. Online as far as this
    code goes; a process of an older release that still writes decisions after it leaves them out
    of their symbol's chain (found by decision id, not among its symbol's recent ones)."""
    from mem_memory import schema  # SQLAlchemy is imported only to create or migrate a store

    name = dialect_of(conn).name
    if not _has_column(conn, "decisions", "prev_event_id"):
        kind = schema.decisions.c.prev_event_id.type.compile(dialect=schema.DIALECTS[name])
        conn.execute(f"ALTER TABLE decisions ADD COLUMN prev_event_id {kind}")
        conn.execute(schema.symbol_index(name))
    row = conn.execute("SELECT v FROM meta WHERE k = ?", (_CHAIN_PROGRESS,)).fetchone()
    after = "" if row is None else bytes(row[0]).decode()
    todo: list[str] = []
    written = 0
    for tag, n in conn.execute(
        "SELECT symbol_tag, count(*) FROM decisions WHERE symbol_tag > ? GROUP BY symbol_tag ORDER BY symbol_tag",
        (after,),
    ).fetchall():
        if todo and written + int(n) > CHAIN_CHUNK:
            break
        todo.append(str(tag))
        written += int(n)
    if todo:
        for tag in todo:
            _chain_symbol(conn, tag)
        conn.execute("DELETE FROM meta WHERE k = ?", (_CHAIN_PROGRESS,))
        conn.execute("INSERT INTO meta VALUES (?, ?)", (_CHAIN_PROGRESS, todo[-1].encode()))
        return False
    stale = conn.execute(
        "SELECT t.symbol_tag FROM (SELECT symbol_tag, max(event_id) AS newest FROM decisions GROUP BY symbol_tag) t "
        f"LEFT JOIN heads h ON h.kind = '{SYMBOL_HEAD}' AND h.subject = t.symbol_tag "
        "WHERE h.event_id IS NULL OR h.event_id != t.newest"
    ).fetchall()
    for (tag,) in stale:
        _chain_symbol(conn, str(tag))
    conn.execute("DELETE FROM meta WHERE k = ?", (_CHAIN_PROGRESS,))
    conn.execute("DROP INDEX IF EXISTS decisions_symbol")
    return True


def _chain_symbol(conn: Conn, tag: str) -> None:
    """Write the chain of ``tag``'s decisions (each one's previous, the head) from the index."""
    rows = conn.execute(
        "SELECT decision_id, event_id, prev_event_id FROM decisions WHERE symbol_tag = ? ORDER BY event_id", (tag,)
    ).fetchall()
    prev: int | None = None
    fix = []
    for decision_id, event_id, stored in rows:
        if stored != prev:
            fix.append((prev, decision_id))
        prev = int(event_id)
    conn.executemany("UPDATE decisions SET prev_event_id = ? WHERE decision_id = ?", fix)
    if prev is not None:
        chains.set_heads(conn, {tag: prev})


def _has_column(conn: Conn, table: str, column: str) -> bool:
    if dialect_of(conn).name == SQLITE:
        sql = "SELECT 1 FROM pragma_table_info(?) WHERE name = ?"
    else:
        sql = (
            "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = ? AND column_name = ?"
        )
    return conn.execute(sql, (table, column)).fetchone() is not None


#: Every migration, oldest first (revisions consecutive from FIRST + 1).
STEPS: list[Step] = [
    Step(2, "the tables, indexes and store id that revision 1 stores gained later", True, _revision_2),
    Step(
        CHAINED,
        "each symbol's decisions chained from its head instead of the decisions_symbol index",
        True,
        _revision_3,
    ),
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
