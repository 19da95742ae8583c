"""One registered version per trained model: a training whose inputs are those of an existing
version (the same rows, model type, parameters, feature set, split and walk-forward) makes the
same model (the fits are seeded), so it reuses that version instead of registering a copy. That
is what re-executing a training run from the Dagster UI, or a daily retrain with no new candles,
does.

``fingerprint`` is the identity of a training's inputs (tag ``training.fingerprint`` on the
version); ``find_version`` looks it up; ``reused_metrics`` reads back what the earlier training
logged, for the asset's metadata.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mem_core import registry
from mem_pipelines.training.dataset import data_hash

FINGERPRINT_TAG = "training.fingerprint"


def fingerprint(
    dataset: pd.DataFrame,
    *,
    estimator: str,
    feature_set: str,
    params: Mapping[str, Any],
    holdout_fraction: float,
    horizon: int,
    walk_forward_folds: int,
    walk_forward_train_days: float | None,
) -> str:
    """sha256 over the rows (``data_hash``) and every setting of the training."""
    settings = {
        "data": data_hash(dataset),
        "estimator": estimator,
        "feature_set": feature_set,
        "params": {k: params[k] for k in sorted(params)},
        "holdout_fraction": holdout_fraction,
        "horizon": horizon,
        "walk_forward_folds": walk_forward_folds,
        "walk_forward_train_days": walk_forward_train_days,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Reused:
    """An existing version with the same fingerprint and what its training logged."""

    version: str
    run_id: str
    experiment_id: str
    metrics: dict[str, float]
    tags: dict[str, str]
    description: str


def find_version(uri: str, fp: str, model_name: str = registry.MODEL_NAME) -> Reused | None:
    """The oldest version whose tag ``training.fingerprint`` is ``fp``, or None."""
    c = registry.client(uri)
    try:
        versions = c.search_model_versions(f"name='{model_name}'")
    except Exception:  # no registered model yet
        return None
    matches = sorted((v for v in versions if (v.tags or {}).get(FINGERPRINT_TAG) == fp), key=lambda v: int(v.version))
    if not matches:
        return None
    mv = matches[0]
    run = c.get_run(mv.run_id)
    return Reused(
        str(mv.version),
        mv.run_id,
        run.info.experiment_id,
        dict(run.data.metrics),
        dict(mv.tags or {}),
        mv.description or "",
    )
