"""The training's evaluation as Dagster tables (``TableMetadataValue``: sortable, typed columns in
the UI) rather than Markdown: feature importances, the holdout's skill, the walk-forward folds and
the gate's comparison. Pure: frames and reports in, metadata values out."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import pandas as pd

from mem_pipelines.lib.evaluation import Metrics
from mem_pipelines.lib.skill import SkillReport


def _column_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        return "float"
    return "string"


def _cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _cell(value.item())
    return value


def frame_table(frame: pd.DataFrame, descriptions: Mapping[str, str] | None = None) -> dg.TableMetadataValue:
    """``frame`` as a Dagster table: a typed column per frame column, a record per row (NaN and
    infinities as empty cells)."""
    about = descriptions or {}
    schema = dg.TableSchema(
        columns=[dg.TableColumn(str(c), _column_type(frame[c]), description=about.get(str(c))) for c in frame.columns]
    )
    records = [dg.TableRecord({str(k): _cell(v) for k, v in row.items()}) for row in frame.to_dict("records")]
    return dg.MetadataValue.table(records=records, schema=schema)


def importance_table(importances: Mapping[str, float], kind: str) -> dg.TableMetadataValue:
    """Features by importance, largest first; ``kind`` says how it was measured."""
    ranked = sorted(importances.items(), key=lambda kv: -kv[1])
    frame = pd.DataFrame(
        {
            "rank": list(range(1, len(ranked) + 1)),
            "feature": [k for k, _ in ranked],
            "importance": [float(v) for _, v in ranked],
        }
    )
    return frame_table(frame, {"importance": kind})


def holdout_table(metrics: Metrics, skill: SkillReport) -> dg.TableMetadataValue:
    """One row per holdout measure: its value and, where there is one, its 95% day-block interval."""
    rows: list[dict[str, Any]] = [
        {"measure": "log-loss gain (mnat) over the constant base rate", "name": "log_loss_gain_mnat"},
        {"measure": "ROC-AUC", "name": "roc_auc"},
        {"measure": "Brier skill over the constant base rate", "name": "brier_skill"},
        {"measure": "top-10% lift", "name": "top_decile_lift"},
        {"measure": "top-10% precision", "name": "top_decile_precision"},
    ]
    out = []
    for row in rows:
        name = row["name"]
        ci = skill.intervals.get(name)
        out.append(
            {
                "measure": row["measure"],
                "value": float(skill[name]),
                "ci_low": float(ci.low) if ci is not None else math.nan,
                "ci_high": float(ci.high) if ci is not None else math.nan,
            }
        )
    for name, value in metrics.scalars().items():
        if name == "rows":
            continue
        out.append({"measure": name.replace("_", " "), "value": float(value), "ci_low": math.nan, "ci_high": math.nan})
    out.append({"measure": "rows", "value": float(metrics.rows), "ci_low": math.nan, "ci_high": math.nan})
    return frame_table(pd.DataFrame(out), {"ci_low": "95% day-block bootstrap interval", "ci_high": "95% interval"})


def walk_forward_table(frame: pd.DataFrame) -> dg.TableMetadataValue:
    """The walk-forward's folds and its pooled row (``render.walk_forward_frame``)."""
    return frame_table(frame)


def gate_table(rows: Sequence[Mapping[str, Any]]) -> dg.TableMetadataValue:
    """The gate's comparison: a row per measure with the challenger's and the champion's value,
    their difference, the interval or p-value and what the rule needs."""
    columns = ["measure", "challenger", "champion", "difference", "ci_or_p", "needs"]
    frame = pd.DataFrame([{c: r.get(c, None) for c in columns} for r in rows], columns=columns)
    for c in ("challenger", "champion", "difference"):
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
    frame["ci_or_p"] = frame["ci_or_p"].fillna("").astype(str)
    frame["needs"] = frame["needs"].fillna("").astype(str)
    return frame_table(frame)
