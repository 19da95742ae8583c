"""What the learning sensors' assets do, as plain functions over a ``MemoryEngine`` (no Dagster).

The Dagster assets (``assets.py``) and the replay (``mem_pipelines.replay``) call the same
functions, so the replay learns exactly as the deployed loop does:

- ``scan_events(store, cursor)``: the sensors' cursor step over the memory's event log.
- ``run_discovery(engine, now, exports)``: pattern discovery (create / update / deprecate learned
  strategies) and re-rendering of the exports (strategy_modules.py, ...).
- ``run_monitor(engine, now)``: the performance monitor (win rate over the last 20 trades).
- ``MemoryLearner``: both, for the replay, with snapshots of the memory for its report.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mem_pipelines.replay.report import EvolutionPoint, LearningEvent

#: Event kinds of mem_memory's audit trail that mean "a trade closed" (mem_memory.types.OUTCOME).
OUTCOME_EVENT_KINDS = frozenset({"outcome"})


# --------------------------------------------------------------------------- cursor step
@dataclass(frozen=True)
class CursorStep:
    """Events after ``cursor``: how many, how many are outcomes, and the last id read."""

    cursor: int
    last_event_id: int
    events: int
    outcomes: int


def is_outcome(event: Any) -> bool:
    return event.kind in OUTCOME_EVENT_KINDS


def scan_events(store: Any, cursor: int, page: int = 1000, max_pages: int = 50) -> CursorStep:
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


def count_outcomes(engine: Any) -> int:
    return int(engine.store.counts()["outcomes"])


# --------------------------------------------------------------------------- reports
def _ts(value: Any) -> str:
    if value is None:
        return ""
    return pd.Timestamp(value).isoformat()


def strategy_row(spec: Any) -> dict[str, object]:
    """One learned strategy as a flat row (for tables in the UI and the replay report)."""
    stats = spec.stats
    conditions = " and ".join(f"{c.feature} {c.op} {c.threshold:.4g}" for c in spec.conditions)
    return {
        "name": spec.name,
        "conditions": conditions,
        "action": spec.action,
        "confidence": round(float(spec.confidence), 4),
        "size": round(float(spec.size), 4),
        "stop_pct": round(float(spec.stop_loss_pct), 4),
        "target_pct": round(float(spec.take_profit_pct), 4),
        "trades": int(stats.trades),
        "win_rate": round(float(stats.win_rate), 4) if stats.trades else math.nan,
        "avg_pnl_pct": round(float(stats.avg_pnl_pct), 5) if stats.trades else math.nan,
        "deprecated": bool(spec.deprecated),
        "deprecated_reason": spec.deprecated_reason or "",
    }


def markdown_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "_none_"
    cols = list(columns or rows[0].keys())
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            if isinstance(v, float):
                v = "n/a" if math.isnan(v) else f"{v:.4g}"
            cells.append(str(v).replace("|", "/").replace("\n", " "))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


@dataclass(frozen=True)
class Change:
    kind: str  # created | updated | deprecated | adjusted
    subject: str
    detail: str


@dataclass
class DiscoveryReport:
    now: pd.Timestamp
    changes: list[Change]
    active: list[dict[str, object]]
    deprecated: list[dict[str, object]]
    exports: dict[str, Path] = field(default_factory=dict)

    def count(self, kind: str) -> int:
        return sum(1 for c in self.changes if c.kind == kind)

    def changes_markdown(self) -> str:
        return markdown_table([{"change": c.kind, "strategy": c.subject, "why": c.detail} for c in self.changes])


@dataclass
class MonitorReport:
    now: pd.Timestamp
    changes: list[Change]
    parameters: dict[str, float]
    version: str
    recent_trades: int
    recent_win_rate: float

    def changes_markdown(self) -> str:
        return markdown_table([{"parameter": c.subject, "change": c.detail} for c in self.changes])

    def parameters_markdown(self) -> str:
        return markdown_table([{"parameter": k, "value": v} for k, v in sorted(self.parameters.items())])


def _discovery_changes(result: Any) -> list[Change]:
    changes = []
    for spec in result.created:
        r = strategy_row(spec)
        changes.append(Change("created", spec.name, f"{r['conditions']} -> {r['action']}: {r['trades']} trades, win rate {r['win_rate']}"))
    for spec in result.updated:
        r = strategy_row(spec)
        changes.append(Change("updated", spec.name, f"now {r['trades']} trades, win rate {r['win_rate']}"))
    for spec in result.deprecated:
        changes.append(Change("deprecated", spec.name, spec.deprecated_reason or "deprecated"))
    return changes


def run_discovery(engine: Any, now: pd.Timestamp, exports: Path | None = None) -> DiscoveryReport:
    """Pattern discovery at ``now``; re-render the exports into ``exports`` when given."""
    now = pd.Timestamp(now)
    result = engine.discover(now.to_pydatetime())
    specs = list(engine.strategies(include_deprecated=True))
    paths: dict[str, Path] = {}
    if exports is not None:
        exports.mkdir(parents=True, exist_ok=True)
        paths = {Path(p).name: Path(p) for p in engine.export_all(exports).values()}
    return DiscoveryReport(
        now=now,
        changes=_discovery_changes(result),
        active=[strategy_row(s) for s in specs if not s.deprecated],
        deprecated=[strategy_row(s) for s in specs if s.deprecated],
        exports=paths,
    )


def parameters_dict(params: Any) -> dict[str, float]:
    """``mem_memory.Parameters`` (or a plain mapping) as a dict of floats."""
    values = params if isinstance(params, Mapping) else params.values
    return {k: float(v) for k, v in values.items()}


def run_monitor(engine: Any, now: pd.Timestamp) -> MonitorReport:
    """The performance monitor at ``now``: adjustments (each with its reason) and the state after."""
    now = pd.Timestamp(now)
    adjustments = engine.monitor(now.to_pydatetime())
    params = engine.parameters()
    changes = [
        Change("adjusted", a.parameter, f"{a.from_value:.4g} -> {a.to_value:.4g}: {a.reason} (trigger: {a.trigger})")
        for a in adjustments
    ]
    trades, win_rate = recent_performance(engine)
    return MonitorReport(now, changes, parameters_dict(params), str(params.version), trades, win_rate)


def recent_performance(engine: Any, n: int = 20) -> tuple[int, float]:
    """Closed trades among the last ``n`` and their win rate (what the monitor looks at)."""
    outcomes = [o for _, o in engine.store.closed_trades(n)]
    if not outcomes:
        return 0, math.nan
    wins = sum(1 for o in outcomes if o.pnl > 0)
    return len(outcomes), wins / len(outcomes)


# --------------------------------------------------------------------------- the replay's learner
class MemoryLearner:
    """The sensors' learning for the replay: in-process, on the server's memory store.

    The server's engine applies other processes' writes on its next call once
    ``refresh_interval_s`` (1 s) has passed since its last look. So that the next decision of the
    replay sees what a step learned — every time, not depending on how fast the machine is — a
    step that wrote anything waits ``settle_s`` (that interval plus a margin) before returning.
    """

    def __init__(self, engine: Any, exports: Path | None = None, settle_s: float | None = None) -> None:
        self.engine = engine
        self.exports = exports
        self.settle_s = engine.config.refresh_interval_s + 0.25 if settle_s is None else settle_s
        self.waits = 0
        self._cursor = engine.store.last_event_id()  # changes before the replay are not its learning
        self._deprecated = {name: s.deprecated for name, s in engine.store.strategies().items()}

    @classmethod
    @contextmanager
    def open(cls, path: str | Path | None = None, exports: Path | None = None) -> Iterator["MemoryLearner"]:
        from mem_pipelines.resources import open_engine

        with open_engine(path) as engine:
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
        from mem_memory import PARAMETER_ADJUSTMENT, STRATEGY_UPSERT, ParameterAdjustment, StrategySpec

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
                why = f"{len(adjs)} outcomes ({wins} wins x1.02, {len(adjs) - wins} losses x0.98)"
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
