"""Human-readable exports, regenerated from the store (the store stays the source of truth).

- ``core_memory_updates.txt``: one timestamped line per event — decisions with their confidence
  components, closes with P&L, learned notes (strategies, parameter changes).
- ``parameter_updates.json``: per UTC day, the parameters at the end of the day, the adjustments
  with reason, trigger and later impact, and the day's performance (win rate, Sharpe, max
  drawdown of the summed P&L %).
- ``strategy_modules.py``: one class per learned strategy rendered by a FIXED template. Only
  validated identifiers (names, features), whitelisted operators and actions, and numbers we
  format ourselves appear as code or in docstrings; every free text (evidence, deprecation
  reason) is written with ``repr`` as a string constant. Stored text can therefore never become
  code, and MEM never imports or executes this file.
"""

from __future__ import annotations

import json
import keyword
import math
import os
from bisect import bisect_right
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from mem_memory.config import MemoryConfig
from mem_memory.errors import InvalidRecord
from mem_memory.files import private_dir
from mem_memory.store import MemoryStore
from mem_memory.types import (
    ACTIONS,
    DECISION,
    IDENTIFIER,
    OPS,
    OUTCOME,
    PARAMETER_ADJUSTMENT,
    STRATEGY_UPSERT,
    Decision,
    Outcome,
    ParameterAdjustment,
    Parameters,
    StrategySpec,
)

IMPACT_WINDOW = 20


