"""Data-quality checks of ``candles`` (a Great Expectations suite), one Dagster check per rule.

All rules run in one op (Great Expectations is imported once, lazily), yielding a result per
check. A failed check's metadata lists the offending rows (ts and OHLCV) and their count. The
checks that matter (``quality.BLOCKING_CHECKS``: every rule but the gap ratio) are blocking; a
symbol without candles fails ``has_rows``.
"""

from collections.abc import Iterable

import dagster as dg
import pandas as pd

from mem_pipelines.ingest.quality import BLOCKING_CHECKS, CHECKS, frame_markdown, run_quality_suite
from mem_pipelines.settings import DEFAULT_MAX_GAP_RATIO

INTERVAL_SECONDS = 300


def build_candle_checks(
    partitions_def: dg.PartitionsDefinition, max_gap_ratio: float = DEFAULT_MAX_GAP_RATIO
) -> dg.AssetChecksDefinition:
    specs = [
        dg.AssetCheckSpec(
            name,
            asset="candles",
            description=description,
            partitions_def=partitions_def,
            blocking=name in BLOCKING_CHECKS,
        )
        for name, description in CHECKS.items()
    ]

    @dg.multi_asset_check(
        name="candles_quality",
        specs=specs,
        ins={"candles": dg.AssetIn("candles")},
        description="Great Expectations suite over the candles of one symbol.",
    )
    def candles_quality(context: dg.AssetCheckExecutionContext, candles: pd.DataFrame) -> Iterable[dg.AssetCheckResult]:
        for outcome in run_quality_suite(candles, INTERVAL_SECONDS, max_gap_ratio):
            metadata: dict[str, object] = {"unexpected_count": outcome.unexpected_count, **outcome.metadata}
            if not outcome.passed and not outcome.offending.empty:
                metadata["offending_rows"] = dg.MetadataValue.md(frame_markdown(outcome.offending))
                metadata["first_offending_ts"] = outcome.offending["ts"].iloc[0].isoformat()
            yield dg.AssetCheckResult(
                asset_key="candles",
                check_name=outcome.name,
                passed=outcome.passed,
                metadata=metadata,
                description=outcome.description,
            )

    return candles_quality
