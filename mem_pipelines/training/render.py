"""Markdown tables for the Dagster metadata of the training assets."""

from __future__ import annotations

from collections.abc import Mapping

from mem_pipelines.lib.evaluation import Metrics


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
