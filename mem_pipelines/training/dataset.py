"""The training dataset: per-symbol features and labels joined on ``ts``, cut to a time window,
all symbols stacked and ordered by time; its gaps, its lineage (a content hash) and its time split.

Features are the columns of every known feature set (``feature_frame``), so a model reads its
own set and the gate can score a champion trained on another set on the same rows.

Gaps: a feature row reads the ``lookback`` candles up to it and its label the ``horizon``
candles after it. A row whose candles ``[t - (lookback-1), t + horizon]`` include a missing
5-minute slot would be computed as if the candles around the gap were adjacent, so it is
dropped (``DatasetBuild.dropped`` counts them per symbol; ``gaps`` lists the gaps that reach
into the window).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mem_core import feature_sets
from mem_core import labels as label_defs
from mem_core.feature_sets import FeatureSet
from mem_pipelines.lib.evaluation import HOLDOUT_FRACTION, Split, time_split

CANDLE = pd.Timedelta(minutes=5)
_NOT_FEATURES = ("ts", "symbol", "label", "direction")


def known_sets() -> list[FeatureSet]:
    """Every feature set this code computes."""
    return list(feature_sets.FEATURE_SETS.values())


def _largest_first(sets: Iterable[FeatureSet] | None) -> list[FeatureSet]:
    return sorted(known_sets() if sets is None else sets, key=lambda s: -len(s.names))


def all_feature_names(sets: Iterable[FeatureSet] | None = None) -> list[str]:
    """The columns ``feature_frame`` gives, in its order."""
    return list(dict.fromkeys(n for fs in _largest_first(sets) for n in fs.names))


def feature_frame(candles: pd.DataFrame, sets: Iterable[FeatureSet] | None = None) -> pd.DataFrame:
    """``ts`` + the columns of every set in ``sets`` (default: all known), each column once, for
    one symbol's candles; the rows before the first one where every column is defined (the
    warm-up) are dropped. A set whose columns another set already gave is not computed again."""
    out: pd.DataFrame | None = None
    have: list[str] = []
    for fs in _largest_first(sets):
        new = [n for n in fs.names if n not in have]
        if not new:
            continue
        frame = fs.frame(candles)[["ts", *new]]
        out = frame if out is None else out.merge(frame, on="ts", how="outer")
        have.extend(new)
    if out is None:
        raise ValueError("no feature set to compute")
    out = out.sort_values("ts", kind="stable").reset_index(drop=True)
    defined = out[have].notna().all(axis=1).to_numpy()
    first = int(np.argmax(defined)) if defined.any() else len(out)
    return out.iloc[first:].reset_index(drop=True)


def feature_columns(dataset: pd.DataFrame) -> list[str]:
    """The feature columns of a dataset (everything but ts, symbol, label, direction)."""
    return [c for c in dataset.columns if c not in _NOT_FEATURES]


def row_lookback(sets: Iterable[FeatureSet] | None = None) -> int:
    """Candles a dataset row reads up to and including its own: the longest feature history of
    ``sets`` (default: all known) or the label's σ window, whichever is longer."""
    histories = [fs.history for fs in (known_sets() if sets is None else sets)]
    return max([label_defs.VOL_WINDOW + 1, *histories])


@dataclass(frozen=True)
class Gap:
    """Missing 5-minute slots between two stored candles of one symbol."""

    first_missing: pd.Timestamp
    last_missing: pd.Timestamp

    @property
    def slots(self) -> int:
        return int((self.last_missing - self.first_missing) / CANDLE) + 1

    def affected(self, lookback: int, horizon: int) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First and last row time whose candles ``[t-(lookback-1), t+horizon]`` reach the gap."""
        return self.first_missing - horizon * CANDLE, self.last_missing + (lookback - 1) * CANDLE


def find_gaps(ts: pd.Series | Sequence[pd.Timestamp]) -> list[Gap]:
    """The gaps in ascending candle open times."""
    stamps = pd.to_datetime(pd.Series(ts), utc=True).reset_index(drop=True)
    if len(stamps) < 2:
        return []
    step = stamps.diff()
    jumps = np.flatnonzero((step > CANDLE).to_numpy())
    return [Gap(stamps[i - 1] + CANDLE, stamps[i] - CANDLE) for i in jumps]


def spans_gap(ts: pd.Series, gaps: Sequence[Gap], lookback: int, horizon: int) -> np.ndarray:
    """True for the rows (times ``ts``, ascending) whose feature or label candles reach a gap."""
    out = np.zeros(len(ts), dtype=bool)
    if not gaps or len(ts) == 0:
        return out
    index = pd.DatetimeIndex(pd.to_datetime(ts, utc=True))
    for gap in gaps:
        lo, hi = gap.affected(lookback, horizon)
        out[index.searchsorted(lo, side="left") : index.searchsorted(hi, side="right")] = True
    return out


@dataclass(frozen=True)
class SymbolGaps:
    """A gap that reaches into the window and the window's rows it removed."""

    symbol: str
    gap: Gap
    rows_dropped: int


