"""The holdout plots a reviewer opens in MLflow (artifacts under ``plots/``): ROC curve,
reliability curve, confusion matrix, feature importances. Each is a matplotlib figure; the
caller logs it (``mlflow.log_figure``) and closes it."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mem_pipelines.lib.evaluation import Metrics

PLOTS_DIR = "plots"
#: Feature importances shown (the largest first).
TOP_FEATURES = 20


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def roc_figure(y: np.ndarray, proba: np.ndarray, title: str = ""):
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=90)
    if len(np.unique(y)) == 2:
        fpr, tpr, _ = roc_curve(y, proba)
        ax.plot(fpr, tpr, color="tab:blue", label=f"model (AUC {roc_auc_score(y, proba):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="no skill")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title or "ROC curve (holdout)", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def reliability_figure(y: np.ndarray, proba: np.ndarray, bins: int = 10, title: str = ""):
    """Mean predicted probability against the observed reversal rate, per quantile bin."""
    from sklearn.calibration import calibration_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=90)
    observed, predicted = calibration_curve(y, proba, n_bins=bins, strategy="quantile")
    top = float(max(observed.max(initial=0.0), predicted.max(initial=0.0), 0.1)) * 1.05
    ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    ax.plot(predicted, observed, marker="o", color="tab:blue", label="model")
    ax.axhline(float(np.mean(y)), color="tab:orange", linewidth=1, label=f"base rate {np.mean(y):.3f}")
    ax.set_xlabel("mean predicted P(reversal)")
    ax.set_ylabel("observed reversal rate")
    ax.set_title(title or f"reliability curve (holdout, {bins} quantile bins)", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def confusion_figure(metrics: Metrics, title: str = ""):
    plt = _pyplot()
    cm = np.asarray(metrics.confusion)
    fig, ax = plt.subplots(figsize=(4.2, 3.8), dpi=90)
    ax.imshow(cm, cmap="Blues")
    names = ["no reversal", "reversal"]
    ax.set_xticks([0, 1], names)
    ax.set_yticks([0, 1], names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), n in np.ndenumerate(cm):
        ax.text(j, i, f"{n:,}", ha="center", va="center", color="white" if n > cm.max() / 2 else "black")
    ax.set_title(title or f"confusion matrix (holdout, threshold 0.5, {metrics.rows:,} rows)", fontsize=10)
    fig.tight_layout()
    return fig


def permutation_importances(
    estimator, X: np.ndarray, y: np.ndarray, names: tuple[str, ...] | list[str], max_rows: int = 5000
) -> dict[str, float]:
    """Mean increase of the holdout log loss when a feature's column is shuffled (for models
    without impurity importances, e.g. ``hist_gb``); two repeats over at most ``max_rows`` rows."""
    from sklearn.inspection import permutation_importance

    result = permutation_importance(
        estimator,
        X,
        y,
        scoring="neg_log_loss",
        n_repeats=2,
        random_state=0,
        n_jobs=1,
        max_samples=min(max_rows, len(X)),
    )
    return {name: float(v) for name, v in zip(names, result.importances_mean)}


def importance_figure(importances: Mapping[str, float], title: str = ""):
    plt = _pyplot()
    top = sorted(importances.items(), key=lambda kv: kv[1], reverse=True)[:TOP_FEATURES][::-1]
    fig, ax = plt.subplots(figsize=(6.0, 0.25 * len(top) + 1.2), dpi=90)
    ax.barh([k for k, _ in top], [v for _, v in top], color="tab:blue")
    ax.set_xlabel("importance")
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title(title or "feature importances", fontsize=10)
    fig.tight_layout()
    return fig
