"""Honest evaluation of a reversal model (pure: no I/O).

* **Split**: time-ordered, never shuffled. The distinct timestamps of the dataset are ordered;
  the last ``holdout_fraction`` (20%) of them form the holdout, and the ``purge`` (= label
  horizon H) timestamps just before the holdout are dropped from training, so no training label
  (which looks H candles ahead) overlaps a holdout candle. With several symbols the split is by
  time, not by row: every symbol's rows at a holdout timestamp are in the holdout.
* **Metrics** on the holdout: accuracy, precision, recall, F1 (positive class = reversal),
  ROC-AUC (None when the holdout has one class), the majority-class baseline accuracy on the
  same rows (always predicting the more frequent class of those rows) and the confusion matrix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score

HOLDOUT_FRACTION: float = 0.2


@dataclass(frozen=True)
class Split:
    """Row positions (into the dataset as given) of the training and holdout rows."""

    train: np.ndarray
    holdout: np.ndarray
    train_end: pd.Timestamp
    holdout_start: pd.Timestamp
    purged_timestamps: int

    def summary(self) -> dict[str, object]:
        return {
            "train_rows": int(len(self.train)),
            "holdout_rows": int(len(self.holdout)),
            "train_end": self.train_end.isoformat(),
            "holdout_start": self.holdout_start.isoformat(),
            "purged_timestamps": self.purged_timestamps,
        }


def time_split(ts: pd.Series, holdout_fraction: float = HOLDOUT_FRACTION, purge: int = 10) -> Split:
    """Split rows by time: the last ``holdout_fraction`` of distinct timestamps is the holdout,
    the ``purge`` distinct timestamps before it are dropped."""
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError("holdout_fraction must be in (0, 1)")
    if purge < 0:
        raise ValueError("purge must be >= 0")
    stamps = np.sort(pd.unique(ts.to_numpy()))
    n = len(stamps)
    n_holdout = max(1, int(round(n * holdout_fraction)))
    cut = n - n_holdout
    train_stop = cut - purge
    if train_stop < 1:
        raise ValueError(f"{n} timestamps are too few for a holdout of {n_holdout} and a purge of {purge}")
    values = ts.to_numpy()
    holdout_start = stamps[cut]
    train_end = stamps[train_stop - 1]
    train = np.flatnonzero(values <= train_end)
    holdout = np.flatnonzero(values >= holdout_start)
    return Split(
        train=train,
        holdout=holdout,
        train_end=pd.Timestamp(train_end),
        holdout_start=pd.Timestamp(holdout_start),
        purged_timestamps=purge,
    )


@dataclass(frozen=True)
class Metrics:
    accuracy: float
    precision: float
    recall: float
    f1: float
    roc_auc: float | None
    baseline_accuracy: float
    positive_rate: float
    rows: int
    confusion: tuple[tuple[int, int], tuple[int, int]]  # [[tn, fp], [fn, tp]]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def scalars(self) -> dict[str, float]:
        """Numeric metrics (for MLflow ``log_metrics``); ROC-AUC omitted when undefined."""
        out = {
            "accuracy": self.accuracy,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "baseline_accuracy": self.baseline_accuracy,
            "accuracy_over_baseline": self.accuracy - self.baseline_accuracy,
            "positive_rate": self.positive_rate,
            "rows": float(self.rows),
        }
        if self.roc_auc is not None:
            out["roc_auc"] = self.roc_auc
        return out


def baseline_accuracy(y_true: np.ndarray) -> float:
    """Accuracy of always predicting the majority class of these rows."""
    y = np.asarray(y_true)
    if len(y) == 0:
        raise ValueError("no rows")
    p = float(np.mean(y == 1))
    return max(p, 1.0 - p)


def evaluate(y_true: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> Metrics:
    """Metrics of predicted reversal probabilities ``proba`` (column 1) against ``y_true``."""
    y = np.asarray(y_true).astype(int)
    p = np.asarray(proba, dtype="float64")
    if p.ndim == 2:
        p = p[:, 1]
    if len(y) == 0 or len(y) != len(p):
        raise ValueError(f"need equally many labels and predictions, got {len(y)} and {len(p)}")
    pred = (p >= threshold).astype(int)
    cm = confusion_matrix(y, pred, labels=[0, 1])
    auc = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else None
    return Metrics(
        accuracy=float(accuracy_score(y, pred)),
        precision=float(precision_score(y, pred, zero_division=0)),
        recall=float(recall_score(y, pred, zero_division=0)),
        f1=float(f1_score(y, pred, zero_division=0)),
        roc_auc=auc,
        baseline_accuracy=baseline_accuracy(y),
        positive_rate=float(y.mean()),
        rows=int(len(y)),
        confusion=((int(cm[0, 0]), int(cm[0, 1])), (int(cm[1, 0]), int(cm[1, 1]))),
    )
