"""Skill of reversal probabilities against a constant base rate, with day-block bootstrap CIs (pure).

The label is ~30% positive, so accuracy at a 0.5 threshold rarely beats "never a reversal" and
says little about skill. What a probability model is judged on here:

* **log-loss gain**: log loss of always predicting the training base rate minus the model's, in
  thousandths of a nat (``> 0`` = better than a constant);
* **Brier skill score**: ``1 - Brier(model) / Brier(constant)``;
* **top-decile precision and lift**: the positive rate among the rows scored in the top 10%
  (threshold = the 90th percentile of these rows' scores), and that over the rows' positive rate;
* accuracy beside the majority baseline, and ROC-AUC.

Confidence intervals resample whole UTC days with replacement (a day-block bootstrap: rows of
one day share a market regime, so resampling rows would make the intervals too narrow). Every
statistic is a ratio of per-day sums, so a resample is a matrix product. ROC-AUC's resamples use
per-day histograms over ``AUC_BINS`` score-rank bins (ties within a bin count one half); its
point value is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

AUC_BINS: int = 1000
DEFAULT_RESAMPLES: int = 1000
_CLIP: float = 1e-15

#: Statistics of a :class:`SkillReport`, in display order.
STATISTICS: tuple[str, ...] = (
    "accuracy",
    "baseline_accuracy",
    "accuracy_over_baseline",
    "roc_auc",
    "log_loss",
    "log_loss_constant",
    "log_loss_gain_mnat",
    "brier_skill",
    "top_decile_precision",
    "top_decile_lift",
    "positive_rate",
)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0.0 or self.high < 0.0


@dataclass(frozen=True)
class SkillReport:
    """Point values and 95% day-block bootstrap intervals of :data:`STATISTICS`."""

    rows: int
    days: int
    base_rate: float
    values: dict[str, float]
    intervals: dict[str, Interval]

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    @property
    def log_loss_gain_mnat(self) -> float:
        return self.values["log_loss_gain_mnat"]

    def skilful(self) -> bool:
        """Better than the constant base rate: log-loss gain > 0 with its CI's lower bound > 0."""
        return self.values["log_loss_gain_mnat"] > 0.0 and self.intervals["log_loss_gain_mnat"].low > 0.0

    def flat(self, prefix: str = "") -> dict[str, float]:
        """Values and interval bounds as flat floats (MLflow metrics, table rows)."""
        out: dict[str, float] = {f"{prefix}rows": float(self.rows), f"{prefix}days": float(self.days)}
        for name in STATISTICS:
            out[f"{prefix}{name}"] = self.values[name]
            out[f"{prefix}{name}_ci_low"] = self.intervals[name].low
            out[f"{prefix}{name}_ci_high"] = self.intervals[name].high
        return out


def _day_index(ts: pd.Series | np.ndarray) -> np.ndarray:
    days = pd.to_datetime(pd.Series(np.asarray(ts)), utc=True).dt.floor("D").to_numpy()
    return np.unique(days, return_inverse=True)[1]


def _resample_weights(days: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, days) counts: how often each day is drawn in each resample."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, days, size=(resamples, days))
    weights = np.zeros((resamples, days))
    np.add.at(weights, (np.repeat(np.arange(resamples), days), draws.ravel()), 1.0)
    return weights


