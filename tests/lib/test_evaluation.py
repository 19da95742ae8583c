"""Time-ordered split with a purge gap; metrics with the majority baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mem_pipelines.lib.evaluation import baseline_accuracy, evaluate, time_split


def _multi_symbol_ts(n: int, symbols: int = 3) -> pd.Series:
    stamps = pd.date_range("2025-01-01", periods=n, freq="5min", tz="UTC")
    return pd.Series(np.repeat(stamps, symbols))  # several symbols per timestamp


def test_holdout_is_the_last_fifth_in_time_with_a_purge_gap() -> None:
    ts = _multi_symbol_ts(1000)
    split = time_split(ts, 0.2, purge=10)
    train_ts, hold_ts = ts.iloc[split.train], ts.iloc[split.holdout]
    assert hold_ts.min() == split.holdout_start and train_ts.max() == split.train_end
    assert hold_ts.nunique() == 200 and train_ts.nunique() == 790
    gap = (hold_ts.min() - train_ts.max()) / pd.Timedelta(minutes=5)
    assert gap == 11  # 10 purged timestamps between the last training and first holdout candle
    assert set(train_ts).isdisjoint(set(hold_ts))
    assert len(split.holdout) == 600  # every symbol at a holdout time is in the holdout


def test_split_does_not_shuffle_unsorted_rows() -> None:
    ts = _multi_symbol_ts(100, 2).sample(frac=1.0, random_state=0).reset_index(drop=True)
    split = time_split(ts, 0.2, purge=5)
    assert ts.iloc[split.train].max() < ts.iloc[split.holdout].min()


def test_too_few_timestamps_raise() -> None:
    with pytest.raises(ValueError):
        time_split(_multi_symbol_ts(10), 0.2, purge=10)


def test_metrics_and_majority_baseline() -> None:
    y = np.array([0, 0, 0, 1, 1, 0, 0, 1, 0, 0])
    proba = np.array([0.1, 0.2, 0.6, 0.7, 0.4, 0.3, 0.2, 0.9, 0.1, 0.2])
    m = evaluate(y, proba)
    assert m.accuracy == pytest.approx(0.8)
    assert m.baseline_accuracy == pytest.approx(0.7) == baseline_accuracy(y)
    assert m.confusion == ((6, 1), (1, 2))
    assert m.precision == pytest.approx(2 / 3) and m.recall == pytest.approx(2 / 3)
    assert 0.0 <= m.roc_auc <= 1.0
    assert evaluate(np.zeros(4), np.full(4, 0.2)).roc_auc is None
