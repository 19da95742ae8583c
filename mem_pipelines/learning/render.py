"""The learning as text: learned strategies as flat rows and rows as markdown tables (for the
Dagster UI's metadata and the replay report)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from mem_memory import StrategySpec


def strategy_row(spec: StrategySpec) -> dict[str, object]:
    """One learned strategy as a flat row."""
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


def rows_markdown(rows: Sequence[Mapping[str, object]], columns: Sequence[str] | None = None) -> str:
    """Dict rows as a markdown table (``columns``: which and in what order; default the first
    row's keys); floats to 4 significant digits, NaN as "n/a"; "_none_" without rows."""
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
