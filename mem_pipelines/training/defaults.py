"""What the training job does when its config names nothing else, as chosen by walk-forward
(docs/ml.md, "Walk-forward evidence"): the last 180 days of every symbol that has candles,
``hist_gb`` with the parameters below over the ``regime_v1`` feature set, no calibrator.
``seed_gbc`` and ``seed`` (the seed's model and features) stay selectable by name."""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

#: Days of candles the daily retrain and the main job train on.
TRAIN_DAYS: int = 180
ESTIMATOR: str = "hist_gb"
FEATURE_SET: str = "regime_v1"
#: Walk-forward inside every training run: folds over the training window, each trained on
#: ``WALK_FORWARD_TRAIN_FRACTION`` of the window before its test period.
WALK_FORWARD_FOLDS: int = 5
WALK_FORWARD_TRAIN_FRACTION: float = 0.5

#: OpenMP threads of a fit or a batch prediction (hist_gb). One: on shared cores OpenMP's
#: spin-waiting made two-thread fits up to 20x slower than one thread (docs/ml.md, "Numbers").
THREADS: int = 1

#: Parameters training gives a model type, over the type's own defaults (the config's ``params``
#: override these in turn). Chosen a priori, not tuned on the data: slow learning, large leaves
#: and L2 keep the probabilities calibrated (no calibrator needed, docs/ml.md).
ESTIMATOR_PARAMS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "hist_gb": MappingProxyType(
            {
                "max_iter": 250,
                "learning_rate": 0.05,
                "max_leaf_nodes": 31,
                "max_depth": None,
                "min_samples_leaf": 300,
                "l2_regularization": 1.0,
                "early_stopping": False,
                "random_state": 0,
            }
        ),
    }
)


def estimator_params(estimator: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Training's parameters for ``estimator`` updated with ``overrides``."""
    return {**ESTIMATOR_PARAMS.get(estimator, {}), **(overrides or {})}
