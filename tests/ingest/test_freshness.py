"""Freshness of ``candles`` per symbol: the rule, and the Dagster checks failing on stale data in the
real QuestDB."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from mem_core.questdb.store import newest_candle_times, write_candles
from mem_core.settings import QuestDBSettings
from mem_pipelines.ingest.defs import ingest_defs
from mem_pipelines.ingest.freshness import age_text, assess, check_name
from mem_pipelines.ingest.landing_assets import LandingResource
from mem_pipelines.ingest.synthetic import synthetic_candles
from mem_pipelines.resources import QuestDBResource
from mem_pipelines.settings import FreshnessSettings

NOW = pd.Timestamp("2026-03-02 12:00", tz="UTC")
LAG = pd.Timedelta(minutes=30)


def test_assess_compares_the_newest_candle_with_the_lag() -> None:
    newest = {
        "A": NOW - pd.Timedelta(minutes=5),
        "B": NOW - pd.Timedelta(minutes=30),
        "C": NOW - pd.Timedelta(minutes=31),
    }
    got = {f.symbol: f for f in assess(newest, ["A", "B", "C", "D"], NOW, LAG)}
    assert [got[s].fresh for s in "ABCD"] == [True, True, False, False]
    assert got["C"].age == pd.Timedelta(minutes=31) and "older than the 30 min allowed" in got["C"].describe()
    assert "opened 31 min ago (2026-03-02 11:29 UTC)" in got["C"].describe()
    assert got["D"].newest is None and got["D"].describe() == "no candles of D in QuestDB"
    assert check_name("BTC-USDT") == "fresh_BTC_USDT"


def test_ages_read_in_days_and_hours_not_minutes() -> None:
    assert age_text(pd.Timedelta(days=290, hours=3)) == "290 days"
    assert age_text(pd.Timedelta(days=1, hours=5, minutes=2)) == "1 day 5 h"
    assert age_text(pd.Timedelta(hours=3, minutes=12, seconds=9)) == "3 h 12 min"
    assert age_text(pd.Timedelta(hours=2)) == "2 h"
    assert age_text(pd.Timedelta(minutes=12, seconds=30)) == "12 min"
    assert age_text(pd.Timedelta(seconds=40)) == "40 s"
    newest = pd.Timestamp("2026-02-19 21:55", tz="UTC")
    (old,) = assess({"A": newest}, ["A"], pd.Timestamp("2026-12-07 09:00", tz="UTC"), LAG)
    assert old.describe(live=False).startswith("historical data, newest candle 2026-02-19 21:55 UTC (290 days old)")


def test_freshness_settings_from_env() -> None:
    assert FreshnessSettings.from_env({}) == FreshnessSettings(30.0, live=False)
    assert FreshnessSettings.from_env({"MEM_CANDLES_LIVE": "1"}).live
    assert not FreshnessSettings.from_env({"MEM_CANDLES_LIVE": "false"}).live
    with pytest.raises(ValueError, match="MEM_CANDLES_LIVE"):
        FreshnessSettings.from_env({"MEM_CANDLES_LIVE": "maybe"})
    assert FreshnessSettings.from_env({"MEM_CANDLES_MAX_LAG_MINUTES": "90"}).max_lag_minutes == 90.0
    with pytest.raises(ValueError, match="must be positive"):
        FreshnessSettings.from_env({"MEM_CANDLES_MAX_LAG_MINUTES": "0"})


def _defs(questdb: QuestDBSettings, freshness: FreshnessSettings) -> dg.Definitions:
    return dg.Definitions.merge(
        ingest_defs(("BTCUSDT", "ETHUSDT", "XRPUSDT"), freshness=freshness),
        dg.Definitions(
            resources={
                "questdb": QuestDBResource.from_settings(questdb),
                "landing": LandingResource(folder="/nonexistent"),
            }
        ),
    )


def test_freshness_checks_fail_on_stale_and_missing_symbols(fresh_questdb: QuestDBSettings) -> None:
    now = pd.Timestamp.now(tz="UTC")
    write_candles(fresh_questdb, synthetic_candles(["BTCUSDT"], days=0.5, seed=1, end=now))  # up to the last closed bar
    write_candles(fresh_questdb, synthetic_candles(["ETHUSDT"], days=0.5, seed=1, end=now - pd.Timedelta(hours=2)))
    newest = newest_candle_times(fresh_questdb, ["BTCUSDT", "ETHUSDT", "XRPUSDT"])
    assert set(newest) == {"BTCUSDT", "ETHUSDT"}

    defs = _defs(fresh_questdb, FreshnessSettings(30.0, live=True))
    schedule = defs.resolve_schedule_def("candles_freshness")
    assert schedule.cron_schedule == "*/10 * * * *" and schedule.job_name == "candles_freshness_job"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("candles_freshness_job").execute_in_process(
            instance=instance, raise_on_error=False
        )
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert {name: e.passed for name, e in evaluations.items()} == {
        "fresh_BTCUSDT": True,
        "fresh_ETHUSDT": False,
        "fresh_XRPUSDT": False,
    }
    assert all(e.asset_key == dg.AssetKey("candles") for e in evaluations.values())
    assert all(e.severity == dg.AssetCheckSeverity.ERROR for e in evaluations.values())
    assert "opened 2 h" in evaluations["fresh_ETHUSDT"].description
    stale = evaluations["fresh_ETHUSDT"].metadata
    assert 120 <= stale["age_minutes"].value <= 135 and stale["max_lag_minutes"].value == 30.0
    assert stale["newest_ts"].value == newest["ETHUSDT"].isoformat()
    assert evaluations["fresh_XRPUSDT"].metadata["newest_ts"].value == "none"
    assert evaluations["fresh_BTCUSDT"].metadata["age_minutes"].value <= 10.5


def test_on_historical_data_the_checks_only_warn_with_the_age_and_the_schedule_is_off(
    fresh_questdb: QuestDBSettings,
) -> None:
    end = pd.Timestamp("2026-02-19 22:00", tz="UTC")
    write_candles(fresh_questdb, synthetic_candles(["BTCUSDT", "ETHUSDT"], days=0.5, seed=1, end=end))
    defs = _defs(fresh_questdb, FreshnessSettings(30.0, live=False))
    assert defs.resolve_schedule_def("candles_freshness").default_status == dg.DefaultScheduleStatus.STOPPED
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("candles_freshness_job").execute_in_process(
            instance=instance, raise_on_error=False
        )
    assert result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert {e.severity for e in evaluations.values()} == {dg.AssetCheckSeverity.WARN}
    days = (pd.Timestamp.now(tz="UTC") - pd.Timestamp("2026-02-19 21:55", tz="UTC")).days
    assert evaluations["fresh_BTCUSDT"].description.startswith(
        f"historical data, newest candle 2026-02-19 21:55 UTC ({days} days old)"
    )
    assert evaluations["fresh_BTCUSDT"].metadata["age"].value == f"{days} days"
    assert evaluations["fresh_XRPUSDT"].description == "no candles of XRPUSDT in QuestDB"
