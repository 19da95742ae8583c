"""What the learning sensors' assets run, as plain functions over a ``MemoryEngine`` (no Dagster):
pattern discovery and the performance monitor, each with a report of what changed and why.

The Dagster assets (``assets.py``) and the replay's learner (``mem_pipelines.replay.learner``)
call the same functions, so the replay learns exactly as the deployed loop does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mem_memory import DiscoveryResult, MemoryEngine, Parameters
from mem_pipelines.learning.render import rows_markdown, strategy_row


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


@dataclass
class MonitorReport:
    now: pd.Timestamp
    changes: list[Change]
    parameters: dict[str, float]
    version: str
    recent_trades: int
    recent_win_rate: float

    def changes_markdown(self) -> str:
        return rows_markdown([{"parameter": c.subject, "change": c.detail} for c in self.changes])

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


def run_monitor(engine: MemoryEngine, now: pd.Timestamp) -> MonitorReport:
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


def recent_performance(engine: MemoryEngine, n: int | None = None) -> tuple[int, float]:
    """Closed trades among the last ``n`` (default: the monitor's window) and their win rate."""
    outcomes = [o for _, o in engine.store.closed_trades(engine.config.monitor_window if n is None else n)]
    if not outcomes:
        return 0, math.nan
    wins = sum(1 for o in outcomes if o.pnl > 0)
    return len(outcomes), wins / len(outcomes)
