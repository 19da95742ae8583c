"""The memory engine: enhancement, learning from outcomes, discovery, the monitor, restore.

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
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from mem_memory.async_commit import AsyncDecisionCommitter
from mem_memory.config import MemoryConfig
from mem_memory.errors import (
    CorruptRecord,
    DuplicateOutcome,
    InvalidRecord,
    MemoryUnavailable,
    RequestConflict,
    StoreFull,
    UnknownParameterVersion,
)
from mem_memory.group import GroupCommitter
from mem_memory.index import Similar, WorkingMemory
from mem_memory.requests import Conflict, validate_request_id
from mem_memory.rules import discovery as discovery_rules
from mem_memory.rules import parameters as prules
from mem_memory.rules.adapter import adapt
from mem_memory.rules.combine import combine, hold_rule, memory_confidence, ml_support
from mem_memory.rules.context import decision_context
from mem_memory.rules.strategy_stats import update_strategy
from mem_memory.store import MemoryStore, PreparedDecision
from mem_memory.types import (
    DECISION,
    OUTCOME,
    PARAMETER_ADJUSTMENT,
    SHADOW_OUTCOME,
    STRATEGY_UPSERT,
    Decision,
    DecisionView,
    DiscoveryResult,
    Event,
    LearningUpdate,
    MemoryStats,
    Outcome,
    ParameterAdjustment,
    Parameters,
    SignalRequest,
    StrategySpec,
    trusted,
)
from mem_memory.write_health import WriteHealth
from mem_memory.writer import WriterProcess

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class MemoryEngine:
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

    # ------------------------------------------------------------------ index upkeep
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
        p = event.payload
        if event.kind == DECISION:
            self._wm.add_decision(Decision.from_dict(p))
        elif event.kind in (OUTCOME, SHADOW_OUTCOME):
            outcome = Outcome.from_dict(p)
            decision = self._held(outcome.decision_id)
            if decision is None:
                try:
                    decision = self.store.get_decision(outcome.decision_id)[0]
                except CorruptRecord:  # reported by the store; the trade stays out of the index
                    return
            self._wm.add_outcome(decision, outcome)
        elif event.kind == PARAMETER_ADJUSTMENT:
            self._params = Parameters.from_dict(p["parameters"])
        elif event.kind == STRATEGY_UPSERT:
            self._wm.put_strategy(StrategySpec.from_dict(p))

    def _held(self, decision_id: str) -> Decision | None:
        symbol = self._wm.open_ids.get(decision_id)
        if symbol is None:
            return None
        for view in reversed(self._wm.recent[symbol]):
            if view.decision.decision_id == decision_id:
                return view.decision
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
    def _retrieve(self, request: SignalRequest) -> tuple[Parameters, StrategySpec | None, Similar | None]:
        """What the memory knows for ``request``, from the in-process index only (no store
        read): the current parameters, the first matching strategy and the similar trades."""
        cfg = self.config
        with self._lock:
            params = self._params
            if request.action == "HOLD":
                return params, None, None
            matches = self._wm.matching(request.action, decision_context(request.features, request.time))
            sim = self._wm.similar(request.action, request.features, cfg.neighbours, cfg.similar_radius)
        return params, (matches[0] if matches else None), sim

    def _prepare(self, request: SignalRequest, fingerprint: str) -> tuple[Decision, PreparedDecision]:
        """The decision for ``request`` (not yet stored) and its encoded form (JSON + AES-GCM
        outside any lock)."""
        params, spec, sim = self._retrieve(request)
        decision = decide(request, params, spec, sim, self.config, str(uuid.uuid4()))
        return decision, self.store.prepare_decision(decision, request.request_id, fingerprint)

    def _index(self, decision: Decision) -> Callable[[Any], None]:
        """What a committed decision adds to the index (nothing for a replayed request id)."""

        def apply(written: Any) -> None:
            if isinstance(written, int):
                self._wm.add_decision(decision)

        return apply

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
        decision, prepared = self._prepare(request, fingerprint)
        try:
            written: Any = self._group.submit_decision(prepared, self._index(decision))
        except Exception as exc:
            written = exc
        return self._answer(request, decision, written).decision

    async def enhance_many(
        self, requests: Sequence[SignalRequest], fingerprints: Sequence[str] | None = None
    ) -> list[Enhanced | Exception]:
        """``enhance`` for asyncio callers and many requests at once: the decisions are committed
        together (one transaction), each request id checked inside it; per request its answer
        or its error. The event loop never reads the store: the index is refreshed on a worker
        thread, and the commit runs in the writer process (or on a worker thread)."""
        if self._refresh_due():
            self._checked = _time.monotonic()
            self._catch_up()
        fps = list(fingerprints) if fingerprints is not None else [""] * len(requests)
        made = [self._prepare(r, fp) for r, fp in zip(requests, fps, strict=True)]
        prepared = [p for _, p in made]
        applies = [self._index(d) for d, _ in made]
        results: list[Any]

        def apply_all(written: list[Any]) -> None:
            for apply, w in zip(applies, written):
                apply(w)

        try:
            if self._async is not None and self.store.writable:  # read-only: StoreFull from the store
                results = await self._async.submit_many(prepared, list[Any](applies))
            else:
                results = await asyncio.to_thread(
                    self._group.submit, lambda store: list[Any](store.append_prepared_checked(prepared)), apply_all
                )
        except Exception as exc:
            results = [exc] * len(made)
        answers: list[Enhanced | Exception] = []
        for r, (d, _), w in zip(requests, made, results):
            try:
                answers.append(self._answer(r, d, w))
            except Exception as exc:
                answers.append(exc)
        return answers

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

    # ------------------------------------------------------------------ learning
    def _current_parameters(self) -> tuple[Parameters, dict[str, Any]]:
        latest = self.store.latest_parameters()
        if latest is None:
            return Parameters(dict(self.config.parameters), _EPOCH), {}
        return latest[1], latest[2]

    def record_outcome(self, outcome: Outcome, request_id: str = "", fingerprint: str = "") -> LearningUpdate:
        """Store the outcome and learn from it, atomically: the matched strategy's stats (and
        deprecation), the bounded parameter adjustment, the performance monitor. Raises
        ``UnknownDecision`` for an unknown id and ``DuplicateOutcome`` for a second outcome.
        With ``request_id`` already answered (``mem_memory.requests``): the original answer,
        marked ``replayed``, and nothing is written; ``RequestConflict`` when ``fingerprint``
        says it answered a different request.

        A **shadow outcome** (``outcome.shadow``, only for a HOLD decision: what its base signal
        would have done had it been traded) is stored (kind ``shadow_outcome``) and learned from
        by pattern discovery and the similar-trades memory, which then see every signal and not
        only the ones the memory let through; no risk rule counts it (no size step, no performance
        monitor, no strategy statistics): no money was at stake. ``InvalidRecord`` for a shadow
        outcome of a decision that was not a HOLD.

        Runs in a group commit: outcomes of concurrent calls are learned from one after the
        other inside one transaction (each re-reads the strategy and parameters the previous
        one wrote), so the result is the same as one transaction each."""
        request_id = validate_request_id(request_id)
        with self._lock:
            held = self._held(outcome.decision_id)  # saves decoding the decision from the store
        try:
            learned = self._group.submit(
                lambda store: self._learn(store, outcome, held, request_id, fingerprint),
                lambda w: self._apply_learned(outcome, w),
            )
        except (StoreFull, MemoryUnavailable) as exc:  # no space, or the store out of reach
            self.write_health.failed(exc)
            raise
        update: LearningUpdate = learned[0]
        return update

    def _learn(
        self, store: MemoryStore, outcome: Outcome, held: Decision | None, request_id: str = "", fingerprint: str = ""
    ) -> tuple[Any, ...]:
        """The writes of one outcome, inside the (group) write transaction: (the answer, and what
        ``_apply_learned`` needs: decision, strategy after, adjustments, parameters; None for a
        repeated request id). Store calls only: it runs under the store's lock and must not take
        the engine's."""
        if request_id and (found := store.find_request(OUTCOME, request_id)) is not None:
            first = LearningUpdate.from_dict(found.answer or {})
            if (
                found.fingerprint is not None
                and fingerprint
                and found.fingerprint != store.fingerprint_tag(fingerprint)
            ):
                raise RequestConflict(
                    f"request_id: {request_id!r} was already used for a different outcome report (of decision "
                    f"{first.decision_id}); nothing was recorded: use a new id for a new request",
                    found.event_id,
                )
            if first.decision_id != outcome.decision_id:
                raise InvalidRecord(
                    "request_id", f"already used for the outcome of another decision ({first.decision_id})"
                )
            return replace(first, replayed=True), None, None, None, None
        cfg = self.config
        at = outcome.time
        if held is not None:
            decision = held  # existence and "one outcome only" are checked by append_outcome
        else:
            decision, previous = store.get_decision(outcome.decision_id)
            if previous is not None:
                raise DuplicateOutcome(f"decision {outcome.decision_id} already has an outcome")
        if outcome.shadow and decision.action != "HOLD":
            raise InvalidRecord(
                "shadow", f"decision {outcome.decision_id} was a {decision.action}, not a HOLD: report its trade"
            )
        outcome_event = store.append_outcome(outcome)
        spec_after: StrategySpec | None = None
        deprecated = False
        adjustments: list[ParameterAdjustment] = []
        if outcome.shadow:  # no trade, so no risk rule counts it
            params = self._current_parameters()[0]
        else:
            if decision.learned_strategy:
                spec = store.strategy(decision.learned_strategy)
                if spec is not None:
                    spec_after, deprecated = update_strategy(spec, outcome, at, cfg)
                    store.append_strategy(spec_after)
            params, state = self._current_parameters()
            adjustments = prules.adjust_after_outcome(params, outcome, at, cfg)
            params = prules.apply(params, adjustments, at)
            monitor_adj, state = self._monitor_step(params, state, outcome_event, at)
            adjustments += monitor_adj
            params = prules.apply(params, monitor_adj, at)
            if adjustments:
                store.append_parameters(params, adjustments, state)
        summary = _outcome_summary(outcome, spec_after, deprecated, adjustments)
        if outcome.shadow:
            summary = (
                f"shadow outcome of a held {decision.base_action} signal: {summary}; learned by discovery and "
                "similar-trades memory, not by sizing or the monitor"
            )
        update = LearningUpdate(
            decision_id=outcome.decision_id,
            win=outcome.win,
            strategy=spec_after.name if spec_after else (None if outcome.shadow else decision.learned_strategy),
            strategy_stats=spec_after.stats if spec_after else None,
            adjustments=tuple(adjustments),
            parameters_version=params.version,
            summary=summary,
            deprecated=deprecated,
            shadow=outcome.shadow,
        )
        if request_id:
            store.record_request(OUTCOME, request_id, outcome_event, update.to_dict(), fingerprint)
        return update, decision, spec_after, adjustments, params

    def _apply_learned(self, outcome: Outcome, learned: tuple[Any, ...]) -> None:
        """The index side of ``_learn``'s writes (called under the engine lock, in commit order)."""
        _, decision, spec_after, adjustments, params = learned
        if decision is None:  # a repeated request id: nothing was written
            return
        self._wm.add_outcome(decision, outcome)
        if spec_after is not None:
            self._wm.put_strategy(spec_after)
        if adjustments:
            self._params = params

    def _monitor_step(
        self, params: Parameters, state: dict[str, Any], newest_outcome_event: int, at: datetime
    ) -> tuple[list[ParameterAdjustment], dict[str, Any]]:
        """The performance monitor inside a write transaction. It acts on a window of 20 trades
        once: it looks again only when 20 trades have closed since it last fired."""
        cfg = self.config
        mark = int(state.get("monitor_mark", 0))
        if self.store.outcomes_after(mark, cap=cfg.monitor_window) < cfg.monitor_window:
            return [], state
        wins = self.store.recent_wins(cfg.monitor_window)
        adjustments = prules.performance_monitor(params, wins, at, cfg)
        if adjustments:
            state = {**state, "monitor_mark": newest_outcome_event}
        return adjustments, state

    def monitor(self, now: datetime) -> list[ParameterAdjustment]:
        """Run the performance monitor over the last 20 closed trades (the Dagster sensor's job);
        returns the adjustments it made (none when the win rate is >= 45% or the window was
        already acted on)."""
        with self.store.transaction():
            params, state = self._current_parameters()
            newest = self.store.last_event_id()
            adjustments, state = self._monitor_step(params, state, newest, now)
            if adjustments:
                self.store.append_parameters(prules.apply(params, adjustments, now), adjustments, state)
        self.refresh()
        return adjustments

    def discover(self, now: datetime) -> DiscoveryResult:
        """Pattern discovery over the last 500 closed trades: create, update and deprecate
        learned strategies (rules.discovery)."""
        with self.store.transaction():
            trades = self.store.closed_trades(self.config.discovery_window)
            existing = self.store.strategies()
            params, _ = self._current_parameters()
            result = discovery_rules.discover(trades, existing, params, now, self.config)
            for spec in (*result.deprecated, *result.updated, *result.created):
                self.store.append_strategy(spec)
        self.refresh()
        return result

    def restore_parameters(self, version: str, reason: str, now: datetime | None = None) -> list[ParameterAdjustment]:
        """Make an earlier parameter set (by version hash) current again, as a logged adjustment
        with trigger ``restore:<version>``. ``UnknownParameterVersion`` when no set has it."""
        at = now or datetime.now(UTC)
        with self.store.transaction():
            target = self.store.parameters_by_version(version)
            if target is None:
                defaults = Parameters(dict(self.config.parameters), _EPOCH)
                if defaults.version != version:
                    raise UnknownParameterVersion(f"no stored parameter set has version {version!r}")
                target = defaults
            params, state = self._current_parameters()
            adjustments = prules.restore(params, target, reason, at, self.config)
            if adjustments:
                self.store.append_parameters(prules.apply(params, adjustments, at), adjustments, state)
        self.refresh()
        return adjustments

    # ------------------------------------------------------------------ reporting
    def stats(self, now: datetime | None = None) -> MemoryStats:
        """Counts, and the win rate of trades closed in the 24 h before ``now``."""
        now = now or datetime.now(UTC)
        since = now - timedelta(hours=24)
        self.refresh(force=False)
        with self._lock:
            specs = list(self._wm.strategies.values())
        with self.store.snapshot():  # the store's reads, without holding the index
            counts = self.store.counts()
            trades = wins = 0
            offset, page = 0, 1000
            while True:
                batch = self.store.closed_trades(page, offset)
                if not batch:
                    break
                older = False
                for _, o in batch:
                    if o.shadow:  # not a trade
                        continue
                    if since <= o.time <= now:
                        trades += 1
                        wins += o.win
                    elif o.time < since:
                        older = True
                if older or not batch:
                    break
                offset += page
        return MemoryStats(
            decisions=counts["decisions"],
            outcomes=counts["outcomes"],
            active_strategies=sum(not s.deprecated for s in specs),
            deprecated_strategies=sum(s.deprecated for s in specs),
            trades_24h=trades,
            win_rate_24h=(wins / trades) if trades else None,
            corrupt_records=len(self.store.corrupt),
        )

    def export_all(self, folder: str | Path) -> dict[str, Path]:
        """Regenerate core_memory_updates.txt, parameter_updates.json and strategy_modules.py in
        ``folder`` from the store; returns the paths by name."""
        from mem_memory.exports import export_all

        with self._lock:
            return export_all(self.store, Path(folder), self.config)


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


