"""The Great Expectations quality suite on candle frames (no Dagster, no database)."""

from __future__ import annotations

import pandas as pd

from mem_pipelines.ingest.quality import gap_stats, run_quality_suite
from mem_pipelines.ingest.synthetic import synthetic_candles


def _frame(days=2):
    return synthetic_candles(["BTCUSDT"], days, 9, "2026-01-01").drop(columns="symbol")


def test_clean_frame_passes_everything():
    assert all(o.passed for o in run_quality_suite(_frame()))


def test_each_rule_names_its_rows():
    df = _frame()
    df.loc[10, "volume"] = -1.0
    df.loc[20, "close"] = None
    df.loc[30, "ts"] = df.loc[29, "ts"]  # duplicate timestamp
    df.loc[40, "low"] = df.loc[40, ["open", "close"]].min() * 1.01
    out = {o.name: o for o in run_quality_suite(df)}
    assert list(out["volume_non_negative"].offending.index) == [10]
    assert list(out["no_nulls"].offending.index) == [20]
    assert 30 in out["ts_strictly_increasing"].offending.index
    assert list(out["low_under_open_close"].offending.index) == [40]
    assert out["high_covers_open_close"].passed and out["gap_ratio_below_threshold"].passed


def test_gap_ratio():
    df = _frame(days=1).drop(index=range(50, 60)).reset_index(drop=True)
    assert gap_stats(df["ts"]) == (10, 10 / 288)
    out = {o.name: o for o in run_quality_suite(df, max_gap_ratio=0.02)}
    gap = out["gap_ratio_below_threshold"]
    assert not gap.passed and gap.metadata["missing_slots"] == 10
    assert gap.offending["ts"].iloc[0] == pd.Timestamp("2025-12-31 05:00", tz="UTC")


def test_an_empty_frame_fails_has_rows_only():
    out = {o.name: o for o in run_quality_suite(_frame().iloc[:0])}
    assert not out["has_rows"].passed and out["has_rows"].unexpected_count == 1
    assert all(o.passed for name, o in out.items() if name != "has_rows")
