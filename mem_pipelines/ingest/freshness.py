"""Freshness of ``candles``: per symbol, is the newest stored candle recent enough to train on today?

One asset check per symbol (``fresh_<SYMBOL>`` on ``candles``) passes when the newest candle of
the symbol in QuestDB opened at most ``max_lag`` ago (``MEM_CANDLES_MAX_LAG_MINUTES``, default
30: six 5-minute bars). The checks read QuestDB directly (one ``LATEST ON`` query for every
symbol), so they run on their own: ``candles_freshness_job`` every 10 minutes
(``candles_freshness`` schedule), and in every run that materialises ``candles`` (after it).
:func:`assess` is the rule, pure.
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

    def describe(self) -> str:
        if self.newest is None or self.age is None:
            return f"no candles of {self.symbol} in QuestDB"
        minutes = self.age.total_seconds() / 60.0
        verdict = "within" if self.fresh else "older than"
        return f"newest {self.symbol} candle opened {minutes:.1f} min ago ({self.newest.isoformat()}), {verdict} the {self.max_lag.total_seconds() / 60:g} min allowed"


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


def build_freshness_checks(symbols: Sequence[str], max_lag_minutes: float) -> dg.AssetChecksDefinition:
    lag = pd.Timedelta(minutes=max_lag_minutes)
    specs = [
        dg.AssetCheckSpec(
            check_name(s),
            asset=CANDLES,
            description=f"The newest {s} candle opened at most {max_lag_minutes:g} minutes ago.",
        )
        for s in symbols
    ]

    @dg.multi_asset_check(
        name="candles_freshness",
        specs=specs,
        description=f"Per symbol: the newest candle in QuestDB opened within {max_lag_minutes:g} minutes of now.",
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
                description=f.describe(),
                metadata={
                    "newest_ts": dg.MetadataValue.text(f.newest.isoformat() if f.newest is not None else "none"),
                    "age_minutes": dg.MetadataValue.float(
                        f.age.total_seconds() / 60.0 if f.age is not None else float("nan")
                    ),
                    "max_lag_minutes": dg.MetadataValue.float(float(max_lag_minutes)),
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


def build_freshness_schedule(job: AssetJob) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name="candles_freshness",
        job=job,
        cron_schedule="*/10 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Every 10 minutes: is the newest candle of every symbol recent enough?",
    )
