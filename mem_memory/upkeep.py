"""The engine's projection of the event log: the in-process working memory (``mem_memory.index``)
loaded at start, kept up to date from this process's commits (the records in hand) and from
other processes' writes (the log, read at most ``refresh_interval_s`` after they commit)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time as _time
from typing import Any

from mem_memory.config import MemoryConfig
from mem_memory.errors import CorruptRecord
from mem_memory.group import GroupCommitter
from mem_memory.index import WorkingMemory
from mem_memory.store import MemoryStore
from mem_memory.types import (
    DECISION,
    OUTCOME,
    PARAMETER_ADJUSTMENT,
    SHADOW_OUTCOME,
    STRATEGY_UPSERT,
    Decision,
    Event,
    Outcome,
    Parameters,
    StrategySpec,
)
from mem_memory.write_health import WriteHealth

log = logging.getLogger(__name__)


class IndexUpkeep:
    """The index side of ``MemoryEngine`` (its state is set by ``MemoryEngine.__init__``)."""

    store: MemoryStore
    config: MemoryConfig
    #: Guards the working memory (``_wm``), ``_params`` and ``_last_seen``.
    _lock: threading.RLock
    _wm: WorkingMemory
    _params: Parameters
    _last_seen: int
    _checked: float
    _refreshing: threading.Lock
    _catching_up: bool
    write_health: WriteHealth
    _group: GroupCommitter

    def _load(self) -> None:
        cfg = self.config
        with self.store.snapshot():
            last = self.store.last_event_id()
            latest = self.store.latest_parameters()
            if latest is not None:
                self._params = latest[1]
            for spec in self.store.strategies().values():
                self._wm.put_strategy(spec)
            for d, o in self.store.closed_trades(2 * cfg.closed_window):
                self._wm.add_closed(d, o)
            for recent, outcome in self.store.recent_by_symbol(cfg.recent_per_symbol):
                self._wm.add_decision(recent, outcome)
        self._last_seen = last
        self._checked = _time.monotonic()

    def refresh(self, force: bool = True) -> int:
        """Apply events written since the last look (by any process); returns how many. The
        store is read outside the index lock (the hot path's index reads never wait for it);
        one refresher at a time. Never call it holding the index lock."""
        now = _time.monotonic()
        if not force and now - self._checked < self.config.refresh_interval_s:
            return 0
        applied = 0
        with self._refreshing:
            self._checked = now
            while True:
                seen = self._last_seen
                if self.store.last_event_id() <= seen:
                    return applied
                batch, cursor = self.store.scan_since(seen, limit=1000)
                if cursor == seen:
                    return applied
                with self._lock:
                    if self._last_seen != seen:  # a commit of this process moved it: read from there
                        continue
                    for event in batch:
                        self._apply(event)
                        self._last_seen = event.event_id
                    self._last_seen = cursor  # past a corrupt event too (the store reported it)
                applied += len(batch)

    def _refresh_due(self) -> bool:
        return _time.monotonic() - self._checked >= self.config.refresh_interval_s

    def _catch_up(self) -> None:
        """``refresh`` now, or on a worker thread when called on an event loop (the loop never
        reads the store)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.refresh()
            return
        if not self._catching_up:
            self._catching_up = True
            loop.run_in_executor(None, self._refresh_in_background)

    def _refresh_in_background(self) -> None:
        try:
            self.refresh()
        except Exception:  # the next refresh tries again
            log.exception("refreshing the memory index failed")
        finally:
            self._catching_up = False

    def _apply(self, event: Event) -> None:
        """Apply one event to the index: the record the store built reading it (validated
        there, once), or built from its payload when the event came without one."""
        p, built = event.payload, event.record
        if event.kind == DECISION:
            self._wm.add_decision(built if built is not None else Decision.from_dict(p))
        elif event.kind in (OUTCOME, SHADOW_OUTCOME):
            outcome = built if built is not None else Outcome.from_dict(p)
            decision = self._held(outcome.decision_id)
            if decision is None:
                try:
                    decision = self.store.get_decision(outcome.decision_id)[0]
                except CorruptRecord:  # reported by the store; the trade stays out of the index
                    return
            self._wm.add_outcome(decision, outcome)
        elif event.kind == PARAMETER_ADJUSTMENT:
            self._params = built[0] if built is not None else Parameters.from_dict(p["parameters"])
        elif event.kind == STRATEGY_UPSERT:
            self._wm.put_strategy(built if built is not None else StrategySpec.from_dict(p))

    def _held(self, decision_id: str) -> Decision | None:
        symbol = self._wm.open_ids.get(decision_id)
        if symbol is None:
            return None
        for decision in reversed(self._wm.recent[symbol]):
            if decision.decision_id == decision_id:
                return decision
        return None

    def _after_commit(self, before: int, after: int, applies: Any) -> None:
        """Called by the group committer, in commit order, with the committed group's event ids
        ``before+1 .. after``: apply the records in hand when the index has seen everything up to
        ``before`` (no other writer in between), else catch up from the log (which then includes
        this group)."""
        self.write_health.succeeded()
        with self._lock:
            if self._last_seen >= after:
                return  # a refresh already read this group from the log
            if self._last_seen == before:
                for apply, result in applies:
                    if apply is not None:
                        apply(result)
                self._last_seen = after
                return
        self._catch_up()
