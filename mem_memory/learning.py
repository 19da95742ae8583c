"""Learning from outcomes, the performance monitor, pattern discovery and parameter restores:
the engine's writes besides decisions (DESIGN §6), each in one (group) write transaction."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from mem_memory.errors import (
    DuplicateOutcome,
    InvalidRecord,
    MemoryUnavailable,
    RequestConflict,
    StoreFull,
    UnknownParameterVersion,
)
from mem_memory.requests import validate_request_id
from mem_memory.rules import discovery as discovery_rules
from mem_memory.rules import parameters as prules
from mem_memory.rules.strategy_stats import update_strategy
from mem_memory.store import MemoryStore
from mem_memory.types import (
    OUTCOME,
    Decision,
    DiscoveryResult,
    LearningUpdate,
    Outcome,
    ParameterAdjustment,
    Parameters,
    StrategySpec,
)
from mem_memory.upkeep import IndexUpkeep

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Learning(IndexUpkeep):
    """The learning side of ``MemoryEngine``."""

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
