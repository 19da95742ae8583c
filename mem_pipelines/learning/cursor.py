"""The learning sensors' cursor step over the memory's event log (docs/closed_loop.md §1)."""

from __future__ import annotations

from dataclasses import dataclass

from mem_memory import OUTCOME, Event, MemoryStore

#: Event kinds of the memory's audit trail that mean "a trade closed".
OUTCOME_EVENT_KINDS = frozenset({OUTCOME})


@dataclass(frozen=True)
class CursorStep:
    """Events after ``cursor``: how many, how many are outcomes, and the last id read."""

    cursor: int
    last_event_id: int
    events: int
    outcomes: int


def is_outcome(event: Event) -> bool:
    return event.kind in OUTCOME_EVENT_KINDS


def scan_events(store: MemoryStore, cursor: int, page: int = 1000, max_pages: int = 50) -> CursorStep:
    """Read the events after ``cursor`` (at most ``page * max_pages`` per call; the next call goes
    on from there); the new cursor is the last id read, unchanged when there is none."""
    last, events, outcomes = cursor, 0, 0
    for _ in range(max_pages):
        batch = store.events_since(last, limit=page)
        if not batch:
            break
        events += len(batch)
        outcomes += sum(1 for e in batch if is_outcome(e))
        last = int(batch[-1].event_id)
        if len(batch) < page:
            break
    return CursorStep(cursor=cursor, last_event_id=last, events=events, outcomes=outcomes)
