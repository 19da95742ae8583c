"""Pattern discovery: conditions on discretised decision-time features that won often enough.

Over the last 500 closed decisions (oldest first; trades and the shadow outcomes of held signals,
each counted for its signal's side), on each decision's context (``rules.context``:
its feature snapshot plus ``utc_hour``, the decision time's hour of day):

1. Bins of two kinds:
   * feature bins: each snapshot feature present in at least 80% of the trades is cut into
     terciles of the window (low: ``f <= q1``, mid: ``q1 < f <= q2``, high: ``f > q2``). The
     volatility-regime features of a snapshot are among them (the seed's ``hl_range``; with a
     richer set ``rv_ratio_12``, ``hl_ratio_12``, ``log_sigma``, ...): their terciles are the calm,
     normal and volatile regimes of the window;
   * time-of-day windows: ``utc_hour`` in ``[a, a + 6)`` for ``a = 0, 3, ..., 18`` (7 windows, fixed,
     not fitted to the data; ``discovery_hour_window`` / ``discovery_hour_step``), e.g.
     ``utc_hour >= 12 and utc_hour < 18``.
2. Candidates are one bin, or two bins of different features (a window counts as a bin of
   ``utc_hour``), together with an action (BUY or SELL): with 12 features that is
   2 x (36 + 7 + 594 + 36 x 7) = 1,778 candidates.
3. A candidate qualifies (the seed's rule) when it occurred at least 5 times with a win rate of at
   least 70%, on the older two thirds of the window.
4. Guard against chance: with ~1,000 candidates, dozens clear 70% by luck in pure noise. A
   candidate must also have a Wilson score lower bound, at a one-sided level of
   ``alpha / candidates tested`` (Bonferroni, alpha = 0.05 family-wise, z ≈ 4.0 here), above that
   part's own win rate for the action. So a pattern must beat "just trading that side" with ~95%
   confidence after accounting for every pattern we looked at. A small pattern needs a
   near-perfect record (e.g. 20 of 20); a broad one a clear margin.
5. Qualifying candidates are taken simplest first (one bin before a pair), then best bound first;
   one whose trades are >= 80% covered by an already chosen pattern is dropped (the planted
   pattern is found once, not with every sub-pattern), and so is one whose trades not yet covered
   fail the seed's rule or the guard on their own (sequential covering: a 9-15 h window beside a
   found 12-18 h one must win in 9-12 h too).
6. The later-slice check: discovery runs again and again over a sliding window, so a pattern
   that won by luck once would sooner or later slip through step 4. A chosen pattern must also
   beat its side's win rate on the newest third of the window, trades it was not found on
   (Wilson lower bound at one-sided 0.05 split over the patterns checked). At most
   ``max_active_strategies`` stay active.

A new pattern becomes a strategy named from its conditions (``learned_buy_rsi14_low``); its
confidence is the 95% Wilson lower bound of its win rate over the whole window (conservative),
its size the current position size scaled by its edge over the base rate (bounded), stop and
target the current parameters. A rediscovered active strategy gets the new thresholds (when they
moved by more than 1%) and the confidence of the current window (when it moved by more than 0.01:
more evidence, a tighter bound); a deprecated one is not revived (that is a human decision).
Active strategies that meet the deprecation rule are deprecated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import combinations
from statistics import NormalDist

import numpy as np

from mem_memory.config import MemoryConfig
from mem_memory.rules.context import UTC_HOUR, utc_hour
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


def hour_windows(cfg: MemoryConfig = MemoryConfig()) -> list[tuple[float, float]]:
    """The time-of-day windows ``[a, b)`` of ``utc_hour`` discovery tries (none wraps midnight)."""
    width, step = cfg.discovery_hour_window, cfg.discovery_hour_step
    if not 0 < width < 24:
        return []
    out = []
    start = 0.0
    while start + width <= 24.0 + 1e-9:
        out.append((start, min(24.0, start + width)))
        start += step
    return out


def _hour_label(a: float, b: float) -> str:
    return f"{a:g}_{b:g}h".replace(".", "p")


def _hour_bins(trades: Sequence[tuple[Decision, Outcome]], cfg: MemoryConfig) -> list[_Bin]:
    hours = np.array([utc_hour(d.time) for d, _ in trades], dtype=float)
    out = []
    for a, b in hour_windows(cfg):
        conditions = ((Condition(UTC_HOUR, ">=", a),) if a > 0 else ()) + (
            (Condition(UTC_HOUR, "<", b),) if b < 24 else ()
        )
        out.append(_Bin(UTC_HOUR, _hour_label(a, b), conditions, (hours >= a) & (hours < b)))
    return out


def _bins(trades: Sequence[tuple[Decision, Outcome]], cfg: MemoryConfig) -> list[_Bin]:
    n = len(trades)
    counts: dict[str, int] = {}
    for d, _ in trades:
        for k in d.features:
            counts[k] = counts.get(k, 0) + 1
    names = sorted(k for k, c in counts.items() if c >= 0.8 * n and k != UTC_HOUR)
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
    return out + _hour_bins(trades, cfg)


@dataclass(frozen=True)
class Candidate:
    name: str
    action: str
    conditions: tuple[Condition, ...]
    mask: np.ndarray
    n: int
    wins: int
    lower: float  # Bonferroni-level Wilson lower bound on the older part of the window
    base_rate: float
    bins: int = 1  # one bin, or a pair of bins of different features
    validated: tuple[int, int] = (0, 0)  # wins, trades on the newest part (the later-slice check)


def _stats(trades: Sequence[tuple[Decision, Outcome]], mask: np.ndarray) -> StrategyStats:
    s = StrategyStats()
    for i in np.flatnonzero(mask):
        o = trades[i][1]
        s = s.add(o.pnl, o.pnl_pct)
    return s


def find_patterns(
    trades: Sequence[tuple[Decision, Outcome]], cfg: MemoryConfig = MemoryConfig()
) -> tuple[list[Candidate], int, int]:
    """The accepted candidates (simplest and best first), how many were tested, and how many met
    the seed's thresholds (>= 5, >= 70%) but were rejected by the chance guard or the later-slice
    check. An accepted candidate's ``mask``, ``n`` and ``wins`` cover the whole window."""
    trades = list(trades)[-cfg.discovery_window :]
    if not trades:
        return [], 0, 0
    wins = np.array([o.win for _, o in trades])
    # A held signal's shadow outcome counts for the signal's side (its base action).
    actions = np.array([d.base_action if d.action == "HOLD" else d.action for d, _ in trades])
    split = len(trades) - int(len(trades) * cfg.discovery_validation_share)
    early = np.arange(len(trades)) < split
    bins = _bins(trades, cfg)
    groups: list[tuple[str, tuple[Condition, ...], np.ndarray, int]] = [
        (f"{b.feature}_{b.label}", b.conditions, b.mask, 1) for b in bins
    ]
    if cfg.discovery_max_conditions >= 2:
        for a, b in combinations(bins, 2):
            if a.feature != b.feature:
                groups.append(
                    (f"{a.feature}_{a.label}_{b.feature}_{b.label}", a.conditions + b.conditions, a.mask & b.mask, 2)
                )
    raw: list[tuple[str, str, tuple[Condition, ...], np.ndarray, int, int, float, int]] = []
    for action in ("BUY", "SELL"):
        side = actions == action
        total = int((side & early).sum())
        if total == 0:
            continue
        base_rate = float(wins[side & early].sum()) / total
        for label, conds, mask, size in groups:
            m = mask & side
            n = int((m & early).sum())
            if n >= cfg.discovery_min_occurrences:
                raw.append(
                    (
                        f"learned_{action.lower()}_{label}",
                        action,
                        conds,
                        m,
                        n,
                        int(wins[m & early].sum()),
                        base_rate,
                        size,
                    )
                )
    tested = max(1, len(raw))
    z = NormalDist().inv_cdf(1 - cfg.discovery_alpha / tested)
    seed_ok = [r for r in raw if r[5] / r[4] >= cfg.discovery_min_win_rate]
    passing = []
    for name, action, conds, m, n, w, base, size in seed_ok:
        lower = wilson_lower(w, n, z)
        if lower > base:
            passing.append(Candidate(name, action, conds, m, n, w, lower, base, size))
    # Simplest first (one bin before two), then the best bound: a pattern that passes alone is not
    # replaced by a narrower version of itself that won a little more by chance.
    passing.sort(key=lambda c: (c.bins, -c.lower, -c.n, c.name))
    chosen: list[Candidate] = []
    covered = np.zeros(len(trades), dtype=bool)
    for c in passing:
        found = c.mask & early
        if any((found & a.mask).sum() >= 0.8 * c.n for a in chosen):
            continue
        # Sequential covering: what a pattern adds beyond the accepted ones must pass on its own
        # (the seed's rule and the guard on its trades not yet covered), so a window that only
        # overlaps a found one (9-15 h beside a real 12-18 h) is not accepted for the overlap.
        rest = found & ~covered
        n_rest, w_rest = int(rest.sum()), int(wins[rest].sum())
        if chosen and (
            n_rest < cfg.discovery_min_occurrences
            or w_rest / n_rest < cfg.discovery_min_win_rate
            or wilson_lower(w_rest, n_rest, z) <= c.base_rate
        ):
            continue
        chosen.append(c)
        covered |= found
    accepted = [c for c in (_validated(chosen, wins, actions, early, cfg)) if c is not None][
        : cfg.max_active_strategies
    ]
    return accepted, len(raw), len(seed_ok) - len(accepted)