def _ts(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _one_line(text: str | None) -> str:
    return " ".join(str(text or "").split())


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def _write(path: Path, text: str) -> None:
    """Atomic replace; 0600 like the store (exports hold decrypted content)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------- core_memory_updates.txt
def core_memory_lines(store: MemoryStore) -> list[str]:
    lines: list[str] = []
    symbols: dict[str, str] = {}
    for e in store.iter_events():
        p = e.payload
        if e.kind == DECISION:
            d = Decision.from_dict(p)
            symbols[d.decision_id] = d.symbol
            learned = f" learned={d.learned_strategy}" if d.learned_strategy else ""
            lines.append(
                f"[{_ts(d.time)}] DECISION {d.decision_id} {_one_line(d.symbol)} {d.action} (base {d.base_action}) "
                f"entry {d.price:.10g} confidence {d.confidence:.2f} = base {d.base_confidence:.2f} / ML "
                f"{_fmt(d.ml_confidence)} / memory {_fmt(d.memory_confidence)}; size {d.size:.4g} stop {d.stop_loss:.10g} "
                f"target {d.take_profit:.10g} regime {d.regime}{learned} model {d.model_version or '-'} "
                f"strategy {_one_line(d.strategy) or '-'} :: {_one_line(d.reasoning)}"
            )
        elif e.kind == OUTCOME:
            o = Outcome.from_dict(p)
            lines.append(
                f"[{_ts(o.time)}] CLOSE {o.decision_id} {_one_line(symbols.get(o.decision_id, ''))} entry {o.entry_price:.10g} "
                f"exit {o.exit_price:.10g} size {o.size:.4g} P&L {o.pnl:+.4f} ({o.pnl_pct:+.2%}) "
                f"{'WIN' if o.win else 'LOSS'} reason {_one_line(o.exit_reason) or '-'}"
            )
        elif e.kind == STRATEGY_UPSERT:
            s = StrategySpec.from_dict(p)
            if s.deprecated:
                note = f"deprecated: {_one_line(s.deprecated_reason)}"
            elif s.created_at == s.updated_at:
                note = f"learned: {' and '.join(map(str, s.conditions))} -> {s.action} ({_one_line(s.evidence)})"
            else:
                note = (
                    f"stats {s.stats.wins}/{s.stats.trades} won ({s.stats.win_rate:.0%}), avg {s.stats.avg_gain:+.2%}"
                )
            lines.append(f"[{_ts(s.updated_at)}] STRATEGY {s.name} {note}")
        elif e.kind == PARAMETER_ADJUSTMENT:
            for a in p["adjustments"]:
                adj = ParameterAdjustment.from_dict(a)
                lines.append(
                    f"[{_ts(adj.time)}] PARAMETER {adj.parameter} {adj.from_value:.6g} -> {adj.to_value:.6g} "
                    f"because {_one_line(adj.reason)} (trigger {_one_line(adj.trigger)})"
                )
    return lines


# ---------------------------------------------------------------------- parameter_updates.json
def _performance(pnl_pcts: Sequence[float], wins: Sequence[bool]) -> dict[str, float | int | None]:
    n = len(pnl_pcts)
    if n == 0:
        return {"trades": 0, "win_rate": None, "sharpe": None, "max_drawdown": None}
    mean = sum(pnl_pcts) / n
    var = sum((x - mean) ** 2 for x in pnl_pcts) / (n - 1) if n > 1 else 0.0
    sharpe = mean / math.sqrt(var) if var > 0 else None
    peak = equity = drawdown = 0.0
    for x in pnl_pcts:
        equity += x
        peak = max(peak, equity)
        drawdown = max(drawdown, peak - equity)
    return {"trades": n, "win_rate": sum(wins) / n, "sharpe": sharpe, "max_drawdown": drawdown}


def parameter_updates(store: MemoryStore, cfg: MemoryConfig = MemoryConfig()) -> dict:
    outcome_ids: list[int] = []
    outcomes: list[Outcome] = []
    for e in store.iter_events([OUTCOME]):
        outcome_ids.append(e.event_id)
        outcomes.append(Outcome.from_dict(e.payload))
    days: dict[str, dict] = {}

    def day(key: str) -> dict:
        return days.setdefault(
            key, {"date": key, "parameters": None, "version": None, "adjustments": [], "performance": None}
        )

    current = Parameters(dict(cfg.parameters), datetime(1970, 1, 1, tzinfo=UTC))
    for event_id, params, adjustments in store.parameter_history():
        current = params
        slot = day(params.updated_at.date().isoformat())
        slot["parameters"], slot["version"] = dict(params.values), params.version
        i = bisect_right(outcome_ids, event_id)
        before, after = outcomes[max(0, i - IMPACT_WINDOW) : i], outcomes[i : i + IMPACT_WINDOW]
        impact = f"win rate {_rate(before)} over {len(before)} trades before -> {_rate(after)} over {len(after)} after"
        for a in adjustments:
            slot["adjustments"].append({**a.to_dict(), "time": _ts(a.time), "impact": impact})
    by_day: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by_day.setdefault(o.time.date().isoformat(), []).append(o)
    for key, items in by_day.items():
        day(key)["performance"] = _performance([o.pnl_pct for o in items], [o.win for o in items])
    carried = dict(cfg.parameters)
    version = Parameters(carried, datetime(1970, 1, 1, tzinfo=UTC)).version
    out = []
    for key in sorted(days):
        slot = days[key]
        if slot["parameters"] is None:
            slot["parameters"], slot["version"] = dict(carried), version
        carried, version = slot["parameters"], slot["version"]
        if slot["performance"] is None:
            slot["performance"] = _performance([], [])
        out.append(slot)
    return {
        "generated_at": _ts(datetime.now(UTC)),
        "current": {"version": current.version, "parameters": dict(current.values)},
        "days": out,
    }


def _rate(items: Sequence[Outcome]) -> str:
    return f"{sum(o.win for o in items) / len(items):.0%}" if items else "n/a"


# ---------------------------------------------------------------------- strategy_modules.py
def _identifier(name: str, field: str) -> str:
    if not isinstance(name, str) or not IDENTIFIER.match(name) or keyword.iskeyword(name):
        raise InvalidRecord(field, f"not a safe identifier: {name!r}")
    return name


def _num(x: float) -> str:
    v = float(x)
    if not math.isfinite(v):
        raise InvalidRecord("number", "not finite")
    return repr(v)


def _class_name(name: str) -> str:
    camel = "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or "Strategy"
    camel = camel if camel[0].isalpha() else f"S{camel}"
    return _identifier(camel, "name")


_HEADER = '''"""Learned strategies, rendered from the MEM memory store by a fixed template.

A view for review: the store is the source of truth. MEM never imports or executes this file.
Generated {generated}; {active} active, {deprecated} deprecated.
"""
from __future__ import annotations


def _holds(value, op, threshold):
    if value is None:
        return False
    if op == "<":
        return value < threshold
    if op == "<=":
        return value <= threshold
    if op == ">":
        return value > threshold
    return value >= threshold
'''

_CLASS = '''

class {cls}:
    """Learned strategy {name}.

    Action: {action}
    Conditions: {conditions_text}
    Confidence: {confidence_text}
    Size: {size_text} of capital; stop loss {stop_text}; take profit {target_text}
    Performance: {trades} trades, {wins} wins, {losses} losses, win rate {win_rate_text}, average gain {avg_text}, Sharpe {sharpe_text}
    Created: {created}; updated: {updated}
    Status: {status}
    """

    NAME = {name_lit}
    ACTION = {action_lit}
    CONDITIONS = ({conditions_lit})
    CONFIDENCE = {confidence}
    SIZE = {size}
    STOP_LOSS_PCT = {stop}
    TAKE_PROFIT_PCT = {target}
    CREATED = {created_lit}
    UPDATED = {updated_lit}
    DEPRECATED = {deprecated}
    DEPRECATED_REASON = {deprecated_reason}
    EVIDENCE = {evidence}

    def __init__(self):
        self.trades = {trades}
        self.wins = {wins}
        self.losses = {losses}
        self.total_pnl = {total_pnl}
        self.avg_pnl_pct = {avg}

    def should_enter(self, features):
        """True when the strategy is active and every condition holds on the feature snapshot."""
        return not self.DEPRECATED and all(_holds(features.get(f), op, t) for f, op, t in self.CONDITIONS)

    def update_performance(self, pnl, pnl_pct):
        """Count one closed trade (the store does this for real; kept for review and tests)."""
        self.trades += 1
        if pnl > 0:
            self.wins += 1
        else:
            self.losses += 1
        self.total_pnl += pnl
        self.avg_pnl_pct += (pnl_pct - self.avg_pnl_pct) / self.trades
        return self.wins / self.trades
'''


def render_strategy(spec: StrategySpec) -> str:
    name = _identifier(spec.name, "name")
    if spec.action not in ACTIONS:
        raise InvalidRecord("action", "unknown action")
    conds = []
    texts = []
    for c in spec.conditions:
        feature = _identifier(c.feature, "conditions.feature")
        if c.op not in OPS:
            raise InvalidRecord("conditions.op", "unknown operator")
        conds.append(f"({feature!r}, {c.op!r}, {_num(c.threshold)})")
        texts.append(f"{feature} {c.op} {float(c.threshold):.6g}")
    st = spec.stats
    return _CLASS.format(
        cls=_class_name(name),
        name=name,
        name_lit=repr(name),
        action=spec.action,
        action_lit=repr(spec.action),
        conditions_text=" and ".join(texts),
        conditions_lit=", ".join(conds) + ("," if len(conds) == 1 else ""),
        confidence=_num(spec.confidence),
        confidence_text=f"{float(spec.confidence):.2f}",
        size=_num(spec.size),
        size_text=f"{float(spec.size):.2%}",
        stop=_num(spec.stop_loss_pct),
        stop_text=f"{float(spec.stop_loss_pct):.2%}",
        target=_num(spec.take_profit_pct),
        target_text=f"{float(spec.take_profit_pct):.2%}",
        trades=int(st.trades),
        wins=int(st.wins),
        losses=int(st.losses),
        win_rate_text=f"{st.win_rate:.1%}",
        avg_text=f"{st.avg_gain:+.2%}",
        sharpe_text=f"{st.sharpe:.2f}",
        total_pnl=_num(st.total_pnl),
        avg=_num(st.avg_pnl_pct),
        created=_ts(spec.created_at),
        updated=_ts(spec.updated_at),
        created_lit=repr(_ts(spec.created_at)),
        updated_lit=repr(_ts(spec.updated_at)),
        status="deprecated" if spec.deprecated else "active",
        deprecated=repr(bool(spec.deprecated)),
        deprecated_reason=repr(str(spec.deprecated_reason)) if spec.deprecated_reason is not None else "None",
        evidence=repr(str(spec.evidence)),
    )


def strategy_modules(specs: Sequence[StrategySpec], generated: datetime | None = None) -> str:
    specs = sorted(specs, key=lambda s: (s.deprecated, s.name))
    text = _HEADER.format(
        generated=_ts(generated or datetime.now(UTC)),
        active=sum(not s.deprecated for s in specs),
        deprecated=sum(s.deprecated for s in specs),
    )
    return text + "".join(render_strategy(s) for s in specs)


# ---------------------------------------------------------------------- all
def export_all(store: MemoryStore, folder: Path, cfg: MemoryConfig = MemoryConfig()) -> dict[str, Path]:
    private_dir(folder)
    paths = {
        "core_memory_updates": folder / "core_memory_updates.txt",
        "parameter_updates": folder / "parameter_updates.json",
        "strategy_modules": folder / "strategy_modules.py",
    }
    _write(paths["core_memory_updates"], "\n".join(core_memory_lines(store)) + "\n")
    _write(paths["parameter_updates"], json.dumps(parameter_updates(store, cfg), indent=2) + "\n")
    _write(paths["strategy_modules"], strategy_modules(list(store.strategies().values())))
    return paths
