"""Data-quality rules for a candle frame, run as a Great Expectations 1.x suite (no Dagster here).

Great Expectations is imported lazily (it takes ~2-3 s and prints progress bars): only a caller
that validates pays for it, and its context is built with analytics and progress bars off.

Each rule gives a :class:`QualityOutcome`; a failed one lists the offending rows (ts and OHLCV).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mem_pipelines.settings import DEFAULT_MAX_GAP_RATIO

_MAX_LISTED = 20

# (check name, description)
CHECKS: dict[str, str] = {
    "has_rows": "The symbol has at least one candle.",
    "no_nulls": "No null in ts, open, high, low, close, volume.",
    "high_not_below_low": "high >= low on every row.",
    "high_covers_open_close": "high >= max(open, close) on every row.",
    "low_under_open_close": "low <= min(open, close) on every row.",
    "volume_non_negative": "volume >= 0 on every row.",
    "ts_strictly_increasing": "Timestamps strictly increase (sorted, no duplicates).",
    "gap_ratio_below_threshold": "Missing interval slots / expected slots stays under the threshold.",
}


#: The checks that matter: a failure means the candles must not be trained on (blocking checks).
#: Gaps are not among them: training drops the rows that reach a gap.
BLOCKING_CHECKS: frozenset[str] = frozenset(CHECKS) - {"gap_ratio_below_threshold"}


@dataclass(frozen=True)
class QualityOutcome:
    name: str
    passed: bool
    description: str
    unexpected_count: int = 0
    offending: pd.DataFrame = field(default_factory=pd.DataFrame)  # the first offending rows
    metadata: dict[str, float | int | str] = field(default_factory=dict)


def gap_stats(ts: pd.Series, interval_seconds: int = 300) -> tuple[int, float]:
    """(missing slots, missing / expected slots) over the frame's span; (0, 0.0) for < 2 rows."""
    if len(ts) < 2:
        return 0, 0.0
    us = ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[us]").astype(np.int64)
    steps = np.diff(us) // (interval_seconds * 1_000_000)
    missing = int(np.clip(steps - 1, 0, None).sum())
    expected = int((us[-1] - us[0]) // (interval_seconds * 1_000_000)) + 1
    return missing, missing / expected if expected else 0.0


def _suite(gx):
    E = gx.expectations
    suite = gx.ExpectationSuite(name="candles")
    tagged = []
    for col in ("ts", "open", "high", "low", "close", "volume"):
        tagged.append(("no_nulls", E.ExpectColumnValuesToNotBeNull(column=col)))
    tagged.append(
        (
            "high_not_below_low",
            E.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="high", column_B="low", or_equal=True, ignore_row_if="either_value_is_missing"
            ),
        )
    )
    for col in ("open", "close"):
        tagged.append(
            (
                "high_covers_open_close",
                E.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A="high", column_B=col, or_equal=True, ignore_row_if="either_value_is_missing"
                ),
            )
        )
        tagged.append(
            (
                "low_under_open_close",
                E.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A=col, column_B="low", or_equal=True, ignore_row_if="either_value_is_missing"
                ),
            )
        )
    tagged.append(("volume_non_negative", E.ExpectColumnValuesToBeBetween(column="volume", min_value=0)))
    tagged.append(("ts_strictly_increasing", E.ExpectColumnValuesToBeIncreasing(column="ts", strictly=True)))
    for check, expectation in tagged:
        expectation.meta = {"check": check}
        suite.add_expectation(expectation)
    return suite


def run_quality_suite(
    frame: pd.DataFrame, interval_seconds: int = 300, max_gap_ratio: float = DEFAULT_MAX_GAP_RATIO
) -> list[QualityOutcome]:
    """Validate ``frame`` (a candle frame with a RangeIndex) and return one outcome per check, in CHECKS order."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    frame = frame.reset_index(drop=True)
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),  # no docs site in /tmp
        data_docs_sites={},
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    batch_def = (
        context.data_sources.add_pandas("candles")
        .add_dataframe_asset("candles")
        .add_batch_definition_whole_dataframe("whole")
    )
    suite = context.suites.add(_suite(gx))
    result = batch_def.get_batch(batch_parameters={"dataframe": frame}).validate(
        suite, result_format={"result_format": "COMPLETE"}
    )

    bad_rows: dict[str, set[int]] = {name: set() for name in CHECKS}
    failed: dict[str, bool] = {name: False for name in CHECKS}
    for r in result.results:
        check = (r.expectation_config.meta or {}).get("check")
        if check is None:
            continue
        if r.exception_info and r.exception_info.get("raised_exception"):
            raise RuntimeError(
                f"Great Expectations could not evaluate {r.expectation_config.type}: {r.exception_info.get('exception_message')}"
            )
        if not r.success:
            failed[check] = True
            bad_rows[check].update(int(i) for i in r.result.get("unexpected_index_list") or [])

    outcomes = [
        QualityOutcome(
            name="has_rows",
            passed=len(frame) > 0,
            description=CHECKS["has_rows"],
            unexpected_count=int(len(frame) == 0),
            metadata={"rows": len(frame)},
        )
    ]
    for name, description in CHECKS.items():
        if name in ("has_rows", "gap_ratio_below_threshold"):
            continue
        rows = sorted(bad_rows[name])
        outcomes.append(
            QualityOutcome(
                name=name,
                passed=not failed[name],
                description=description,
                unexpected_count=len(rows),
                offending=frame.iloc[rows[:_MAX_LISTED]],
            )
        )
    missing, ratio = gap_stats(frame["ts"].dropna(), interval_seconds)
    offending = pd.DataFrame()
    if ratio >= max_gap_ratio and len(frame) > 1:
        ts = frame["ts"]
        jumps = np.flatnonzero(ts.diff().dt.total_seconds().to_numpy()[1:] > interval_seconds) + 1
        offending = frame.iloc[jumps[:_MAX_LISTED]]  # rows right after a gap
    outcomes.append(
        QualityOutcome(
            name="gap_ratio_below_threshold",
            passed=ratio < max_gap_ratio,
            description=CHECKS["gap_ratio_below_threshold"],
            unexpected_count=missing,
            offending=offending,
            metadata={"missing_slots": missing, "gap_ratio": ratio, "max_gap_ratio": max_gap_ratio},
        )
    )
    return outcomes


def frame_markdown(frame: pd.DataFrame, max_rows: int = 20) -> str:
    """A small Markdown table (no tabulate dependency)."""
    if frame.empty:
        return "_(no rows)_"
    shown = frame.head(max_rows)
    cols = list(shown.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in shown.iterrows():
        lines.append("| " + " | ".join(_cell(row[c]) for c in cols) + " |")
    if len(frame) > max_rows:
        lines.append(f"\n_{len(frame) - max_rows} more row(s)_")
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M:%S%z")
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)
