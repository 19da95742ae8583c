"""The memory engine: enhancement, learning from outcomes, discovery, the monitor, restore.

``MemoryEngine`` is enhancement and the hot path's reads (here), on top of its parts: the index
upkeep (``mem_memory.upkeep``), learning (``mem_memory.learning``: outcomes, the monitor,
discovery, restores) and reporting (``mem_memory.reporting``: stats, exports).

Thread-safe. A re-entrant lock guards the in-process ``WorkingMemory`` (the hot path's reads)
and is held only for index reads and updates, never through a commit. Decisions and outcomes
are written by group commit (``mem_memory.group``): concurrent calls share one transaction and
one fsync, and each returns only once its records are durable. The committed records are then
applied to the index straight from the objects in hand (no read-back, no decoding) when nothing
else was written in between; otherwise the index catches up from the event log. The store
serialises writers across processes. Other processes' writes are applied from the event log at
most ``refresh_interval_s`` (1 s) after they commit — checked with ``max(event_id)``, a b-tree
lookup — and immediately after any write of this process that follows them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time as _time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any, NamedTuple

from mem_memory.async_commit import AsyncDecisionCommitter
from mem_memory.config import MemoryConfig
from mem_memory.decide import Retrieved, decide_many, new_decision_ids
from mem_memory.errors import (
    InvalidRecord,
    MemoryUnavailable,
    RequestConflict,
    StoreFull,
)
from mem_memory.group import GroupCommitter
from mem_memory.index import Similar, WorkingMemory, first_match
from mem_memory.learning import _EPOCH, Learning
from mem_memory.reporting import Reporting
from mem_memory.requests import Conflict, validate_request_id
from mem_memory.rules.context import decision_context
from mem_memory.store import MemoryStore, PreparedDecision
from mem_memory.types import (
    Decision,
    DecisionView,
    Parameters,
    SignalRequest,
    StrategySpec,
)
from mem_memory.write_health import WriteHealth
from mem_memory.writer import WriterProcess

log = logging.getLogger(__name__)


class MemoryEngine(Learning, Reporting):
    """The memory as serving and Dagster use it (see docs/CONTRACTS.md)."""

    def __init__(self, store: MemoryStore, config: MemoryConfig | None = None, *, writer_process: bool = False) -> None:
        """``writer_process``: ``enhance_async`` commits through a writer process
        (``mem_memory.async_commit``) instead of the in-process group commit on a worker thread."""
        self.store = store
        self.config = config or MemoryConfig()
        self._lock = threading.RLock()
        self._wm = WorkingMemory(self.config.recent_per_symbol, self.config.max_symbols, self.config.closed_window)
        self._params = Parameters(dict(self.config.parameters), _EPOCH)
        self._last_seen = 0
        self._checked = 0.0
        self._refreshing = threading.Lock()
        self._catching_up = False
        self._load()
        #: Whether writes find space (serving's health follows it); probes while they do not.
        self.write_health = WriteHealth(store.probe_write, self.config.write_probe_s)
        if not store.writable:  # opened read-only on a full disk: NOT_SERVING, probing, from the start
            self.write_health.failed(StoreFull(store.read_only_reason))
        self._group = GroupCommitter(store, self._after_commit)
        self._async: AsyncDecisionCommitter | None = None
        if writer_process and store.dialect.files:  # PostgreSQL: psycopg waits without the GIL
            self._async = AsyncDecisionCommitter(
                WriterProcess(store.path), store, self._after_commit, self._group.submit_decision
            )

    def start_writer(self) -> None:
        """Start the writer process now rather than on the first ``enhance_async`` (no-op
        without ``writer_process``). ``MemoryUnavailable`` if it cannot open the store."""
        if self._async is not None and self.store.writable:  # else on the first write that finds space
            self._async.start()

    def close(self) -> None:
        """Stop the writer process, if any, and the write probe (the store stays open: its owner
        closes it)."""
        self.write_health.close()
        if self._async is not None:
            self._async.close()

    def __repr__(self) -> str:
        return f"MemoryEngine(store={self.store!r}, last_event={self._last_seen})"

    @property
    def group_stats(self) -> dict[str, float]:
        """Group commit counters: transactions, units written, mean and largest group (the
        writer process's batches under ``writer_process``, when it has any)."""
        if self._async is not None and self._async.stats.commits:
            return self._async.stats.as_dict()
        return self._group.stats.as_dict()

    # ------------------------------------------------------------------ hot-path reads
    def recent_decisions(self, symbol: str, n: int = 50) -> list[DecisionView]:
        """The last ``n`` (<= ``recent_per_symbol``) decisions of ``symbol``, newest first."""
        self.refresh(force=False)
        with self._lock:
            return self._wm.last(symbol, n)

    def similar(self, action: str, features: Mapping[str, float], k: int | None = None) -> Similar:
        """Closed trades of ``action`` among the ``k`` nearest neighbours of ``features`` (within
        ``similar_radius``)."""
        self.refresh(force=False)
        with self._lock:
            return self._wm.similar(action, features, k or self.config.neighbours, self.config.similar_radius)

    def matching_strategies(
        self, action: str, features: Mapping[str, float], time: datetime | None = None
    ) -> list[StrategySpec]:
        """Active strategies of ``action`` whose conditions hold; with ``time``, on the decision
        context (``utc_hour`` included) as ``enhance`` matches them."""
        context = decision_context(features, time) if time is not None else features
        self.refresh(force=False)
        with self._lock:
            return self._wm.matching(action, context)

    def seen_event_id(self) -> int:
        """The newest event applied to the working memory, after a refresh if
        ``refresh_interval_s`` has passed (so it moves when any process writes): callers that
        cache reads of the engine key their caches on it."""
        self.refresh(force=False)
        with self._lock:
            return self._last_seen

    def parameters(self) -> Parameters:
        self.refresh(force=False)
        with self._lock:
            return self._params

    def strategies(self, include_deprecated: bool = False) -> list[StrategySpec]:
        self.refresh(force=False)
        with self._lock:
            specs = [s for s in self._wm.strategies.values() if include_deprecated or not s.deprecated]
            return sorted(specs, key=lambda s: s.name)

    # ------------------------------------------------------------------ enhancement
    def _prepare(
        self, requests: Sequence[SignalRequest], fingerprints: Sequence[str]
    ) -> list[tuple[Decision, PreparedDecision]]:
        """``_decide`` as pairs: each decision with its encoded form."""
        return list(zip(*self._decide(requests, fingerprints), strict=True))

    def _decide(
        self, requests: Sequence[SignalRequest], fingerprints: Sequence[str]
    ) -> tuple[list[Decision], list[PreparedDecision]]:
        """The decisions for ``requests`` (not yet stored) and their encoded forms: ``_made`` of
        what ``_retrieve`` reads."""
        return self._made(requests, fingerprints, self._retrieve(requests), new_decision_ids(len(requests)))

    def _retrieve(self, requests: Sequence[SignalRequest]) -> list[Retrieved]:
        """What ``decide_many`` needs of the in-process index (no store read), read under one
        hold of the index lock: the parameters, per request the first matching strategy and the
        similar trades (none for a HOLD)."""
        cfg = self.config
        k, radius = cfg.neighbours, cfg.similar_radius
        retrieved: list[Retrieved] = []
        wm = self._wm
        with self._lock:  # per action once: its strategies in order, whether any trade is indexed
            params = self._params
            held = (params, None, None)
            candidates = {a: wm.candidates(a) for a in ("BUY", "SELL")}
            sims = {  # per action: the similar trades of its requests, in order
                a: iter(wm.similar_many(a, [r.features for r in requests if r.action == a], k, radius))
                for a in ("BUY", "SELL")
                if not wm.similar_to_nothing(a)
            }
            silent = (params, None, Similar(0, 0, ()))  # no strategy, no similar trade: one tuple for all
            nothing = silent[2]
            for r in requests:
                action = r.action
                if action == "HOLD":
                    retrieved.append(held)
                    continue
                specs = candidates[action]
                spec = first_match(specs, decision_context(r.features, r.time)) if specs else None
                found = sims.get(action)
                if spec is None and found is None:
                    retrieved.append(silent)
                else:
                    retrieved.append((params, spec, nothing if found is None else next(found)))
        return retrieved

    def _made(
        self,
        requests: Sequence[SignalRequest],
        fingerprints: Sequence[str],
        retrieved: Sequence[Retrieved],
        decision_ids: Sequence[str],
    ) -> tuple[list[Decision], list[PreparedDecision]]:
        """``decide_many`` of ``requests`` and the decisions' encoded forms (JSON + AES-GCM
        outside any lock)."""
        decisions = decide_many(requests, retrieved, self.config, decision_ids)
        return decisions, self.store.prepare_decisions(decisions, [r.request_id for r in requests], fingerprints)

    def _index(self, decision: Decision) -> Callable[[Any], None]:
        """What a committed decision adds to the index (nothing for a replayed request id): one
        object per decision (a partial, not a closure and its cell: fewer for the GC to count)."""
        return partial(self._add_written, decision)

    def _add_written(self, decision: Decision, written: Any) -> None:
        if isinstance(written, int):
            self._wm.add_decision(decision)

    def _answer(self, request: SignalRequest, decision: Decision, written: Any) -> Enhanced:
        """The answer to ``request`` once its commit returned ``written``: its new decision, or
        the stored one of a repeated request id (``replayed``); ``RequestConflict`` for an id
        used by another request."""
        if isinstance(written, BaseException):
            if isinstance(written, (StoreFull, MemoryUnavailable)):  # no space, or the store out of reach
                self.write_health.failed(written)
            raise written
        if isinstance(written, int):
            return Enhanced(decision, False)
        if isinstance(written, Conflict):
            raise RequestConflict(
                f"request_id: {request.request_id!r} was already used for a different request (event "
                f"{written.event_id}); nothing was recorded: use a new id for a new request",
                written.event_id,
            )
        original = self.store.decision_from(written.event_id, written.payload)
        if not written.fingerprinted:  # stored before fingerprints: check what the record says
            _same_call(original, request.symbol, request.action)
        return Enhanced(original, True)

    def enhance(self, request: SignalRequest, fingerprint: str = "") -> Decision:
        """Combine base, ML and memory confidence, apply the HOLD rule, size the trade and
        record the decision (durable when this returns), on the caller's thread. With
        ``request.request_id`` already recorded: its stored decision, nothing written (and
        ``RequestConflict`` when ``fingerprint`` says the request differs)."""
        self.refresh(force=False)
        ((decision, prepared),) = self._prepare([request], [fingerprint])
        try:
            written: Any = self._group.submit_decision(prepared, self._index(decision))
        except Exception as exc:
            written = exc
        return self._answer(request, decision, written).decision

    async def enhance_many(
        self,
        requests: Sequence[SignalRequest],
        fingerprints: Sequence[str] | None = None,
        meanwhile: Callable[[list[Decision]], object] | None = None,
    ) -> list[Enhanced | Exception]:
        """``enhance`` for asyncio callers and many requests at once: the decisions are committed
        together (one transaction), each request id checked inside it; per request its answer
        or its error. The event loop never reads the store: the index is refreshed on a worker
        thread, and the commit runs in the writer process (or on a worker thread).
        ``meanwhile(decisions)`` runs on the loop's next turn, while they commit."""
        if self._refresh_due():
            self._checked = _time.monotonic()
            self._catch_up()
        fps = list(fingerprints) if fingerprints is not None else [""] * len(requests)
        results: list[Any]
        committer = self._async
        if committer is not None and self.store.writable and len(requests) > committer.part:
            decisions, results = await self._commit_in_parts(committer, requests, fps, meanwhile)
        else:
            decisions, prepared = self._decide(requests, fps)
            if meanwhile is not None:  # the next loop turn: after the submission below has sent them
                asyncio.get_running_loop().call_soon(meanwhile, decisions)
            add = self._add_written
            applies = [partial(add, d) for d in decisions]

            def apply_all(written: list[Any]) -> None:
                for apply, w in zip(applies, written):
                    apply(w)

            try:
                if committer is not None and self.store.writable:  # read-only: StoreFull from the store
                    results = await committer.submit_many(prepared, list[Any](applies))
                else:
                    results = await asyncio.to_thread(
                        self._group.submit, lambda store: list[Any](store.append_prepared_checked(prepared)), apply_all
                    )
            except Exception as exc:
                results = [exc] * len(decisions)
        answers: list[Enhanced | Exception] = []
        new = tuple.__new__  # Enhanced(d, False) without its Python frame: the answer of a new decision
        for r, d, w in zip(requests, decisions, results):
            if type(w) is int:
                answers.append(new(Enhanced, (d, False)))
                continue
            try:
                answers.append(self._answer(r, d, w))
            except Exception as exc:
                answers.append(exc)
        return answers

    async def _commit_in_parts(
        self,
        committer: AsyncDecisionCommitter,
        requests: Sequence[SignalRequest],
        fps: list[str],
        meanwhile: Callable[[list[Decision]], object] | None,
    ) -> tuple[list[Decision], list[Any]]:
        """``_decide`` and the commit of a big call through ``committer.submit_made``: the
        decisions made part by part (from one read of the index), each part sent to the writer
        while the next is made (all before ``submit_made`` first waits, when ``meanwhile`` runs).
        The decisions and, per decision, its commit's result or error."""
        n = len(requests)
        retrieved, ids = self._retrieve(requests), new_decision_ids(n)
        decisions: list[Decision] = []
        failed: list[BaseException] = []
        add = self._add_written

        def make(i: int, j: int) -> tuple[list[PreparedDecision], list[Any]]:
            try:
                made, prepared = self._made(requests[i:j], fps[i:j], retrieved[i:j], ids[i:j])
            except BaseException as exc:
                failed.append(exc)
                raise
            decisions.extend(made)
            return prepared, [partial(add, d) for d in made]

        if meanwhile is not None:  # not when making a part failed (the call raises)
            asyncio.get_running_loop().call_soon(lambda: len(decisions) == n and meanwhile(decisions))
        try:
            return decisions, await committer.submit_made(n, make)
        except Exception as exc:
            if failed:  # _decide's own error, raised as it was before the commit
                raise
            if len(decisions) < n:  # the commit failed before they were made: made for the answers
                decisions += self._made(requests, fps, retrieved, ids)[0][len(decisions) :]
            return decisions, [exc] * n

    async def enhance_async(self, request: SignalRequest, fingerprint: str = "") -> Decision:
        """One request through ``enhance_many``: its decision (or error)."""
        answer = (await self.enhance_many([request], [fingerprint]))[0]
        if isinstance(answer, Exception):
            raise answer
        return answer.decision

    def once(
        self, kind: str, request_id: str, fingerprint: str, act: Callable[[], dict[str, Any]]
    ) -> tuple[dict[str, Any], bool]:
        """``act()`` at most once per ``request_id`` of calls of ``kind`` that write no event of
        their own (PushCandles): inside one write transaction, the stored answer of a repeated id
        and True (replayed), else ``act()``'s answer recorded with the id and False.
        ``RequestConflict`` when the id was used by a request with another fingerprint."""
        validate_request_id(request_id)

        def work(store: MemoryStore) -> tuple[dict[str, Any], bool]:
            found = store.find_request(kind, request_id)
            if found is not None:
                if found.fingerprint is not None and found.fingerprint != store.fingerprint_tag(fingerprint):
                    raise RequestConflict(
                        f"request_id: {request_id!r} was already used for a different request; nothing was "
                        "recorded: use a new id for a new request"
                    )
                return dict(found.answer or {}), True
            answer = act()
            store.record_request(kind, request_id, 0, answer, fingerprint)
            return answer, False

        try:
            return self._group.submit(work)
        except (StoreFull, MemoryUnavailable) as exc:
            self.write_health.failed(exc)
            raise


def _same_call(original: Decision, symbol: str, action: str) -> Decision:
    """``original`` if a call about ``symbol`` and ``action`` repeats the call that recorded it;
    a request id reused for another call is ``InvalidRecord`` rather than an answer about
    something else."""
    if original.symbol != symbol or original.base_action != action:
        raise InvalidRecord(
            "request_id",
            f"already used for a {original.base_action} call about {original.symbol} (decision {original.decision_id})",
        )
    return original


class Enhanced(NamedTuple):
    """An answered signal: its decision and whether it is the stored answer of a repeated
    request id (nothing recorded by this call)."""

    decision: Decision
    replayed: bool
