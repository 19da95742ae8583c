"""Walk-forward folds: purge, embargo, rolling origin, and skill per fold (pure units)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mem_pipelines.lib.walkforward import CANDLE, DEFAULT_EMBARGO, monthly_folds, rolling_folds, walk_forward


def test_rolling_folds_tile_the_end_of_the_span_with_a_purge_and_an_embargo() -> None:
    first = pd.Timestamp("2025-01-01", tz="UTC")
    last = pd.Timestamp("2025-06-29 23:55", tz="UTC")
    folds = rolling_folds(first, last, folds=5, train_days=60, horizon=10)
    assert len(folds) == 5
    assert folds[-1].test_end == last + CANDLE
    for a, b in zip(folds, folds[1:]):
        assert a.test_end == b.test_start  # consecutive, no overlap, no hole
    for f in folds:
        # the last training label reads closes up to train_end + 11 candles: all before the test
        assert f.train_end + 11 * CANDLE + DEFAULT_EMBARGO <= f.test_start
        assert f.train_start >= first
        assert f.test_end - f.test_start > pd.Timedelta(days=1)
    with pytest.raises(ValueError, match="too short"):
        rolling_folds(first, first + pd.Timedelta(days=30), folds=5, train_days=60)


def test_monthly_folds_follow_calendar_months() -> None:
    folds = monthly_folds("2025-07-01", 3, train_days=180)
    assert [f.test_start.month for f in folds] == [7, 8, 9]
    assert folds[1].test_end == pd.Timestamp("2025-09-01", tz="UTC")
    assert folds[0].train_end - folds[0].train_start == pd.Timedelta(days=180)


def _frame(days: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2025-01-01", periods=days * 288, freq="5min", tz="UTC")
    signal = rng.normal(size=len(ts))
    noise = rng.normal(size=len(ts))
    y = (rng.random(len(ts)) < 1 / (1 + np.exp(-(1.2 * signal - 1.0)))).astype(int)
    return pd.DataFrame({"ts": ts, "signal": signal, "noise": noise, "label": y})


def test_walk_forward_finds_a_planted_signal_in_every_fold_and_none_in_noise() -> None:
    rows = _frame()
    folds = rolling_folds(rows.ts.min(), rows.ts.max(), folds=5, train_days=40)
    result = walk_forward(rows, ["signal"], LogisticRegression, folds, resamples=200)
    assert len(result.folds) == 5
    assert result.folds_skilful() == 5
    assert result.pooled.skilful()
    table = result.table()
    assert list(table["fold"])[-1] == "pooled" and len(table) == 6
    summary = result.summary()
    assert summary["walk_forward_folds_gain_ci_above_zero"] == 5.0
    assert summary["walk_forward_median_roc_auc"] > 0.7

    noise_only = walk_forward(rows, ["noise"], LogisticRegression, folds, resamples=200)
    assert noise_only.pooled.intervals["log_loss_gain_mnat"].low < 0
    assert not noise_only.pooled.skilful()


def test_a_fold_never_trains_on_rows_inside_the_gap() -> None:
    rows = _frame(days=60)
    seen: list[int] = []

    class Recording(LogisticRegression):
        def fit(self, X, y, sample_weight=None):  # type: ignore[no-untyped-def]
            seen.append(len(X))
            return super().fit(X, y)

    folds = rolling_folds(rows.ts.min(), rows.ts.max(), folds=2, train_days=20)
    walk_forward(rows, ["signal"], Recording, folds, resamples=50)
    for f, n in zip(folds, seen):
        expected = int(((rows.ts >= f.train_start) & (rows.ts <= f.train_end)).sum())
        assert n == expected
        in_gap = int(((rows.ts > f.train_end) & (rows.ts < f.test_start)).sum())
        assert in_gap >= 288  # a day of embargo and the purge: rows that exist and were left out