@dataclass(frozen=True)
class DatasetBuild:
    data: pd.DataFrame
    #: Rows of the window dropped per symbol because they reach a gap.
    dropped: dict[str, int] = field(default_factory=dict)
    gaps: list[SymbolGaps] = field(default_factory=list)


def build_dataset(
    per_symbol: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]],
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    feature_set: FeatureSet | None = None,
) -> pd.DataFrame:
    """``ts, symbol, <feature columns>, label, direction`` over ``[start, end)``, ordered by time
    (candles without gaps; ``assemble_dataset`` also drops the rows that reach a gap)."""
    lookback = row_lookback([feature_set]) if feature_set is not None else None
    return assemble_dataset(per_symbol, start, end, lookback=lookback).data


def assemble_dataset(
    per_symbol: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]],
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    gaps: Mapping[str, Sequence[Gap]] | None = None,
    lookback: int | None = None,
    horizon: int = label_defs.HORIZON,
) -> DatasetBuild:
    """``build_dataset`` without the rows that reach one of the symbol's ``gaps``, with what was
    dropped and the gaps met (for the data-quality metadata)."""
    lookback = row_lookback() if lookback is None else lookback
    parts, dropped, reported = [], {}, []
    columns: list[str] | None = None
    for symbol, (feats, labels) in sorted(per_symbol.items()):
        joined = feats.merge(labels, on="ts", how="inner")
        if start is not None:
            joined = joined[joined["ts"] >= start]
        if end is not None:
            joined = joined[joined["ts"] < end]
        joined = joined.reset_index(drop=True)
        symbol_gaps = list((gaps or {}).get(symbol, ()))
        bad = spans_gap(joined["ts"], symbol_gaps, lookback, horizon)
        for gap in symbol_gaps:
            hit = int(spans_gap(joined["ts"], [gap], lookback, horizon).sum())
            if hit or _inside(gap, start, end):
                reported.append(SymbolGaps(symbol, gap, hit))
        dropped[symbol] = int(bad.sum())
        joined = joined[~bad]
        joined.insert(1, "symbol", symbol)
        names = [c for c in feats.columns if c != "ts"]
        if columns is None:
            columns = names
        elif set(names) != set(columns):
            raise ValueError(f"{symbol} has features {names}, other symbols {columns}")
        parts.append(joined)
    if not parts or columns is None:
        raise ValueError("no symbols to build a dataset from")
    data = pd.concat(parts, ignore_index=True)
    data = data.sort_values(["ts", "symbol"], kind="stable").reset_index(drop=True)
    return DatasetBuild(data[["ts", "symbol", *columns, "label", "direction"]], dropped, reported)


def _inside(gap: Gap, start: pd.Timestamp | None, end: pd.Timestamp | None) -> bool:
    return (start is None or gap.last_missing >= start) and (end is None or gap.first_missing < end)


def data_hash(dataset: pd.DataFrame) -> str:
    """sha256 over the rows the models see (ts, symbol, every feature, label)."""
    cols = ["ts", "symbol", *feature_columns(dataset), "label"]
    hashed = pd.util.hash_pandas_object(dataset[cols], index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def lineage(dataset: pd.DataFrame, dagster_run_id: str | None = None) -> dict[str, str]:
    """What the dataset covers (symbols, first and last labelled candle, rows, hash)."""
    return {
        "data.symbols": ",".join(sorted(dataset["symbol"].unique())),
        "data.start": pd.Timestamp(dataset["ts"].min()).isoformat(),
        "data.end": pd.Timestamp(dataset["ts"].max()).isoformat(),
        "data.rows": str(len(dataset)),
        "data.sha256": data_hash(dataset),
        "dagster.run_id": dagster_run_id or "",
    }


def split_dataset(
    dataset: pd.DataFrame, holdout_fraction: float = HOLDOUT_FRACTION, horizon: int = label_defs.HORIZON
) -> Split:
    """The time split with a purge of ``horizon`` timestamps (``lib.evaluation.time_split``)."""
    return time_split(dataset["ts"], holdout_fraction, purge=horizon)
