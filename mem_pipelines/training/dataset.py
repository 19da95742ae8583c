"""The training dataset: per-symbol features and labels joined on ``ts``, cut to a time window,
all symbols stacked and ordered by time; its lineage (a content hash) and its time split."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import pandas as pd

from mem_core import labels as label_defs
from mem_core.feature_sets import SEED, FeatureSet
from mem_pipelines.lib.evaluation import HOLDOUT_FRACTION, Split, time_split


def build_dataset(
    per_symbol: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]],
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    feature_set: FeatureSet = SEED,
) -> pd.DataFrame:
    """``ts, symbol, <the set's features>, label, direction`` over ``[start, end)``, ordered by time."""
    parts = []
    for symbol, (feats, labels) in sorted(per_symbol.items()):
        joined = feats.merge(labels, on="ts", how="inner")
        if start is not None:
            joined = joined[joined["ts"] >= start]
        if end is not None:
            joined = joined[joined["ts"] < end]
        joined.insert(1, "symbol", symbol)
        parts.append(joined)
    if not parts:
        raise ValueError("no symbols to build a dataset from")
    data = pd.concat(parts, ignore_index=True)
    data = data.sort_values(["ts", "symbol"], kind="stable").reset_index(drop=True)
    return data[["ts", "symbol", *feature_set.names, "label", "direction"]]


def data_hash(dataset: pd.DataFrame, feature_set: FeatureSet = SEED) -> str:
    """sha256 over the rows the model sees (ts, symbol, features, label)."""
    cols = ["ts", "symbol", *feature_set.names, "label"]
    hashed = pd.util.hash_pandas_object(dataset[cols], index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def lineage(dataset: pd.DataFrame, dagster_run_id: str | None = None, feature_set: FeatureSet = SEED) -> dict[str, str]:
    """What the dataset covers (symbols, first and last labelled candle, rows, hash)."""
    return {
        "data.symbols": ",".join(sorted(dataset["symbol"].unique())),
        "data.start": pd.Timestamp(dataset["ts"].min()).isoformat(),
        "data.end": pd.Timestamp(dataset["ts"].max()).isoformat(),
        "data.rows": str(len(dataset)),
        "data.sha256": data_hash(dataset, feature_set),
        "dagster.run_id": dagster_run_id or "",
    }


def split_dataset(
    dataset: pd.DataFrame, holdout_fraction: float = HOLDOUT_FRACTION, horizon: int = label_defs.HORIZON
) -> Split:
    """The time split with a purge of ``horizon`` timestamps (``lib.evaluation.time_split``)."""
    return time_split(dataset["ts"], holdout_fraction, purge=horizon)