def _stats(sums: np.ndarray, pos_hist: np.ndarray, neg_hist: np.ndarray) -> dict[str, np.ndarray]:
    n, positives = sums[:, 0], sums[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        pos_total, neg_total = pos_hist.sum(1), neg_hist.sum(1)
        below = np.cumsum(neg_hist, 1) - neg_hist
        auc = (pos_hist * (below + 0.5 * neg_hist)).sum(1) / (pos_total * neg_total)
        rate = positives / n
        top_precision = sums[:, 7] / sums[:, 6]
        return {
            "accuracy": sums[:, 8] / n,
            "baseline_accuracy": sums[:, 9] / n,
            "accuracy_over_baseline": (sums[:, 8] - sums[:, 9]) / n,
            "roc_auc": auc,
            "log_loss": sums[:, 2] / n,
            "log_loss_constant": sums[:, 3] / n,
            "log_loss_gain_mnat": 1000.0 * (sums[:, 3] - sums[:, 2]) / n,
            "brier_skill": 1.0 - sums[:, 4] / sums[:, 5],
            "top_decile_precision": top_precision,
            "top_decile_lift": top_precision / rate,
            "positive_rate": rate,
        }


def skill_report(
    y_true: np.ndarray,
    proba: np.ndarray,
    ts: pd.Series | np.ndarray,
    base_rate: float | np.ndarray,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> SkillReport:
    """Skill of ``proba`` (probability of a reversal) on rows at times ``ts`` against the constant
    ``base_rate`` (the positive rate of the model's training rows; one per row when pooling folds
    whose models saw different training rows)."""
    y = np.asarray(y_true, dtype="float64")
    p = np.clip(np.asarray(proba, dtype="float64"), _CLIP, 1.0 - _CLIP)
    if len(y) == 0 or len(y) != len(p) or len(y) != len(ts):
        raise ValueError(f"need equally many labels, probabilities and times, got {len(y)}, {len(p)}, {len(ts)}")
    b = np.broadcast_to(np.asarray(base_rate, dtype="float64"), y.shape)
    if not ((b > 0.0) & (b < 1.0)).all():
        raise ValueError(f"base_rate must be in (0, 1), got {base_rate}")
    majority = 1.0 if y.mean() > 0.5 else 0.0
    top = (p >= np.quantile(p, 0.9)).astype("float64")
    columns = np.column_stack(
        [
            np.ones_like(y),
            y,
            -(y * np.log(p) + (1 - y) * np.log(1 - p)),
            -(y * np.log(b) + (1 - y) * np.log(1 - b)),
            (p - y) ** 2,
            (b - y) ** 2,
            top,
            top * y,
            ((p >= 0.5) == (y == 1)).astype("float64"),
            (y == majority).astype("float64"),
        ]
    )
    day = _day_index(ts)
    days = int(day.max()) + 1
    per_day = np.zeros((days, columns.shape[1]))
    np.add.at(per_day, day, columns)
    rank = pd.Series(p).rank(method="average", pct=True).to_numpy()
    score_bin = np.minimum((rank * AUC_BINS).astype(int), AUC_BINS - 1)
    pos_hist = np.zeros((days, AUC_BINS))
    neg_hist = np.zeros((days, AUC_BINS))
    np.add.at(pos_hist, (day, score_bin), y)
    np.add.at(neg_hist, (day, score_bin), 1.0 - y)

    point = {
        k: float(v[0]) for k, v in _stats(per_day.sum(0)[None], pos_hist.sum(0)[None], neg_hist.sum(0)[None]).items()
    }
    point["roc_auc"] = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")
    weights = _resample_weights(days, resamples, seed)
    boot = _stats(weights @ per_day, weights @ pos_hist, weights @ neg_hist)
    intervals = {
        k: Interval(float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5)))
        if np.isfinite(v).any()
        else Interval(float("nan"), float("nan"))
        for k, v in boot.items()
    }
    return SkillReport(rows=len(y), days=days, base_rate=float(b.mean()), values=point, intervals=intervals)


@dataclass(frozen=True)
class PairedComparison:
    """Challenger minus champion on one metric over the same rows (positive = challenger better)."""

    metric: str
    improvement: float
    interval: Interval
    p_value: float
    resamples: int


def paired_loss_comparison(
    y_true: np.ndarray,
    champion_proba: np.ndarray,
    challenger_proba: np.ndarray,
    ts: pd.Series | np.ndarray,
    metric: str,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> PairedComparison:
    """Paired day-block bootstrap of the mean per-row loss difference (champion - challenger).

    ``metric`` is ``log_loss`` (in thousandths of a nat) or ``brier``. The one-sided p-value is
    the share of resamples in which the challenger is not better (improvement <= 0), floored at
    ``1 / (resamples + 1)``.
    """
    y = np.asarray(y_true, dtype="float64")
    a = np.clip(np.asarray(champion_proba, dtype="float64"), _CLIP, 1.0 - _CLIP)
    b = np.clip(np.asarray(challenger_proba, dtype="float64"), _CLIP, 1.0 - _CLIP)
    if not (len(y) == len(a) == len(b) == len(ts)) or len(y) == 0:
        raise ValueError("paired predictions must cover the same rows")
    if metric == "log_loss":
        loss_a = -(y * np.log(a) + (1 - y) * np.log(1 - a))
        loss_b = -(y * np.log(b) + (1 - y) * np.log(1 - b))
        scale = 1000.0
    elif metric == "brier":
        loss_a, loss_b, scale = (a - y) ** 2, (b - y) ** 2, 1.0
    else:
        raise ValueError(f"metric must be 'log_loss' or 'brier', got {metric!r}")
    day = _day_index(ts)
    days = int(day.max()) + 1
    per_day = np.zeros((days, 2))
    np.add.at(per_day, day, np.column_stack([np.ones_like(y), scale * (loss_a - loss_b)]))
    boot_sums = _resample_weights(days, resamples, seed) @ per_day
    boot = boot_sums[:, 1] / boot_sums[:, 0]
    improvement = float(per_day[:, 1].sum() / per_day[:, 0].sum())
    p_value = max(float(np.mean(boot <= 0.0)), 1.0 / (resamples + 1))
    interval = Interval(float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5)))
    return PairedComparison(metric, improvement, interval, p_value, resamples)