def decide(
    request: SignalRequest,
    params: Parameters,
    spec: StrategySpec | None,
    sim: Similar | None,
    cfg: MemoryConfig,
    decision_id: str,
) -> Decision:
    """The decision record for ``request`` (pure: no I/O, no clock). Inputs: the request with
    its ML prediction (``ml_confidence``/``ml_direction``) and feature snapshot, the current
    parameters, the first matching learned strategy and the similar closed trades (both None
    for a HOLD). Combines base, ML and memory confidence, applies the HOLD rule and sizes the
    trade from the parameters, adjusted by the strategy and the regime (docs/memory.md). The
    record is built unchecked (``trusted``): its inputs are validated records and the rules keep
    confidences in [0, 1] and sizes >= 0 (tests/memory/test_decide.py checks it passes the checks)."""
    features = request.features
    base_action = request.action
    ml = ml_support(base_action, request.ml_confidence, request.ml_direction)
    adaptation = adapt(features, request.strategy, cfg)
    memory: float | None = None
    memory_note = "memory silent"
    if sim is not None:
        memory, memory_note = memory_confidence(sim.wins, sim.n, spec.confidence if spec else None, cfg.min_similar)
    final = combine(request.base_confidence, ml, memory, cfg)
    action = base_action if base_action == "HOLD" else hold_rule(base_action, final, params["ml_confidence_min"])
    if action == "HOLD":
        size = stop = target = 0.0
        stop_price = take_price = 0.0
        sizing_note = ""
    else:
        sz = prules.sizing(params, spec, adaptation, cfg)
        size, stop, target, sizing_note = sz.size, sz.stop_loss_pct, sz.take_profit_pct, sz.note
        sign = 1.0 if action == "BUY" else -1.0
        stop_price = request.price * (1.0 - sign * stop)
        take_price = request.price * (1.0 + sign * target)
    reasoning = _reasoning(
        request,
        action,
        final,
        ml,
        memory,
        memory_note,
        spec,
        adaptation.regime,
        params["ml_confidence_min"],
        sizing_note,
    )
    return trusted(
        Decision,
        decision_id=decision_id,
        time=request.time,
        symbol=request.symbol,
        strategy=request.strategy,
        action=action,
        base_action=base_action,
        price=request.price,
        base_confidence=request.base_confidence,
        ml_confidence=request.ml_confidence,
        memory_confidence=memory,
        confidence=final,
        size=size,
        stop_loss=stop_price,
        take_profit=take_price,
        stop_loss_pct=stop,
        take_profit_pct=target,
        reasoning=reasoning,
        learned_strategy=spec.name if spec else None,
        model_version=request.model_version,
        ml_direction=request.ml_direction,
        features=features,
        regime=adaptation.regime,
        parameters_version=params.version,
        session_id=request.session_id,
        market_context=request.market_context,
    )


