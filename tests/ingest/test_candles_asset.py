"""The ``candles`` asset and its Great Expectations checks, materialized in-process on a real QuestDB."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from mem_core.questdb import store
from mem_pipelines.ingest.assets import build_candles_asset, candles_partitions, load_window
from mem_pipelines.ingest.checks import build_candle_checks
from mem_pipelines.ingest.synthetic import synthetic_candles
from mem_pipelines.resources import QuestDBResource

END = "2026-02-01T00:00:00Z"
PARTITIONS = candles_partitions(("BTCUSDT", "ETHUSDT"))


def _materialize(settings, partition="BTCUSDT", config=None):
    return dg.materialize(
        [build_candles_asset(PARTITIONS), build_candle_checks(PARTITIONS)],
        partition_key=partition,
        resources={"questdb": QuestDBResource.from_settings(settings)},
        run_config={"ops": {"candles": {"config": config or {}}}},
        raise_on_error=False,
    )


def _checks(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_materialize_reads_window_and_checks_pass(fresh_questdb):
    frame = synthetic_candles(["BTCUSDT", "ETHUSDT"], 5, 3, END)
    store.write_candles(fresh_questdb, frame)
    result = _materialize(fresh_questdb, config={"start": "2026-01-30", "end": "2026-01-31T00:00:00Z"})
    assert result.success
    out = result.output_for_node("candles")
    assert len(out) == 288 and out["ts"].iloc[0] == pd.Timestamp("2026-01-30", tz="UTC")
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["rows"].value == 288 and meta["gap_count"].value == 0
    assert meta["first_ts"].value.startswith("2026-01-30T00:00") and meta["last_ts"].value.startswith(
        "2026-01-30T23:55"
    )
    assert "| ts |" in meta["preview"].value
    checks = _checks(result)
    assert len(checks) == 8 and all(c.passed for c in checks.values()), {n: c.passed for n, c in checks.items()}

    last = _materialize(fresh_questdb, partition="ETHUSDT", config={"last_days": 1})
    assert last.success and len(last.output_for_node("candles")) == 288


def test_planted_bad_row_fails_the_matching_check_and_names_it(fresh_questdb):
    frame = synthetic_candles(["BTCUSDT"], 1, 5, END)
    bad_ts = frame["ts"].iloc[100]
    frame.loc[100, "high"] = frame.loc[100, "low"] * 0.99  # high < low (planted behind validation's back)
    store.write_candles(fresh_questdb, frame)
    result = _materialize(fresh_questdb)
    checks = _checks(result)
    failed = {name for name, c in checks.items() if not c.passed}
    assert "high_not_below_low" in failed
    assert failed <= {"high_not_below_low", "high_covers_open_close", "low_under_open_close"}
    meta = checks["high_not_below_low"].metadata
    assert meta["unexpected_count"].value == 1
    assert meta["first_offending_ts"].value == bad_ts.isoformat()
    assert bad_ts.strftime("%Y-%m-%d %H:%M:%S") in meta["offending_rows"].value


def test_load_window_refuses_start_with_last_days(questdb):
    with pytest.raises(ValueError, match="either start or last_days"):
        load_window(questdb, "BTCUSDT", start="2026-01-01", last_days=1)
