"""Walk-forward (rolling origin) evaluation of a reversal model (pure: no I/O).

Fold ``k`` tests on one period and trains on the ``train_days`` before it, minus a **purge** of
the label horizon (a training label looks ``horizon`` candles ahead, so its last close must be
before the test period) and an **embargo** (a further gap, so that the last training days and the
first test days do not share a market episode). Folds move forward by one test period: every test
row is scored by a model that saw only earlier candles. Skill per fold and pooled over all folds
comes from :mod:`mem_pipelines.lib.skill`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from mem_pipelines.lib.skill import DEFAULT_RESAMPLES, SkillReport, skill_report

CANDLE = pd.Timedelta(minutes=5)
DEFAULT_EMBARGO = pd.Timedelta(days=1)


class Classifier(Protocol):
    def fit(self, X: np.ndarray, y: np.ndarray) -> object: ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Fold:
    """Training rows have ``train_start <= ts <= train_end``; test rows ``test_start <= ts < test_end``."""

    index: int
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp

    @property
    def label(self) -> str:
        return f"{self.test_start:%Y-%m-%d}..{self.test_end - pd.Timedelta(seconds=1):%Y-%m-%d}"


def _gap(horizon: int, embargo: pd.Timedelta) -> pd.Timedelta:
    # the label of the row at t reads the closes of t+1..t+horizon: the last one closes at
    # t + (horizon + 1) candles
    return (horizon + 1) * CANDLE + embargo


def _fold(
    index: int, test_start: pd.Timestamp, test_end: pd.Timestamp, train_days: float, horizon: int, embargo: pd.Timedelta
) -> Fold:
    train_end = test_start - _gap(horizon, embargo)
    return Fold(index, train_end - pd.Timedelta(days=train_days), train_end, test_start, test_end)


def rolling_folds(
    first: pd.Timestamp,
    last: pd.Timestamp,
    folds: int = 5,
    train_days: float = 90.0,
    horizon: int = 10,
    embargo: pd.Timedelta = DEFAULT_EMBARGO,
) -> list[Fold]:
    """``folds`` equal test periods at the end of ``[first, last]``, each trained on up to
    ``train_days`` before it (never before ``first``)."""
    if folds < 1:
        raise ValueError("folds must be >= 1")
    first, last = pd.Timestamp(first), pd.Timestamp(last)
    span = (last + CANDLE) - first
    test_len = (span - pd.Timedelta(days=train_days) - _gap(horizon, embargo)) / folds
    if test_len <= pd.Timedelta(days=1):
        raise ValueError(
            f"{span} of candles is too short for {folds} folds after {train_days} training days "
            f"(each test period would be {test_len})"
        )
    end = last + CANDLE
    out = []
    for k in range(folds):
        test_start = end - (folds - k) * test_len
        fold = _fold(k, test_start, test_start + test_len, train_days, horizon, embargo)
        out.append(Fold(k, max(fold.train_start, first), fold.train_end, fold.test_start, fold.test_end))
    return out


def monthly_folds(
    first_test_month: str | pd.Timestamp,
    months: int,
    train_days: float = 180.0,
    horizon: int = 10,
    embargo: pd.Timedelta = DEFAULT_EMBARGO,
) -> list[Fold]:
    """One fold per calendar month (UTC) from ``first_test_month``."""
    starts = pd.date_range(pd.Timestamp(first_test_month, tz="UTC").normalize(), periods=months + 1, freq="MS")
    return [_fold(k, starts[k], starts[k + 1], train_days, horizon, embargo) for k in range(months)]


@dataclass(frozen=True)
class FoldResult:
    fold: Fold
    train_rows: int
    base_rate: float
    skill: SkillReport


@dataclass(frozen=True)
class WalkForward:
    folds: tuple[FoldResult, ...]
    pooled: SkillReport

    def table(self) -> pd.DataFrame:
        """One row per fold and a pooled row: the statistics with their 95% intervals."""
        rows = []
        for r in self.folds:
            rows.append({"fold": r.fold.label, "train_rows": r.train_rows, **r.skill.flat()})
        rows.append({"fold": "pooled", "train_rows": sum(r.train_rows for r in self.folds), **self.pooled.flat()})
        return pd.DataFrame(rows)

    def folds_skilful(self) -> int:
        return sum(r.skill.skilful() for r in self.folds)

    def summary(self) -> dict[str, float]:
        gains = [r.skill["log_loss_gain_mnat"] for r in self.folds]
        aucs = [r.skill["roc_auc"] for r in self.folds]
        return {
            "walk_forward_folds": float(len(self.folds)),
            "walk_forward_folds_gain_positive": float(sum(g > 0 for g in gains)),
            "walk_forward_folds_gain_ci_above_zero": float(self.folds_skilful()),
            "walk_forward_min_log_loss_gain_mnat": float(min(gains)),
            "walk_forward_median_roc_auc": float(np.median(aucs)),
            "walk_forward_pooled_log_loss_gain_mnat": self.pooled["log_loss_gain_mnat"],
            "walk_forward_pooled_log_loss_gain_ci_low": self.pooled.intervals["log_loss_gain_mnat"].low,
            "walk_forward_pooled_roc_auc": self.pooled["roc_auc"],
            "walk_forward_pooled_brier_skill": self.pooled["brier_skill"],
        }


def walk_forward(
    rows: pd.DataFrame,
    feature_names: Sequence[str],
    make_model: Callable[[], Classifier],
    folds: Sequence[Fold],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> WalkForward:
    """Fit a fresh model per fold on ``rows`` (columns ``ts``, ``label`` and the features) and
    score the fold's test rows; a fold without training or test rows is an error."""
    ts = pd.to_datetime(rows["ts"], utc=True)
    X = rows[list(feature_names)].to_numpy(dtype="float64")
    y = rows["label"].to_numpy(dtype="int64")
    results, pooled_y, pooled_p, pooled_ts, pooled_base = [], [], [], [], []
    for fold in folds:
        train = ((ts >= fold.train_start) & (ts <= fold.train_end)).to_numpy()
        test = ((ts >= fold.test_start) & (ts < fold.test_end)).to_numpy()
        if train.sum() == 0 or test.sum() == 0:
            raise ValueError(f"fold {fold.label}: {int(train.sum())} training and {int(test.sum())} test rows")
        if len(np.unique(y[train])) < 2:
            raise ValueError(f"fold {fold.label}: the training rows hold one class only")
        model = make_model()
        model.fit(X[train], y[train])
        proba = np.asarray(model.predict_proba(X[test]))[:, 1]
        base = float(y[train].mean())
        report = skill_report(y[test], proba, ts[test], base, resamples, seed)
        results.append(FoldResult(fold, int(train.sum()), base, report))
        pooled_y.append(y[test])
        pooled_p.append(proba)
        pooled_ts.append(ts[test].to_numpy())
        pooled_base.append(np.full(int(test.sum()), base))
    pooled = skill_report(
        np.concatenate(pooled_y),
        np.concatenate(pooled_p),
        np.concatenate(pooled_ts),
        np.concatenate(pooled_base),
        resamples,
        seed,
    )
    return WalkForward(tuple(results), pooled)
