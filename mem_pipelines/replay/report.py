"""The replay's report: the three-way comparison, the learning's evolution, files and a plot.

Pure apart from ``ReplayReport.write`` (files) and ``plot_equity`` (matplotlib with the Agg
backend, no display). Nothing in the report depends on the wall clock or on random ids, so a
replay with the same inputs writes byte-identical markdown and CSV files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from mem_pipelines.replay.metrics import ReplayMetrics
from mem_pipelines.replay.simulator import Trade

VARIANTS: dict[str, str] = {
    "base": "Base strategy alone",
    "base_ml": "Base + ML filter",
    "full": "Base + ML + memory (full system)",
}


@dataclass(frozen=True)
class VariantResult:
    name: str
    trades: tuple[Trade, ...]
    metrics: ReplayMetrics
    equity: pd.Series  # capital + realised P&L on the replay grid
    signals: int = 0  # base signals seen while flat
    skipped: int = 0  # of those, not traded (filtered / HOLD)

    @property
    def label(self) -> str:
        return VARIANTS.get(self.name, self.name)


@dataclass(frozen=True)
class EvolutionPoint:
    """State of the memory after ``outcomes`` outcomes of the full system (replay time ``ts``)."""

    ts: pd.Timestamp
    outcomes: int
    active_strategies: int
    deprecated_strategies: int
    parameters: Mapping[str, float]


@dataclass(frozen=True)
class LearningEvent:
    """A change the learning made: a strategy created/updated/deprecated, a parameter adjusted."""

    ts: pd.Timestamp
    kind: str
    subject: str
    detail: str


@dataclass
class ReplayReport:
    symbols: tuple[str, ...]
    start: pd.Timestamp
    end: pd.Timestamp
    fee_bps: float
    slippage_bps: float
    capital: float
    model_version: str
    model_data_end: str
    variants: list[VariantResult]
    evolution: list[EvolutionPoint] = field(default_factory=list)
    events: list[LearningEvent] = field(default_factory=list)
    final_strategies: list[dict[str, object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ tables
    def comparison_frame(self) -> pd.DataFrame:
        rows = []
        for v in self.variants:
            m = v.metrics
            rows.append(
                {
                    "variant": v.label,
                    "signals": v.signals,
                    "trades": m.trades,
                    "win_rate": m.win_rate,
                    "total_pnl": m.total_pnl,
                    "avg_pnl": m.avg_pnl,
                    "avg_pnl_pct": m.avg_pnl_pct,
                    "return_pct": m.return_pct,
                    "fees": m.fees,
                    "sharpe": m.sharpe,
                    "max_drawdown": m.max_drawdown,
                    "max_drawdown_pct": m.max_drawdown_pct,
                }
            )
        return pd.DataFrame(rows)

    def table_markdown(self) -> str:
        """The three-way comparison as a markdown table (same candles, same costs)."""
        head = (
            "| Variant | Trades | Win rate | Total P&L | Avg P&L / trade | Avg P&L % | Sharpe | Max drawdown |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|\n"
        )
        lines = []
        for v in self.variants:
            m = v.metrics
            lines.append(
                f"| {v.label} | {m.trades} | {_pct(m.win_rate)} | {_money(m.total_pnl)} | {_money(m.avg_pnl)} "
                f"| {_pct(m.avg_pnl_pct, 3)} | {_num(m.sharpe)} | {_money(m.max_drawdown)} ({_pct(m.max_drawdown_pct)}) |"
            )
        return head + "\n".join(lines) + "\n"

    def evolution_frame(self) -> pd.DataFrame:
        rows = []
        for p in self.evolution:
            row: dict[str, object] = {
                "ts": p.ts.isoformat(),
                "outcomes": p.outcomes,
                "active_strategies": p.active_strategies,
                "deprecated_strategies": p.deprecated_strategies,
            }
            row.update({k: p.parameters[k] for k in sorted(p.parameters)})
            rows.append(row)
        return pd.DataFrame(rows)

    def events_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [{"ts": e.ts.isoformat(), "kind": e.kind, "subject": e.subject, "detail": e.detail} for e in self.events],
            columns=["ts", "kind", "subject", "detail"],
        )

    def trades_frame(self) -> pd.DataFrame:
        rows = []
        for v in self.variants:
            for t in v.trades:
                d = asdict(t)
                d.pop("tag", None)  # server decision ids are random; keep the file deterministic
                rows.append(
                    {
                        "variant": v.name,
                        **{k: (x.isoformat() if isinstance(x, pd.Timestamp) else x) for k, x in d.items()},
                    }
                )
        return pd.DataFrame(rows)

    def markdown(self, png_name: str | None = "equity.png") -> str:
        """The whole report: setup, the comparison, a plain verdict, and how the memory learned."""
        out = [
            "# Replay report",
            "",
            f"- Symbols: {', '.join(self.symbols)}",
            f"- Window: {self.start.isoformat()} to {self.end.isoformat()} (decisions at candle closes inside it)",
            f"- Costs: fee {self.fee_bps:g} bps per fill, slippage {self.slippage_bps:g} bps per fill; capital {self.capital:,.0f}",
            f"- Model: mem-reversal version {self.model_version}, trained on data up to {self.model_data_end}",
            "",
            "## Comparison (same candles, same costs)",
            "",
            self.table_markdown(),
            self.verdict(),
            "",
        ]
        if png_name:
            out += [f"![equity curves]({png_name})", ""]
        out += ["## How the memory evolved", ""]
        if self.evolution:
            ev = self.evolution_frame()
            out.append(_frame_md(ev))
        else:
            out.append("No outcomes reached the memory.")
        out += ["", "### What changed and why", ""]
        out.append(_frame_md(self.events_frame()) if self.events else "No strategy or parameter changed.")
        out += ["", "### Learned strategies at the end", ""]
        if self.final_strategies:
            out.append(_frame_md(pd.DataFrame(self.final_strategies)))
        else:
            out.append("None: no pattern passed discovery's thresholds in this window.")
        if self.notes:
            out += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"

    def verdict(self) -> str:
        """A plain sentence: did memory help (total P&L after costs, full system vs base + ML), and
        is that an edge per trade or only trading fewer / smaller positions."""
        by = {v.name: v.metrics for v in self.variants}
        if "full" not in by or "base_ml" not in by:
            return ""
        full, ml = by["full"], by["base_ml"]
        diff = full.total_pnl - ml.total_pnl
        helps = "helped" if diff > 0 else "did not help"
        text = (
            f"Memory {helps} in this window on total P&L after costs: the full system made {_money(full.total_pnl)} "
            f"vs {_money(ml.total_pnl)} for base + ML ({'+' if diff >= 0 else ''}{_money(diff)}; {full.trades} vs {ml.trades} trades)."
        )
        if full.trades and ml.trades and not (math.isnan(full.avg_pnl_pct) or math.isnan(ml.avg_pnl_pct)):
            better = full.avg_pnl_pct > ml.avg_pnl_pct
            text += f" Per trade it was {'better' if better else 'worse'} ({_pct(full.avg_pnl_pct, 3)} vs {_pct(ml.avg_pnl_pct, 3)} of notional)"
            if better != (diff > 0):
                text += (
                    ": the gain in total comes from how many and how large its positions were, not from better trades."
                    if diff > 0
                    else ": the loss in total comes from how many and how large its positions were."
                )
            else:
                text += "."
        return text

    # ------------------------------------------------------------------ files
    def write(self, folder: str | Path) -> dict[str, Path]:
        """Write report.md, comparison.csv, trades.csv, evolution.csv, learning_events.csv and
        equity.png into ``folder`` (created); returns the paths by name."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {
            "markdown": folder / "report.md",
            "comparison": folder / "comparison.csv",
            "trades": folder / "trades.csv",
            "evolution": folder / "evolution.csv",
            "events": folder / "learning_events.csv",
            "equity_png": folder / "equity.png",
        }
        plot_equity(
            self.variants,
            paths["equity_png"],
            title=f"{', '.join(self.symbols)}: {self.start:%Y-%m-%d} to {self.end:%Y-%m-%d}",
        )
        paths["markdown"].write_text(self.markdown(paths["equity_png"].name))
        self.comparison_frame().to_csv(paths["comparison"], index=False, float_format="%.10g")
        self.trades_frame().to_csv(paths["trades"], index=False, float_format="%.10g")
        self.evolution_frame().to_csv(paths["evolution"], index=False, float_format="%.10g")
        self.events_frame().to_csv(paths["events"], index=False)
        return paths


def plot_equity(variants: Sequence[VariantResult], path: Path, title: str = "") -> Path:
    # Imported here: matplotlib is heavy and only a written report needs it.
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
    for v in variants:
        ax.plot(v.equity.index, v.equity.to_numpy(), label=f"{v.label} ({v.metrics.trades} trades)", linewidth=1.2)
    ax.set_title(f"Equity after costs — {title}" if title else "Equity after costs")
    ax.set_ylabel("equity")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


def _frame_md(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(str(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(x) for x in row) + " |")
    return "\n".join(lines)


def _cell(x: object) -> str:
    if isinstance(x, float):
        return "n/a" if math.isnan(x) else f"{x:.4g}"
    return str(x).replace("|", "/").replace("\n", " ")


def _pct(x: float, digits: int = 1) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.{digits}f}%"


def _money(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:,.2f}"


def _num(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.2f}"
