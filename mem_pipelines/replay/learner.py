"""The replay's learner: the learning sensors' functions run in-process on the server's memory
store, with snapshots of the memory for the report."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from mem_memory import PARAMETER_ADJUSTMENT, STRATEGY_UPSERT, MemoryEngine, ParameterAdjustment, StrategySpec
from mem_pipelines.learning.render import strategy_row
from mem_pipelines.learning.runners import parameters_dict, run_discovery, run_monitor
from mem_pipelines.replay.report import EvolutionPoint, LearningEvent
from mem_pipelines.resources import open_engine


class MemoryLearner:
    """The sensors' learning for the replay: in-process, on the server's memory store.

    The server's engine applies other processes' writes on its next call once
    ``refresh_interval_s`` has passed since its last look. So that the next decision of the
    replay sees what a step learned — every time, not depending on how fast the machine is — a
    step that wrote anything waits ``settle_s`` (that interval plus a margin) before returning.
    """

    def __init__(self, engine: MemoryEngine, exports: Path | None = None, settle_s: float | None = None) -> None:
        self.engine = engine
        self.exports = exports
        self.settle_s = engine.config.refresh_interval_s + 0.25 if settle_s is None else settle_s
        self.waits = 0
        self._cursor = engine.store.last_event_id()  # changes before the replay are not its learning
        self._deprecated = {name: s.deprecated for name, s in engine.store.strategies().items()}

    @classmethod
    @contextmanager
    def open(cls, path: str | Path | None = None, exports: Path | None = None) -> Iterator[MemoryLearner]:
        with open_engine(path) as engine:
            assert isinstance(engine, MemoryEngine)
            yield cls(engine, exports)

    def step(self, now: pd.Timestamp) -> list[LearningEvent]:
        """Discovery and the monitor at replay time ``now``; the changes since the previous step
        (theirs and the server's, all read back from the audit trail)."""
        before = self.engine.store.last_event_id()
        run_discovery(self.engine, now, self.exports)
        run_monitor(self.engine, now)
        if self.engine.store.last_event_id() != before and self.settle_s > 0:
            self.waits += 1
            time.sleep(self.settle_s)
        return self.changes_since_last_step(pd.Timestamp(now))

    def changes_since_last_step(self, now: pd.Timestamp) -> list[LearningEvent]:
        """Every learning change in the audit trail since the previous step — the server's (after
        each outcome: strategy stats, deprecation, parameter steps, the monitor) and this
        process's (discovery, monitor) — summarised: one row per strategy and per parameter and
        trigger kind."""
        strategies: dict[str, tuple[str, StrategySpec]] = {}
        adjustments: dict[tuple[str, str], list[ParameterAdjustment]] = {}
        while True:
            batch = self.engine.store.events_since(self._cursor, limit=1000)
            if not batch:
                break
            self._cursor = batch[-1].event_id
            for e in batch:
                if e.kind == STRATEGY_UPSERT:
                    spec = StrategySpec.from_dict(e.payload)
                    earlier = strategies.get(spec.name, (None,))[0]
                    if spec.name not in self._deprecated:
                        kind = "created"
                    elif spec.deprecated and not self._deprecated[spec.name]:
                        kind = "deprecated"
                    else:
                        kind = earlier or "updated"
                    self._deprecated[spec.name] = spec.deprecated
                    strategies[spec.name] = (kind, spec)
                elif e.kind == PARAMETER_ADJUSTMENT:
                    for a in e.payload["adjustments"]:
                        adj = ParameterAdjustment.from_dict(a)
                        adjustments.setdefault((adj.parameter, adj.trigger.split(":")[0]), []).append(adj)
        cfg = self.engine.config
        out = []
        for name in sorted(strategies):
            kind, spec = strategies[name]
            row = strategy_row(spec)
            if kind == "deprecated":
                detail = spec.deprecated_reason or "deprecated"
            else:
                detail = f"{row['conditions']} -> {row['action']}; {row['trades']} trades, win rate {row['win_rate']}"
            out.append(LearningEvent(now, f"strategy_{kind}", name, detail))
        for (parameter, trigger), adjs in sorted(adjustments.items()):
            start, end = adjs[0].from_value, adjs[-1].to_value
            if trigger == "outcome":
                wins = sum(1 for a in adjs if a.reason.startswith("win"))
                why = (
                    f"{len(adjs)} outcomes ({wins} wins x{cfg.win_size_step:g}, "
                    f"{len(adjs) - wins} losses x{cfg.loss_size_step:g})"
                )
            else:
                why = "; ".join(dict.fromkeys(a.reason for a in adjs))
            out.append(LearningEvent(now, f"parameter_{trigger}", parameter, f"{start:.4g} -> {end:.4g}: {why}"))
        return out

    def snapshot(self, now: pd.Timestamp, outcomes: int) -> EvolutionPoint:
        self.engine.refresh()  # the server's writes (outcomes, parameter adjustments) up to now
        specs = list(self.engine.strategies(include_deprecated=True))
        deprecated = sum(1 for s in specs if s.deprecated)
        return EvolutionPoint(
            ts=pd.Timestamp(now),
            outcomes=outcomes,
            active_strategies=len(specs) - deprecated,
            deprecated_strategies=deprecated,
            parameters=parameters_dict(self.engine.parameters()),
        )

    def final_strategies(self) -> list[dict[str, object]]:
        self.engine.refresh()
        return [strategy_row(s) for s in self.engine.strategies(include_deprecated=True)]
