"""Pattern discovery: conditions on discretised decision-time features that won often enough.

Over the last 500 closed trades (oldest first):

1. Each feature present in at least 80% of the trades is cut into terciles of the window (low:
   ``f <= q1``, mid: ``q1 < f <= q2``, high: ``f > q2``).
2. Candidates are one bin, or two bins of different features, together with an action (BUY or
   SELL): with 12 features that is 2 x (36 + 594) = 1,260 candidates.
3. A candidate qualifies (the seed's rule) when it occurred at least 5 times with a win rate of at
   least 70%.
4. Guard against chance: with ~1,000 candidates, dozens clear 70% by luck in pure noise. A
   candidate must also have a Wilson score lower bound, at a one-sided level of
   ``alpha / candidates tested`` (Bonferroni, alpha = 0.05 family-wise, z ≈ 3.9 here), above the
   window's own win rate for that action. So a pattern must beat "just trading that side" with
   ~95% confidence after accounting for every pattern we looked at. A small pattern needs a
   near-perfect record (e.g. 20 of 20); a broad one a clear margin.
5. Qualifying candidates are taken best lower bound first; one whose trades are >= 80% covered by
   an already accepted pattern is dropped (so the planted pattern is found once, not with every
   sub-pattern), and at most ``max_active_strategies`` stay active.

A new pattern becomes a strategy named from its conditions (``learned_buy_rsi14_low``); its
confidence is the 95% Wilson lower bound of its win rate (conservative), its size the current
position size scaled by its edge over the base rate (bounded), stop and target the current
parameters. A rediscovered active strategy gets the new thresholds (when they moved by more than
1%); a deprecated one is not revived (that is a human decision). Active strategies that meet the
deprecation rule are deprecated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import combinations
from statistics import NormalDist

import numpy as np

from mem_memory.config import MemoryConfig
from mem_memory.rules.parameters import clamp
from mem_memory.rules.strategy_stats import deprecation_reason, should_deprecate
from mem_memory.types import Condition, Decision, DiscoveryResult, Outcome, Parameters, StrategySpec, StrategyStats


def wilson_lower(wins: int, n: int, z: float) -> float:
    """Wilson score interval lower bound of a win rate."""
    if n == 0:
        return 0.0
    p = wins / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return (centre - margin) / (1 + z2 / n)


@dataclass(frozen=True)
class _Bin:
    feature: str
    label: str
    conditions: tuple[Condition, ...]
    mask: np.ndarray


def _bins(trades: Sequence[tuple[Decision, Outcome]], cfg: MemoryConfig) -> list[_Bin]:
    n = len(trades)
    counts: dict[str, int] = {}
    for d, _ in trades:
        for k in d.features:
            counts[k] = counts.get(k, 0) + 1
    names = sorted(k for k, c in counts.items() if c >= 0.8 * n)
    out: list[_Bin] = []
    for name in names:
        x = np.array([d.features.get(name, np.nan) for d, _ in trades], dtype=float)
        present = ~np.isnan(x)
        q1, q2 = (float(np.quantile(x[present], q)) for q in (1 / 3, 2 / 3))
        q1, q2 = float(f"{q1:.6g}"), float(f"{q2:.6g}")
        if q1 >= q2:  # a (nearly) constant feature says nothing
            continue
        with np.errstate(invalid="ignore"):
            out.append(_Bin(name, "low", (Condition(name, "<=", q1),), present & (x <= q1)))
            out.append(
                _Bin(name, "mid", (Condition(name, ">", q1), Condition(name, "<=", q2)), present & (x > q1) & (x <= q2))
            )
            out.append(_Bin(name, "high", (Condition(name, ">", q2),), present & (x > q2)))
    return out


@dataclass(frozen=True)
class Candidate:
    name: str
    action: str
    conditions: tuple[Condition, ...]
    mask: np.ndarray
    n: int
    wins: int
    lower: float  # Bonferroni-level Wilson lower bound
    base_rate: float


def _stats(trades: Sequence[tuple[Decision, Outcome]], mask: np.ndarray) -> StrategyStats:
    s = StrategyStats()
    for i in np.flatnonzero(mask):
        o = trades[i][1]
        s = s.add(o.pnl, o.pnl_pct)
    return s


def find_patterns(
    trades: Sequence[tuple[Decision, Outcome]], cfg: MemoryConfig = MemoryConfig()
) -> tuple[list[Candidate], int, int]:
    """The accepted candidates (best first), how many were tested, and how many met the seed's
    thresholds (>= 5, >= 70%) but were rejected by the chance guard."""
    trades = list(trades)[-cfg.discovery_window :]
    if not trades:
        return [], 0, 0
    wins = np.array([o.win for _, o in trades])
    actions = np.array([d.action for d, _ in trades])
    bins = _bins(trades, cfg)
    groups: list[tuple[str, tuple[Condition, ...], np.ndarray]] = [
        (f"{b.feature}_{b.label}", b.conditions, b.mask) for b in bins
    ]
    if cfg.discovery_max_conditions >= 2:
        for a, b in combinations(bins, 2):
            if a.feature != b.feature:
                groups.append(
                    (f"{a.feature}_{a.label}_{b.feature}_{b.label}", a.conditions + b.conditions, a.mask & b.mask)
                )
    raw: list[tuple[str, str, tuple[Condition, ...], np.ndarray, int, int, float]] = []
    for action in ("BUY", "SELL"):
        side = actions == action
        total = int(side.sum())
        if total == 0:
            continue
        base_rate = float(wins[side].sum()) / total
        for label, conds, mask in groups:
            m = mask & side
            n = int(m.sum())
            if n >= cfg.discovery_min_occurrences:
                raw.append((f"learned_{action.lower()}_{label}", action, conds, m, n, int(wins[m].sum()), base_rate))
    tested = max(1, len(raw))
    z = NormalDist().inv_cdf(1 - cfg.discovery_alpha / tested)
    seed_ok = [r for r in raw if r[5] / r[4] >= cfg.discovery_min_win_rate]
    passing = []
    for name, action, conds, m, n, w, base in seed_ok:
        lower = wilson_lower(w, n, z)
        if lower > base:
            passing.append(Candidate(name, action, conds, m, n, w, lower, base))
    passing.sort(key=lambda c: (-c.lower, -c.n, c.name))
    accepted: list[Candidate] = []
    for c in passing:
        if any((c.mask & a.mask).sum() >= 0.8 * c.n for a in accepted):
            continue
        accepted.append(c)
        if len(accepted) >= cfg.max_active_strategies:
            break
    return accepted, len(raw), len(seed_ok) - len(passing)


def _moved(a: tuple[Condition, ...], b: tuple[Condition, ...]) -> bool:
    if [(c.feature, c.op) for c in a] != [(c.feature, c.op) for c in b]:
        return True
    return any(
        abs(x.threshold - y.threshold) > 0.01 * max(abs(x.threshold), abs(y.threshold), 1e-12) for x, y in zip(a, b)
    )


def discover(
    trades: Sequence[tuple[Decision, Outcome]],
    existing: Mapping[str, StrategySpec],
    params: Parameters,
    now: datetime,
    cfg: MemoryConfig = MemoryConfig(),
) -> DiscoveryResult:
    """What discovery changes given the window and the current strategies (nothing is written)."""
    window = list(trades)[-cfg.discovery_window :]
    accepted, tested, guarded = find_patterns(window, cfg)
    created: list[StrategySpec] = []
    updated: list[StrategySpec] = []
    deprecated: list[StrategySpec] = []
    for spec in existing.values():
        if not spec.deprecated and should_deprecate(spec.stats, cfg):
            deprecated.append(
                spec.evolve(deprecated=True, deprecated_reason=deprecation_reason(spec.stats, cfg), updated_at=now)
            )
    gone = {s.name for s in deprecated}
    active = sum(1 for s in existing.values() if not s.deprecated) - len(gone)
    for c in accepted:
        rate = c.wins / c.n
        evidence = (
            f"{c.wins}/{c.n} wins ({rate:.0%}) in the last {len(window)} trades; Wilson lower bound {c.lower:.2f} "
            f"> base {c.action} win rate {c.base_rate:.2f} (Bonferroni over {tested} candidates)"
        )
        old = existing.get(c.name)
        if old is not None:
            if not old.deprecated and old.name not in gone and _moved(old.conditions, c.conditions):
                updated.append(old.evolve(conditions=c.conditions, updated_at=now, evidence=evidence))
            continue
        if active >= cfg.max_active_strategies:
            continue
        size = clamp("position_size", params["position_size"] * min(1.5, 1.0 + (rate - c.base_rate)), cfg)
        created.append(
            StrategySpec(
                name=c.name,
                conditions=c.conditions,
                action=c.action,
                confidence=round(min(1.0, max(0.0, wilson_lower(c.wins, c.n, 1.959964))), 4),
                size=size,
                stop_loss_pct=params["stop_loss_pct"],
                take_profit_pct=params["take_profit_pct"],
                stats=_stats(window, c.mask),
                created_at=now,
                updated_at=now,
                evidence=evidence,
            )
        )
        active += 1
    return DiscoveryResult(
        window_trades=len(window),
        base_win_rate=(sum(o.win for _, o in window) / len(window)) if window else 0.0,
        candidates=tested,
        rejected_by_guard=guarded,
        created=tuple(created),
        updated=tuple(updated),
        deprecated=tuple(deprecated),
    )
