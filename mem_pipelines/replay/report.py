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
from mem_pipelines.replay.stats import (
    BETTER,
    TOO_FEW,
    WORSE,
    Decomposition,
    Difference,
    after,
    decompose,
    per_trade_difference,
)

VARIANTS: dict[str, str] = {
    "base": "Base strategy alone",
    "base_ml": "Base + ML filter",
    "full": "Base + ML + memory (full system)",
}
SHORT: dict[str, str] = {"base": "base", "base_ml": "base + ML", "full": "full system"}
#: The pairs of variants compared per trade: (a, b) reads "a minus b".
PAIRS: tuple[tuple[str, str], ...] = (("base_ml", "base"), ("full", "base_ml"), ("full", "base"))


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
    #: Why no model was served ("" when one was): the ML was silent.
    model_absent_reason: str = ""
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
            "| Variant | Trades | Win rate | Total P&L | Avg P&L / trade | Avg P&L % | Sharpe (annualised) | Max drawdown |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|\n"
        )
        lines = []
        for v in self.variants:
            m = v.metrics
            lines.append(
                f"| {v.label} | {m.trades} | {_pct(m.win_rate)} | {_money(m.total_pnl)} | {_money_sig(m.avg_pnl)} "
                f"| {_pct(m.avg_pnl_pct, 3)} | {_num(m.sharpe)} | {_money_sig(m.max_drawdown)} ({_pct_sig(m.max_drawdown_pct)}) |"
            )
        return head + "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ statistics
    @property
    def second_half(self) -> pd.Timestamp:
        """Start of the window's second half: decisions from here on come after most learning."""
        return self.start + (self.end - self.start) / 2

    def differences(self) -> list[tuple[str, Difference]]:
        """Per-trade P&L differences of every pair of variants (whole window), then full system vs
        base + ML on the trades decided in the second half; each with its scope."""
        by = {v.name: v.trades for v in self.variants}
        out = [("whole window", per_trade_difference(a, by[a], b, by[b])) for a, b in PAIRS if a in by and b in by]
        if "full" in by and "base_ml" in by:
            half = self.second_half
            out.append(
                (
                    f"second half (from {half:%Y-%m-%d %H:%M})",
                    per_trade_difference("full", after(by["full"], half), "base_ml", after(by["base_ml"], half)),
                )
            )
        return out

    def decomposition(self) -> Decomposition | None:
        """The full system's total P&L difference from base + ML, by fewer trades, smaller sizes
        and different selection (``stats.decompose``)."""
        by = {v.name: v.trades for v in self.variants}
        if "full" not in by or "base_ml" not in by:
            return None
        return decompose("full", by["full"], "base_ml", by["base_ml"])

    def differences_frame(self) -> pd.DataFrame:
        rows = []
        for scope, d in self.differences():
            rows.append(
                {
                    "a": d.a,
                    "b": d.b,
                    "scope": scope,
                    "trades_a": d.trades_a,
                    "trades_b": d.trades_b,
                    "per_trade_pnl_pct_a": d.mean_a,
                    "per_trade_pnl_pct_b": d.mean_b,
                    "difference": d.difference,
                    "ci_low": d.interval.low,
                    "ci_high": d.interval.high,
                    "days": d.days,
                    "verdict": d.verdict,
                }
            )
        return pd.DataFrame(
            rows,
            columns=[
                "a",
                "b",
                "scope",
                "trades_a",
                "trades_b",
                "per_trade_pnl_pct_a",
                "per_trade_pnl_pct_b",
                "difference",
                "ci_low",
                "ci_high",
                "days",
                "verdict",
            ],
        )

    def differences_markdown(self) -> str:
        """Per-trade after-cost P&L (% of notional) of each pair, the difference with its 95% CI."""
        head = (
            "| Comparison | Scope | Trades | Per-trade P&L % | Difference (pp) | 95% CI (pp) | Verdict |\n"
            "|---|---|---:|---:|---:|---:|---|\n"
        )
        lines = []
        for scope, d in self.differences():
            lines.append(
                f"| {SHORT.get(d.a, d.a)} vs {SHORT.get(d.b, d.b)} | {scope} | {d.trades_a} vs {d.trades_b} "
                f"| {_pct(d.mean_a, 3)} vs {_pct(d.mean_b, 3)} | {_pp(d.difference)} "
                f"| {_pp(d.interval.low)} to {_pp(d.interval.high)} | {d.verdict} |"
            )
        return head + "\n".join(lines) + "\n"

    def decomposition_frame(self) -> pd.DataFrame:
        dec = self.decomposition()
        cols = ["part", "pnl", "ci_low", "ci_high"]
        if dec is None:
            return pd.DataFrame(columns=cols)
        rows = [
            {"part": p.name, "pnl": p.value, "ci_low": p.interval.low, "ci_high": p.interval.high}
            for p in (*dec.parts, dec.total_difference)
        ]
        return pd.DataFrame(rows, columns=cols)

    def decomposition_markdown(self) -> str:
        dec = self.decomposition()
        if dec is None:
            return "No decomposition: one of the two variants made no trade."
        head = "| Part of the total P&L difference | P&L | 95% CI |\n|---|---:|---:|\n"
        lines = [
            f"| {p.name} | {_money_sig(p.value)} | {_money_sig(p.interval.low)} to {_money_sig(p.interval.high)} |"
            for p in (*dec.parts, dec.total_difference)
        ]
        share = dec.explained_by_count_and_size
        notes = [
            "",
            f"Fewer trades: {dec.trades_a} trades instead of {dec.trades_b}, each at base + ML's average trade; "
            "smaller sizes: the full system's sizes at base + ML's return per unit of notional; different "
            "selection: what the full system's own trades earned beyond that.",
            f"{dec.shared_trades} of the full system's {dec.trades_a} trades were also base + ML trades (same symbol, "
            "side and decision candle)."
            + (
                f" Fewer and smaller trades at base + ML's return explain {share:.0%} of the total difference."
                if math.isfinite(share)
                else ""
            ),
        ]
        return head + "\n".join(lines) + "\n" + "\n".join(notes) + "\n"

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

    def _model_line(self) -> str:
        if not self.model_version:
            return (
                f"- Model: none served ({self.model_absent_reason}); the ML is silent in base + ML and in the full "
                "system, so base + ML is the base strategy under the HOLD rule"
            )
        return (
            f"- Model: mem-reversal version {self.model_version} as the server reports it, trained on candles up to "
            f"{self.model_data_end} (the labels' look-ahead included)"
        )

    def markdown(self, png_name: str | None = "equity.png") -> str:
        """The whole report: setup, the comparison, a plain verdict, and how the memory learned."""
        out = [
            "# Replay report",
            "",
            f"- Symbols: {', '.join(self.symbols)}",
            f"- Window: {self.start.isoformat()} to {self.end.isoformat()} (decisions at candle closes inside it)",
            f"- Costs: fee {self.fee_bps:g} bps per fill, slippage {self.slippage_bps:g} bps per fill; capital {self.capital:,.0f}",
            self._model_line(),
            "",
            "## Comparison (same candles, same costs)",
            "",
            self.table_markdown(),
            self.verdict(),
            "",
        ]
        if png_name:
            out += [f"![equity curves]({png_name})", ""]
        out += [
            "## Per trade, with 95% confidence intervals",
            "",
            "Per-trade P&L: after-cost P&L as % of the trade's notional (independent of position size); "
            "differences in percentage points (pp). Intervals: paired bootstrap over the UTC days of entry "
            '(whole days resampled, the same days for both variants); "not significant" whenever the interval covers 0.',
            "",
            self.differences_markdown(),
            "## Full system vs base + ML: where the difference in total P&L comes from",
            "",
            self.decomposition_markdown(),
            "## How the memory evolved",
            "",
        ]
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
        """Plain sentences: did memory pick better trades than base + ML (per-trade after-cost P&L,
        only with an interval that excludes 0), and where the total P&L difference comes from."""
        by = {v.name: v.metrics for v in self.variants}
        if "full" not in by or "base_ml" not in by:
            return ""
        full, ml = by["full"], by["base_ml"]
        d = next(d for _, d in self.differences() if (d.a, d.b) == ("full", "base_ml"))
        if d.verdict == TOO_FEW:
            text = (
                f"Too few trades to compare the full system with base + ML per trade ({d.trades_a} vs {d.trades_b}); "
                "no conclusion about memory."
            )
        else:
            text = (
                f"Per trade after costs the full system made {_pct(d.mean_a, 3)} of notional vs {_pct(d.mean_b, 3)} for "
                f"base + ML: {_pp(d.difference)} pp (95% CI {_pp(d.interval.low)} to {_pp(d.interval.high)})"
            )
            if d.verdict == BETTER:
                text += ": memory helped, its trades were better."
            elif d.verdict == WORSE:
                text += ": memory's trades were worse."
            else:
                text += ": not significant, no evidence that memory picked better or worse trades."
        diff = full.total_pnl - ml.total_pnl
        text += (
            f" In total the full system made {_money(full.total_pnl)} vs {_money(ml.total_pnl)} "
            f"({'+' if diff >= 0 else ''}{_money(diff)}; {full.trades} vs {ml.trades} trades)"
        )
        dec = self.decomposition()
        if dec is not None:
            count, size, selection = (p.value for p in dec.parts)
            text += (
                f": {_signed(count)} from fewer trades, {_signed(size)} from smaller sizes, "
                f"{_signed(selection)} from different selection."
            )
        else:
            text += "."
        return text

    # ------------------------------------------------------------------ files
    def write(self, folder: str | Path) -> dict[str, Path]:
        """Write report.md, comparison.csv, trades.csv, evolution.csv, learning_events.csv,
        differences.csv, decomposition.csv and equity.png into ``folder`` (created); returns the
        paths by name."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {
            "markdown": folder / "report.md",
            "comparison": folder / "comparison.csv",
            "trades": folder / "trades.csv",
            "evolution": folder / "evolution.csv",
            "events": folder / "learning_events.csv",
            "differences": folder / "differences.csv",
            "decomposition": folder / "decomposition.csv",
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
        self.differences_frame().to_csv(paths["differences"], index=False, float_format="%.10g")
        self.decomposition_frame().to_csv(paths["decomposition"], index=False, float_format="%.10g")
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


def _sig(x: float, digits: int = 3) -> int:
    """Decimals that show ``x`` with ``digits`` significant digits (at least 2)."""
    if x == 0 or not math.isfinite(x):
        return 2
    return max(2, digits - 1 - math.floor(math.log10(abs(x))))


def _money_sig(x: float) -> str:
    """Currency with at least 2 decimals and 3 significant digits (a drawdown of 0.0042 is not 0.00)."""
    return "n/a" if x is None or math.isnan(x) else f"{x:,.{_sig(x)}f}"


def _pct_sig(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.{_sig(100 * x)}f}%"


def _pp(x: float) -> str:
    """A difference of fractions in percentage points, signed, 3 decimals."""
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:+.3f}"


def _signed(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{'+' if x >= 0 else ''}{_money_sig(x)}"