# ---------------------------------------------------------------------- sentences
def _reasoning(
    req: SignalRequest,
    action: str,
    final: float,
    ml: float | None,
    memory: float | None,
    memory_note: str,
    spec: StrategySpec | None,
    regime: str,
    minimum: float,
    sizing_note: str,
) -> str:
    if req.action == "HOLD":
        return f"HOLD kept: the base strategy {req.strategy or 'signal'} said HOLD."
    parts = [f"base {req.base_confidence:.2f}"]
    if ml is not None:
        if req.ml_direction is None:
            parts.append(f"ML {ml:.2f}")
        else:
            verb = "supports" if ml == req.ml_confidence else "opposes"
            parts.append(f"ML {ml:.2f} ({req.ml_direction} reversal {verb} {req.action})")
    else:
        parts.append(f"no ML ({req.ml_absent_reason})" if req.ml_absent_reason else "no ML")
    parts.append(f"memory {memory:.2f} ({memory_note})" if memory is not None else "memory silent")
    weights = {"base": req.base_confidence - final}
    if ml is not None:
        weights["ML"] = ml - final
    if memory is not None:
        weights["memory"] = memory - final
    driver = max(weights, key=lambda k: abs(weights[k])) if len(weights) > 1 else "base"
    head = (
        f"{action} at {final:.2f}"
        if action != "HOLD"
        else f"HOLD: final confidence {final:.2f} below minimum {minimum:.2f}"
    )
    tail = [f"driven most by {driver}"]
    if spec is not None:
        tail.append(f"learned strategy {spec.name} matched")
    if regime != "normal":
        tail.append(f"regime {regime}")
    if sizing_note:
        tail.append(sizing_note)
    return f"{head} ({', '.join(parts)}); {'; '.join(tail)}."


def _outcome_summary(
    outcome: Outcome, spec: StrategySpec | None, deprecated: bool, adjustments: list[ParameterAdjustment]
) -> str:
    text = f"{'win' if outcome.win else 'loss'} {outcome.pnl_pct:+.2%} on {outcome.decision_id}"
    if spec is not None:
        text += f"; {spec.name} now {spec.stats.wins}/{spec.stats.trades} ({spec.stats.win_rate:.0%})"
        if deprecated:
            text += ", deprecated"
    if adjustments:
        text += "; " + ", ".join(f"{a.parameter} {a.from_value:.4g}->{a.to_value:.4g}" for a in adjustments)
    return text
