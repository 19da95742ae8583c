"""Markdown tables and the walk-forward plot for the Dagster metadata and MLflow artifacts of the
training assets."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import pandas as pd

from mem_pipelines.lib.evaluation import Metrics
from mem_pipelines.lib.skill import SkillReport
from mem_pipelines.lib.walkforward import WalkForward
from mem_pipelines.training.dataset import SymbolGaps


def metrics_table(metrics: Metrics) -> str:
    """Holdout metrics, one row each."""
    rows = ["| metric | value |", "|---|---|"]
    for k, v in metrics.scalars().items():
        rows.append(f"| {k} | {v:.4f} |" if k != "rows" else f"| rows | {int(v)} |")
    return "\n".join(rows)


def confusion_markdown(metrics: Metrics) -> str:
    (tn, fp), (fn, tp) = metrics.confusion
    return (
        "| true \\ predicted | no reversal | reversal |\n|---|---|---|\n"
        f"| no reversal | {tn} | {fp} |\n| reversal | {fn} | {tp} |"
    )


def importance_markdown(importances: Mapping[str, float]) -> str:
    rows = ["| feature | importance |", "|---|---|"]
    for name, value in sorted(importances.items(), key=lambda kv: -kv[1]):
        rows.append(f"| {name} | {value:.4f} |")
    return "\n".join(rows)


def _ci(report: SkillReport, name: str, digits: int, signed: bool = False) -> str:
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    ci = report.intervals[name]
    return f"{fmt.format(report[name])} [{fmt.format(ci.low)}, {fmt.format(ci.high)}]"


_SKILL_COLUMNS = (
    "rows scored",
    "days",
    "ROC-AUC [95% CI]",
    "log-loss gain mnat [CI]",
    "Brier skill [CI]",
    "accuracy vs majority",
    "top-10% precision",
    "top-10% lift [CI]",
)


def _header(*first: str) -> str:
    cells = (*first, *_SKILL_COLUMNS)
    return "| " + " | ".join(cells) + " |\n" + "|---" * len(cells) + "|"


def skill_row(label: str, report: SkillReport, *leading: str) -> str:
    """One table row: ``label``, the ``leading`` cells, then the skill columns."""
    cells = (
        label,
        *leading,
        f"{report.rows:,}",
        str(report.days),
        _ci(report, "roc_auc", 3),
        _ci(report, "log_loss_gain_mnat", 1, signed=True),
        _ci(report, "brier_skill", 3, signed=True),
        f"{report['accuracy']:.3f} vs {report['baseline_accuracy']:.3f}",
        f"{report['top_decile_precision']:.3f}",
        _ci(report, "top_decile_lift", 2),
    )
    return "| " + " | ".join(cells) + " |"


def skill_markdown(report: SkillReport, label: str = "holdout") -> str:
    """One skill report as a one-row table (95% day-block bootstrap intervals)."""
    return _header("scored on") + "\n" + skill_row(label, report)


def walk_forward_markdown(wf: WalkForward) -> str:
    """Per fold and pooled: skill with 95% day-block bootstrap intervals, train rows."""
    lines = [_header("test period (UTC)", "train rows")]
    for r in wf.folds:
        lines.append(skill_row(r.fold.label, r.skill, f"{r.train_rows:,}"))
    lines.append(skill_row("**pooled**", wf.pooled, f"{sum(r.train_rows for r in wf.folds):,}"))
    return "\n".join(lines)


def walk_forward_frame(wf: WalkForward) -> pd.DataFrame:
    """``WalkForward.table()`` with each fold's train and test period (the CSV artifact)."""
    table = wf.table()
    periods = [
        (
            f.fold.train_start.isoformat(),
            f.fold.train_end.isoformat(),
            f.fold.test_start.isoformat(),
            f.fold.test_end.isoformat(),
        )
        for f in wf.folds
    ] + [("", "", wf.folds[0].fold.test_start.isoformat(), wf.folds[-1].fold.test_end.isoformat())]
    for i, name in enumerate(("train_start", "train_end", "test_start", "test_end")):
        table.insert(1 + i, name, [p[i] for p in periods])
    return table


def walk_forward_png(wf: WalkForward, title: str = "") -> bytes:
    """Per-fold and pooled log-loss gain and ROC-AUC with their 95% intervals (PNG bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reports = [r.skill for r in wf.folds] + [wf.pooled]
    labels = [f"{r.fold.test_start:%m-%d}" for r in wf.folds] + ["pooled"]
    x = list(range(len(reports)))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=90)
    for ax, name, unit, ref in (
        (axes[0], "log_loss_gain_mnat", "log-loss gain over the base rate (mnat), 95% CI", 0.0),
        (axes[1], "roc_auc", "ROC-AUC, 95% CI", 0.5),
    ):
        values = [r[name] for r in reports]
        low = [r[name] - r.intervals[name].low for r in reports]
        high = [r.intervals[name].high - r[name] for r in reports]
        colors = ["tab:blue"] * len(wf.folds) + ["black"]
        for i in x:
            ax.errorbar(i, values[i], yerr=[[low[i]], [high[i]]], fmt="o", color=colors[i], capsize=4)
        ax.axhline(ref, color="grey", linewidth=1, linestyle="--")
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_title(unit, fontsize=10)
        ax.set_xlabel("test period start", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def png_markdown(png: bytes, alt: str) -> str:
    """An inline image for a markdown metadata value (the Dagster UI renders it)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def gaps_markdown(gaps: Sequence[SymbolGaps]) -> str:
    if not gaps:
        return "_no gap in the window_"
    lines = [
        "| symbol | first missing slot | last missing slot | missing candles | rows dropped |",
        "|---|---|---|---|---|",
    ]
    for g in gaps:
        lines.append(
            f"| {g.symbol} | {g.gap.first_missing.isoformat()} | {g.gap.last_missing.isoformat()} | {g.gap.slots} | {g.rows_dropped} |"
        )
    return "\n".join(lines)
