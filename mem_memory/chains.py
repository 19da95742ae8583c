"""A symbol's decisions as a chain, newest first, instead of an index keyed by symbol.

Each ``decisions`` row records ``prev_event_id``, the event id of its symbol's decision before
it (None for the first), and ``heads`` holds each symbol's newest decision (kind ``SYMBOL_HEAD``,
subject the symbol's lookup tag). Both are written in the transaction of the decisions' INSERT:
one lookup of the batch's heads, one upsert of them. A symbol's last ``n`` decisions are the
first ``n`` links from its head (``RECENT_SQL``). An index on ``(symbol_tag, event_id)`` gave the
same answer, but a batch of 1,000 symbols put one entry into ~1,000 different leaf pages of it,
each written again at every commit; the heads are ~20 small pages whatever the store's size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from mem_memory.backend import Conn
from mem_memory.types import SYMBOL_HEAD

#: Tags per statement (a parameter each, three per upserted head: under SQLite's 32,766).
CHUNK = 5000

#: A symbol's last ``n`` decisions with their outcomes (parameters: the symbol's tag, ``n``), in
#: no promised order (sort by event id, descending, for newest first): the walk from its head,
#: each step the previous decision's event (whose subject is the decision id, the key of its row).
RECENT_SQL = (
    "WITH RECURSIVE chain(event_id, payload, decision_id, outcome_event_id, prev_event_id, k) AS ("
    "SELECT e.event_id, e.payload, x.decision_id, x.outcome_event_id, x.prev_event_id, 1 FROM heads h "
    "JOIN events e ON e.event_id = h.event_id JOIN decisions x ON x.decision_id = e.subject "
    f"WHERE h.kind = '{SYMBOL_HEAD}' AND h.subject = ? "
    "UNION ALL SELECT e.event_id, e.payload, x.decision_id, x.outcome_event_id, x.prev_event_id, c.k + 1 "
    "FROM chain c JOIN events e ON e.event_id = c.prev_event_id JOIN decisions x ON x.decision_id = e.subject "
    "WHERE c.k < ?) "
    "SELECT c.decision_id, c.event_id, c.payload, o.event_id, o.payload, o.kind FROM chain c "
    "LEFT JOIN events o ON o.event_id = c.outcome_event_id"
)


def heads_of(conn: Conn, tags: Iterable[str], stored: int = 0) -> tuple[dict[str, int], int]:
    """The newest stored decision's event id of each of ``tags`` that has one, and how many heads
    were read. ``stored``: how many symbol heads the store had when last read whole (a hint): a
    batch with at least half as many tags reads them all in one pass (~0.5 ms for 1,000 against
    ~1.3 ms for 1,000 lookups), a smaller one looks its own up."""
    wanted = list(dict.fromkeys(tags))
    if 2 * len(wanted) >= stored:
        rows = conn.execute("SELECT subject, event_id FROM heads WHERE kind = ?", (SYMBOL_HEAD,)).fetchall()
        keep = set(wanted)
        return {str(s): int(e) for s, e in rows if s in keep}, len(rows)
    out: dict[str, int] = {}
    for i in range(0, len(wanted), CHUNK):
        part = wanted[i : i + CHUNK]
        rows = conn.execute(
            f"SELECT subject, event_id FROM heads WHERE kind = ? AND subject IN ({','.join('?' * len(part))})",
            [SYMBOL_HEAD, *part],
        ).fetchall()
        out.update((str(s), int(e)) for s, e in rows)
    return out, stored


def link(tags: Sequence[str], first: int, heads: dict[str, int]) -> list[int | None]:
    """The previous decision of each of ``tags`` (event ids ``first``, ``first + 1``, ... in
    order): its symbol's head before it, an earlier one of the same batch included. ``heads`` is
    updated in place to the newest of each tag (what ``set_heads`` writes)."""
    prev: list[int | None] = []
    get = heads.get
    for i, tag in enumerate(tags):
        prev.append(get(tag))
        heads[tag] = first + i
    return prev


def set_heads(conn: Conn, heads: dict[str, int]) -> None:
    """Make ``heads`` (tag -> event id) the symbols' newest decisions (one upsert per chunk)."""
    items = list(heads.items())
    for i in range(0, len(items), CHUNK):
        part = items[i : i + CHUNK]
        args: list[Any] = []
        for tag, event_id in part:
            args += (SYMBOL_HEAD, tag, event_id)
        conn.execute(
            "INSERT INTO heads(kind, subject, event_id) VALUES "
            + ",".join(["(?,?,?)"] * len(part))
            + " ON CONFLICT(kind, subject) DO UPDATE SET event_id = excluded.event_id",
            args,
        )


def tags(conn: Conn) -> list[str]:
    """Every symbol tag with a decision, in order."""
    rows = conn.execute("SELECT subject FROM heads WHERE kind = ? ORDER BY subject", (SYMBOL_HEAD,)).fetchall()
    return [str(r[0]) for r in rows]
