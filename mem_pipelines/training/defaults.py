"""What the training job does when its config names nothing else, as chosen by walk-forward
(docs/ml.md, "Training defaults and the walk-forward evidence"): the last 180 days of every symbol
that has candles, ``hist_gb`` (its type's parameters, the study's) over the ``regime_v1`` feature
set, no calibrator. ``seed_gbc`` and ``seed`` (the seed's model and features) stay selectable by
name."""

from __future__ import annotations

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
