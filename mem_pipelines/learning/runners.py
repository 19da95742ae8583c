"""What the learning sensors' assets run, as plain functions over a ``MemoryEngine`` (no Dagster):
pattern discovery and the performance monitor, each with a report of what changed and why.

The Dagster assets (``assets.py``) and the replay's learner (``mem_pipelines.replay.learner``)
call the same functions, so the replay learns exactly as the deployed loop does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mem_memory import DiscoveryResult, MemoryConfig, MemoryEngine, ParameterAdjustment, Parameters
from mem_pipelines.learning.render import rows_markdown, strategy_row

#: At most this many parameter changes are read for a "since the last run" list.
HISTORY_LIMIT = 10_000


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
        return rows_markdown([{"change": c.kind, "strategy": c.subject, "why": c.detail} for c in self.changes])


@dataclass(frozen=True)
class ParameterStep:
    """Consecutive changes of one parameter by one kind of trigger (``outcome``,
    ``performance_monitor``, ``restore``): ``start`` -> ``end`` and why. A parameter's steps chain:
    each starts where the previous one ended, so they multiply out."""

    parameter: str
    trigger: str
    start: float
    end: float
    changes: int
    why: str

    @property
    def detail(self) -> str:
        return f"{self.start:.4g} -> {self.end:.4g}: {self.why}"


def parameter_steps(
    adjustments: Sequence[ParameterAdjustment], cfg: MemoryConfig = MemoryConfig()
) -> list[ParameterStep]:
    """``adjustments`` (oldest first) as steps, per parameter in order of first change: the serving
    rule's per-outcome factors (x1.02 after a win, x0.98 after a loss) as one step per run of
    outcomes, the performance monitor's x0.7 (and its confidence minimum) and restores each as
    their own step. A run that hit a hard limit says so (its factors then do not multiply out)."""
    runs: dict[str, list[list[ParameterAdjustment]]] = {}
    for a in adjustments:
        kind = a.trigger.split(":")[0]
        steps = runs.setdefault(a.parameter, [])
        if steps and steps[-1][-1].trigger.split(":")[0] == kind:
            steps[-1].append(a)
        else:
            steps.append([a])
    out = []
    for parameter, steps in runs.items():
        for run in steps:
            kind = run[0].trigger.split(":")[0]
            start, end = run[0].from_value, run[-1].to_value
            if kind == "outcome":
                wins = sum(1 for a in run if a.reason.startswith("win"))
                why = (
                    f"{len(run)} outcomes ({wins} wins x{cfg.win_size_step:g}, "
                    f"{len(run) - wins} losses x{cfg.loss_size_step:g})"
                )
                expected = start * cfg.win_size_step**wins * cfg.loss_size_step ** (len(run) - wins)
                if not math.isclose(expected, end, rel_tol=1e-6):
                    lo, hi = cfg.limits.get(parameter, (-math.inf, math.inf))
                    why += f"; held within the limits [{lo:g}, {hi:g}]"
            elif kind == "performance_monitor":
                factor = f" x{cfg.monitor_size_factor:g}" if parameter == "position_size" else ""
                why = f"performance monitor{factor}: " + "; ".join(dict.fromkeys(a.reason for a in run))
            else:
                why = "; ".join(dict.fromkeys(a.reason for a in run))
            out.append(ParameterStep(parameter, kind, start, end, len(run), why))
    return out


def parameter_changes_since(
    engine: MemoryEngine, event_id: int, limit: int = HISTORY_LIMIT
) -> tuple[list[ParameterStep], int, bool]:
    """The parameter steps recorded after event ``event_id`` (by serving's per-outcome rule, the
    monitor, restores), the newest event id read, and whether older changes were left out."""
    changes = engine.store.parameter_changes_after(event_id, limit)
    adjustments = [a for _, adjs in changes for a in adjs]
    last = changes[-1][0] if changes else event_id
    return parameter_steps(adjustments, engine.config), last, len(changes) >= limit


@dataclass
class MonitorReport:
    now: pd.Timestamp
    changes: list[Change]
    parameters: dict[str, float]
    version: str
    recent_trades: int
    recent_win_rate: float
    since: list[ParameterStep] = field(default_factory=list)  # every step since the previous run
    last_event_id: int = 0
    truncated: bool = False

    def changes_markdown(self) -> str:
        return rows_markdown([{"parameter": c.subject, "change": c.detail} for c in self.changes])

    def since_markdown(self) -> str:
        rows = [
            {"parameter": s.parameter, "trigger": s.trigger, "from": s.start, "to": s.end, "why": s.why}
            for s in self.since
        ]
        note = f"\n\n_only the newest {HISTORY_LIMIT} changes_" if self.truncated else ""
        return rows_markdown(rows, ["parameter", "trigger", "from", "to", "why"]) + note

    def parameters_markdown(self) -> str:
        return rows_markdown([{"parameter": k, "value": v} for k, v in sorted(self.parameters.items())])


def _discovery_changes(result: DiscoveryResult) -> list[Change]:
    changes = []
    for spec in result.created:
        r = strategy_row(spec)
        changes.append(
            Change(
                "created",
                spec.name,
                f"{r['conditions']} -> {r['action']}: {r['trades']} trades, win rate {r['win_rate']}",
            )
        )
    for spec in result.updated:
        r = strategy_row(spec)
        changes.append(Change("updated", spec.name, f"now {r['trades']} trades, win rate {r['win_rate']}"))
    for spec in result.deprecated:
        changes.append(Change("deprecated", spec.name, spec.deprecated_reason or "deprecated"))
    return changes


def run_discovery(engine: MemoryEngine, now: pd.Timestamp, exports: Path | None = None) -> DiscoveryReport:
    """Pattern discovery at ``now``; re-render the exports into ``exports`` when given."""
    now = pd.Timestamp(now)
    result = engine.discover(now.to_pydatetime())
    specs = list(engine.strategies(include_deprecated=True))
    paths: dict[str, Path] = {}
    if exports is not None:  # export_all creates the folder (0700)
        paths = {Path(p).name: Path(p) for p in engine.export_all(exports).values()}
    return DiscoveryReport(
        now=now,
        changes=_discovery_changes(result),
        active=[strategy_row(s) for s in specs if not s.deprecated],
        deprecated=[strategy_row(s) for s in specs if s.deprecated],
        exports=paths,
    )


def parameters_dict(params: Parameters | Mapping[str, float]) -> dict[str, float]:
    """``mem_memory.Parameters`` (or a plain mapping) as a dict of floats."""
    values = params if isinstance(params, Mapping) else params.values
    return {k: float(v) for k, v in values.items()}


def run_monitor(engine: MemoryEngine, now: pd.Timestamp, since_event_id: int = 0) -> MonitorReport:
    """The performance monitor at ``now``: adjustments (each with its reason), the state after,
    and every parameter step recorded after event ``since_event_id`` (this run's included)."""
    now = pd.Timestamp(now)
    adjustments = engine.monitor(now.to_pydatetime())
    params = engine.parameters()
    changes = [
        Change("adjusted", a.parameter, f"{a.from_value:.4g} -> {a.to_value:.4g}: {a.reason} (trigger: {a.trigger})")
        for a in adjustments
    ]
    trades, win_rate = recent_performance(engine)
    since, last, truncated = parameter_changes_since(engine, since_event_id)
    return MonitorReport(
        now,
        changes,
        parameters_dict(params),
        str(params.version),
        trades,
        win_rate,
        since,
        max(last, since_event_id),
        truncated,
    )


def recent_performance(engine: MemoryEngine, n: int | None = None) -> tuple[int, float]:
    """Closed trades among the last ``n`` closed decisions (default: the monitor's window) and
    their win rate (shadow outcomes of held signals are not trades)."""
    outcomes = [
        o for _, o in engine.store.closed_trades(engine.config.monitor_window if n is None else n) if not o.shadow
    ]
    if not outcomes:
        return 0, math.nan
    wins = sum(1 for o in outcomes if o.pnl > 0)
    return len(outcomes), wins / len(outcomes)