def _validated(
    chosen: list[Candidate], wins: np.ndarray, actions: np.ndarray, early: np.ndarray, cfg: MemoryConfig
) -> list[Candidate | None]:
    """The later-slice check: each pattern found on the older part of the window must also beat
    its side's win rate on the newest ``discovery_validation_share`` of it (trades it was not found
    on): Wilson lower bound at one-sided ``discovery_validation_alpha`` split over the patterns
    checked. Passing ones come back with their whole-window counts; failing ones as None. Without
    a validation share every chosen pattern passes as it is."""
    late = ~early
    if not late.any():
        return list(chosen)
    z = NormalDist().inv_cdf(1 - cfg.discovery_validation_alpha / max(1, len(chosen)))
    out: list[Candidate | None] = []
    for c in chosen:
        side = (actions == c.action) & late
        m = c.mask & late
        n, w = int(m.sum()), int(wins[m].sum())
        base = float(wins[side].sum()) / max(1, int(side.sum()))
        if n < cfg.discovery_min_occurrences or wilson_lower(w, n, z) <= base:
            out.append(None)
            continue
        out.append(replace(c, n=int(c.mask.sum()), wins=int(wins[c.mask].sum()), validated=(w, n)))
    return out


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
        if c.validated[1]:
            evidence += f"; held on the newest trades: {c.validated[0]}/{c.validated[1]} wins"
        old = existing.get(c.name)
        confidence = round(min(1.0, max(0.0, wilson_lower(c.wins, c.n, 1.959964))), 4)
        if old is not None:
            if (
                not old.deprecated
                and old.name not in gone
                and (_moved(old.conditions, c.conditions) or abs(old.confidence - confidence) > 0.01)
            ):
                updated.append(
                    old.evolve(conditions=c.conditions, confidence=confidence, updated_at=now, evidence=evidence)
                )
            continue
        if active >= cfg.max_active_strategies:
            continue
        size = clamp("position_size", params["position_size"] * min(1.5, 1.0 + (rate - c.base_rate)), cfg)
        created.append(
            StrategySpec(
                name=c.name,
                conditions=c.conditions,
                action=c.action,
                confidence=confidence,
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
