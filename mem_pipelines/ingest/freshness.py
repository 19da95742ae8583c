"""Freshness of ``candles``: per symbol, is the newest stored candle recent enough to train on today?

One asset check per symbol (``fresh_<SYMBOL>`` on ``candles``) passes when the newest candle of
the symbol in QuestDB opened at most ``max_lag`` ago (``MEM_CANDLES_MAX_LAG_MINUTES``, default
30: six 5-minute bars). The checks read QuestDB directly (one ``LATEST ON`` query for every
symbol), so they run on their own (``candles_freshness_job``) and in every run that materialises
``candles`` (after it).

Freshness is judged only where candles are expected to be live (``MEM_CANDLES_LIVE``: a live feed
is configured): there a stale symbol fails at ERROR and the ``candles_freshness`` schedule checks
every 10 minutes. On historical data (the shipped sample, a backfill) an old candle is no fault:
the check warns (WARN) once per run, saying how old the data is ("historical data, newest candle
2026-02-19 21:55 UTC (290 days old)"), and the schedule is off. :func:`assess` is the rule, pure.
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd

from mem_core.questdb.store import newest_candle_times
from mem_pipelines.resources import QuestDBResource

#: What ``dg.define_asset_job`` returns (its class is not part of Dagster's public API).
AssetJob = Any

CANDLES = dg.AssetKey("candles")
FRESHNESS_JOB = "candles_freshness_job"


@dataclass(frozen=True)
class Freshness:
    symbol: str
    #: Open time of the newest stored candle; None when the symbol has none.
    newest: pd.Timestamp | None
    age: pd.Timedelta | None
    max_lag: pd.Timedelta

    @property
    def fresh(self) -> bool:
        return self.age is not None and self.age <= self.max_lag

    def describe(self, live: bool = True) -> str:
        """What the check says: against the allowed lag with a live feed, else the data's age."""
        if self.newest is None or self.age is None:
            return f"no candles of {self.symbol} in QuestDB"
        when = f"{self.newest:%Y-%m-%d %H:%M} UTC"
        if not live:
            return f"historical data, newest candle {when} ({age_text(self.age)} old); freshness is judged only with a live feed (MEM_CANDLES_LIVE=1)"
        verdict = "within" if self.fresh else "older than"
        return f"newest {self.symbol} candle opened {age_text(self.age)} ago ({when}), {verdict} the {age_text(self.max_lag)} allowed"


def age_text(age: pd.Timedelta) -> str:
    """An age as a person reads it: "290 days", "1 day 5 h", "3 h 12 min", "12 min", "40 s"."""
    seconds = max(age.total_seconds(), 0.0)
    days, rest = divmod(int(seconds), 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes = rest // 60
    if days >= 2:
        return f"{days} days"
    if days == 1:
        return f"1 day {hours} h" if hours else "1 day"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return f"{seconds:.0f} s"


def assess(
    newest: Mapping[str, pd.Timestamp], symbols: Iterable[str], now: pd.Timestamp, max_lag: pd.Timedelta
) -> list[Freshness]:
    """The freshness of each of ``symbols`` at ``now`` given the newest open time per symbol."""
    out = []
    for symbol in symbols:
        ts = newest.get(symbol)
        out.append(Freshness(symbol, ts, None if ts is None else now - ts, max_lag))
    return out


def check_name(symbol: str) -> str:
    return "fresh_" + re.sub(r"\W", "_", symbol)


def build_freshness_checks(
    symbols: Sequence[str], max_lag_minutes: float, live: bool = True
) -> dg.AssetChecksDefinition:
    """The ``fresh_<SYMBOL>`` checks: a stale symbol fails at ERROR when ``live``, else WARN."""
    lag = pd.Timedelta(minutes=max_lag_minutes)
    severity = dg.AssetCheckSeverity.ERROR if live else dg.AssetCheckSeverity.WARN
    mode = "" if live else " Historical data (no live feed, MEM_CANDLES_LIVE): an older candle only warns."
    specs = [
        dg.AssetCheckSpec(
            check_name(s),
            asset=CANDLES,
            description=f"The newest {s} candle opened at most {age_text(lag)} ago.{mode}",
        )
        for s in symbols
    ]

    @dg.multi_asset_check(
        name="candles_freshness",
        specs=specs,
        description=f"Per symbol: the newest candle in QuestDB opened within {age_text(lag)} of now.{mode}",
    )
    def candles_freshness(
        context: dg.AssetCheckExecutionContext, questdb: QuestDBResource
    ) -> Iterable[dg.AssetCheckResult]:
        now = pd.Timestamp.now(tz="UTC")
        newest = newest_candle_times(questdb.settings(), list(symbols))
        for f in assess(newest, symbols, now, lag):
            yield dg.AssetCheckResult(
                asset_key=CANDLES,
                check_name=check_name(f.symbol),
                passed=f.fresh,
                severity=severity,
                description=f.describe(live),
                metadata={
                    "newest_ts": dg.MetadataValue.text(f.newest.isoformat() if f.newest is not None else "none"),
                    "age": dg.MetadataValue.text(age_text(f.age) if f.age is not None else "no candles"),
                    "age_minutes": dg.MetadataValue.float(
                        f.age.total_seconds() / 60.0 if f.age is not None else float("nan")
                    ),
                    "max_lag_minutes": dg.MetadataValue.float(float(max_lag_minutes)),
                    "live_feed": dg.MetadataValue.bool(live),
                    "checked_at": dg.MetadataValue.text(now.isoformat()),
                },
            )

    return candles_freshness


def build_freshness_job(checks: dg.AssetChecksDefinition) -> AssetJob:
    return dg.define_asset_job(
        FRESHNESS_JOB,
        selection=dg.AssetSelection.checks(checks),
        description="Check how fresh every symbol's candles in QuestDB are (no materialisation).",
    )


def build_freshness_schedule(job: AssetJob, live: bool = True) -> dg.ScheduleDefinition:
    """Every 10 minutes; on by default only with a live feed (on historical data each run would
    only repeat how old the data is)."""
    return dg.ScheduleDefinition(
        name="candles_freshness",
        job=job,
        cron_schedule="*/10 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if live else dg.DefaultScheduleStatus.STOPPED,
        description="Every 10 minutes: is the newest candle of every symbol recent enough?"
        + ("" if live else " Off by default: no live feed is configured (MEM_CANDLES_LIVE=1 turns it on)."),
    )
