"""The in-process working memory the hot path reads (size-capped, like Letta's core blocks).

- recent decisions per symbol: a deque of at most ``recent_per_symbol`` (100) decisions, for at
  most ``max_symbols`` symbols (least recently used evicted), and the outcomes of those closed
  (a read pairs them: ``last``);
- closed trades per action for similarity search: a ring of the last ``closed_window`` (10,000)
  feature snapshots as a contiguous float32 matrix, standardised per feature (z-scores over the
  ring, re-estimated as it fills); a query walks it once (``nearest``: compiled, all of a batch's snapshots
  in one call), the newer trade first among equal distances;
- the current parameters and the learned strategies.

It is rebuilt from the store at start and kept current from the event log (``MemoryEngine``).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mem_memory.nearest import nearest
from mem_memory.types import Decision, DecisionView, Outcome, StrategySpec, record_maker

#: ``DecisionView(decision, outcome)`` unchecked (the views ``last`` reads).
_view = record_maker(DecisionView)


@dataclass(frozen=True)
class Similar:
    """Closed trades of one action taken in conditions close to a snapshot."""

    n: int
    wins: int
    decision_ids: tuple[str, ...]

    @property
    def win_rate(self) -> float | None:
        return self.wins / self.n if self.n else None


#: At most this many distinct feature names are indexed (later new names are ignored).
MAX_FEATURES = 64


class Ring:
    """The last ``capacity`` closed trades of one action: features (float32) and win flags."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.names: list[str] = []
        self.col: dict[str, int] = {}
        self.X = np.zeros((capacity, 0), dtype=np.float32)  # raw values, NaN when missing
        self.ZT = np.zeros((0, capacity), dtype=np.float32)  # standardised, 0 when missing; a row per feature
        self.sq = np.zeros(capacity, dtype=np.float32)
        self.win = np.zeros(capacity, dtype=bool)
        self.ids: list[str] = [""] * capacity
        self.n = 0
        self.pos = 0
        self.mean = np.zeros(0, dtype=np.float32)
        self.std = np.ones(0, dtype=np.float32)
        self._since_stats = 0

    def _widen(self, features: Mapping[str, float]) -> None:
        new = [k for k in features if k not in self.col]
        if not new or len(self.names) >= MAX_FEATURES:
            return
        for k in sorted(new)[: MAX_FEATURES - len(self.names)]:
            self.col[k] = len(self.names)
            self.names.append(k)
        f = len(self.names)
        X = np.full((self.capacity, f), np.nan, dtype=np.float32)
        X[:, : self.X.shape[1]] = self.X
        self.X = X
        self.ZT = np.zeros((f, self.capacity), dtype=np.float32)
        self._restat()

    def _restat(self) -> None:
        f = len(self.names)
        if self.n == 0 or f == 0:
            self.mean = np.zeros(f, dtype=np.float32)
            self.std = np.ones(f, dtype=np.float32)
            return
        X = self.X[: self.n]
        with np.errstate(all="ignore"):
            mean = np.nanmean(X, axis=0)
            std = np.nanstd(X, axis=0)
        mean = np.nan_to_num(mean)
        std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        self.mean, self.std = mean.astype(np.float32), std.astype(np.float32)  # type: ignore[assignment]  # 1-D by construction
        Z = np.nan_to_num((X - self.mean) / self.std).astype(np.float32)
        self.ZT[:, : self.n] = Z.T
        self.sq[: self.n] = np.einsum("ij,ij->i", Z, Z)
        self._since_stats = 0

    def vector(self, features: Mapping[str, float]) -> np.ndarray:
        x = np.full(len(self.names), np.nan, dtype=np.float32)
        for k, v in features.items():
            i = self.col.get(k)
            if i is not None:
                x[i] = v
        return x

    def add(self, decision_id: str, features: Mapping[str, float], win: bool) -> None:
        self._widen(features)
        i = self.pos
        x = self.vector(features)
        self.X[i] = x
        self.win[i] = win
        self.ids[i] = decision_id
        self.pos = (i + 1) % self.capacity
        self.n = min(self.n + 1, self.capacity)
        self._since_stats += 1
        if self._since_stats >= max(16, self.n // 8):
            self._restat()
        else:
            z = np.nan_to_num((x - self.mean) / self.std)
            self.ZT[:, i] = z
            self.sq[i] = float(z @ z)

    def query(self, features: Mapping[str, float], k: int, radius: float) -> Similar:
        """The closed trades nearest ``features`` (``query_many`` of one snapshot)."""
        return self.query_many([features], k, radius)[0]

    def query_many(self, many: Sequence[Mapping[str, float]], k: int, radius: float) -> list[Similar]:
        """Per snapshot, its at most ``k`` nearest trades within an RMS distance of ``radius`` per
        feature, standardised by the ring's statistics (missing features at the mean; a snapshot
        with none of the ring's features finds nothing): ``nearest.nearest`` on all of them."""
        n, f, col = self.n, len(self.names), self.col
        if n == 0 or f == 0 or k <= 0:
            return [Similar(0, 0, ()) for _ in many]
        X = np.full((len(many), f), np.nan, dtype=np.float32)
        for x, features in zip(X, many):
            for key, v in features.items():
                i = col.get(key)
                if i is not None:
                    x[i] = v
        missing = np.isnan(X)
        silent = np.asarray(missing.all(axis=1)).tolist()  # nothing to compare on: memory silent
        Zq = (X - self.mean) / self.std
        Zq[missing] = 0.0
        picked = np.empty((len(many), min(k, n)), dtype=np.int64)
        counts = np.empty(len(many), dtype=np.int64)
        nearest(
            self.ZT,
            self.sq,
            n,
            (self.pos - 1) % n,
            Zq,
            np.einsum("ij,ij->i", Zq, Zq).astype(np.float64),
            k,
            float(radius * radius * f),
            picked,
            counts,
        )
        win, ids, out = self.win, self.ids, []
        for j, (row, got) in enumerate(zip(picked.tolist(), counts.tolist())):
            if silent[j] or not got:
                out.append(Similar(0, 0, ()))
                continue
            row = row[:got]
            out.append(Similar(got, int(win[row].sum()), tuple(ids[i] for i in row)))
        return out


class WorkingMemory:
    def __init__(self, recent_per_symbol: int, max_symbols: int, closed_window: int) -> None:
        self.recent_cap = recent_per_symbol
        self.max_symbols = max_symbols
        self.recent: OrderedDict[str, deque[Decision]] = OrderedDict()
        self.open_ids: dict[str, str] = {}  # decision id -> symbol, for the decisions held in ``recent``
        self.outcomes: dict[str, Outcome] = {}  # decision id -> outcome, for those of them closed
        self.rings = {"BUY": Ring(closed_window), "SELL": Ring(closed_window)}
        self.strategies: dict[str, StrategySpec] = {}

    # -------------------------------------------------------------- updates
    def add_decision(self, decision: Decision, outcome: Outcome | None = None) -> None:
        open_ids, decision_id, symbol = self.open_ids, decision.decision_id, decision.symbol
        if decision_id in open_ids:
            return
        recent, outcomes = self.recent, self.outcomes
        dq = recent.get(symbol)
        if dq is None:
            if len(recent) >= self.max_symbols:
                _, old = recent.popitem(last=False)
                for d in old:
                    open_ids.pop(d.decision_id, None)
                    outcomes.pop(d.decision_id, None)
            dq = recent[symbol] = deque()
        else:
            recent.move_to_end(symbol)
        if len(dq) >= self.recent_cap:
            gone = dq.popleft().decision_id
            open_ids.pop(gone, None)
            if outcomes:
                outcomes.pop(gone, None)
        dq.append(decision)
        open_ids[decision_id] = symbol
        if outcome is not None:
            outcomes[decision_id] = outcome

    def add_outcome(self, decision: Decision, outcome: Outcome) -> None:
        if outcome.decision_id in self.open_ids:
            self.outcomes[outcome.decision_id] = outcome
        self.add_closed(decision, outcome)

    def add_closed(self, decision: Decision, outcome: Outcome) -> None:
        # A HOLD decision's (shadow) outcome says how its base signal would have done.
        ring = self.rings.get(decision.base_action if decision.action == "HOLD" else decision.action)
        if ring is not None:
            ring.add(decision.decision_id, decision.features, outcome.win)

    def put_strategy(self, spec: StrategySpec) -> None:
        self.strategies[spec.name] = spec

    # -------------------------------------------------------------- queries
    def last(self, symbol: str, n: int) -> list[DecisionView]:
        dq = self.recent.get(symbol)
        if not dq:
            return []
        outcome = self.outcomes.get
        return [_view(d, outcome(d.decision_id)) for d in itertools.islice(reversed(dq), max(n, 0))]

    def similar(self, action: str, features: Mapping[str, float], k: int, radius: float) -> Similar:
        ring = self.rings.get(action)
        if ring is None:
            return Similar(0, 0, ())
        return ring.query(features, k, radius)

    def similar_many(self, action: str, many: Sequence[Mapping[str, float]], k: int, radius: float) -> list[Similar]:
        """``similar`` of each snapshot (the same answers, in one pass over the ring's blocks)."""
        ring = self.rings.get(action)
        if ring is None:
            return [Similar(0, 0, ()) for _ in many]
        return ring.query_many(many, k, radius)

    def matching(self, action: str, features: Mapping[str, float]) -> list[StrategySpec]:
        found = [s for s in self.strategies.values() if s.matches(action, features)]
        found.sort(key=lambda s: (-s.confidence, s.name))
        return found

    def candidates(self, action: str) -> list[StrategySpec]:
        """The active strategies of ``action`` in ``matching``'s order: the first of them whose
        conditions hold (``first_match``) is ``matching(action, ...)[0]`` (a batch sorts once)."""
        found = [s for s in self.strategies.values() if not s.deprecated and s.action == action]
        found.sort(key=lambda s: (-s.confidence, s.name))
        return found

    def similar_to_nothing(self, action: str) -> bool:
        """Whether ``similar(action, ...)`` is empty whatever the snapshot (no closed trade or no
        feature indexed for ``action``): a batch skips the queries."""
        ring = self.rings.get(action)
        return ring is None or ring.n == 0 or not ring.names


def first_match(candidates: Sequence[StrategySpec], features: Mapping[str, float]) -> StrategySpec | None:
    """The first of ``candidates`` (``WorkingMemory.candidates``) whose conditions hold on ``features``."""
    for s in candidates:
        if all(c.holds(features) for c in s.conditions):
            return s
    return None
