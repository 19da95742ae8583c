"""Asset checks of the training data and split. Blocking: a failure stops the run before the
model or the gate, so nothing is promoted from bad data."""

from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from mem_core.feature_sets import SEED
from mem_core.labels import HORIZON
from mem_pipelines.training.assets import reversal_model, training_dataset

#: Sane bounds for the share of reversals (30.5% on the shared data with k = 0.75).
POSITIVE_RATE_BOUNDS = (0.05, 0.60)


@dg.asset_check(asset=training_dataset, blocking=True, description="no NaN or infinite feature values")
def features_are_finite(training_dataset: pd.DataFrame) -> dg.AssetCheckResult:
    values = SEED.matrix(training_dataset)
    bad = ~np.isfinite(values)
    per_feature = {name: int(n) for name, n in zip(SEED.names, bad.sum(axis=0)) if n}
    return dg.AssetCheckResult(
        passed=not per_feature,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"non_finite_per_feature": per_feature, "rows": len(training_dataset)},
    )


@dg.asset_check(asset=training_dataset, blocking=True, description="label positive rate within sane bounds")
def label_rate_is_sane(training_dataset: pd.DataFrame) -> dg.AssetCheckResult:
    rate = float(training_dataset["label"].mean()) if len(training_dataset) else float("nan")
    lo, hi = POSITIVE_RATE_BOUNDS
    return dg.AssetCheckResult(
        passed=bool(lo <= rate <= hi),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"positive_rate": rate, "lower": lo, "upper": hi},
    )


@dg.asset_check(
    asset=reversal_model,
    blocking=True,
    description="training and holdout times do not overlap; purge gap >= label horizon",
    additional_ins={"training_dataset": dg.AssetIn()},
)
def holdout_is_purged(reversal_model: dict[str, Any], training_dataset: pd.DataFrame) -> dg.AssetCheckResult:
    ts = pd.to_datetime(training_dataset["ts"], utc=True)
    train_end = pd.Timestamp(reversal_model["train_end"])
    holdout_start = pd.Timestamp(reversal_model["holdout_start"])
    bar = pd.Timedelta(seconds=reversal_model["bar_seconds"])
    purged_rows = int(((ts > train_end) & (ts < holdout_start)).sum())
    gap_bars = (holdout_start - train_end) / bar - 1  # candles strictly between the two parts
    horizon = int(reversal_model.get("horizon", HORIZON))
    passed = train_end < holdout_start and gap_bars >= horizon
    return dg.AssetCheckResult(
        passed=bool(passed),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "train_end": train_end.isoformat(),
            "holdout_start": holdout_start.isoformat(),
            "gap_candles": float(gap_bars),
            "horizon": horizon,
            "train_rows": reversal_model["train_rows"],
            "holdout_rows": reversal_model["holdout_rows"],
            "purged_rows": purged_rows,
        },
    )


CHECKS = [features_are_finite, label_rate_is_sane, holdout_is_purged]
