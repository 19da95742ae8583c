"""What ``GetModelInfo`` answers (docs/serving.md, "API"): the champion the model provider loaded,
its run's lineage and skill (read once per version), and the memory store the server writes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from mem_serving.client import ModelInfo, StoreIdentity, TrainingWindow  # one record each, the client's
from mem_serving.model_cache import public_location, read_run
from mem_serving.model_provider import ModelProvider

log = logging.getLogger(__name__)

#: The candles the models are trained and served on.
CANDLE = timedelta(minutes=5)
#: GetModelInfo's answer as handlers and converters name it.
ServedModelInfo = ModelInfo


def training_window(lineage: Mapping[str, str]) -> TrainingWindow | None:
    """The window from a run's lineage, or None when it records no ``data.end``."""
    end = lineage.get("data.end")
    if not end:
        return None
    horizon = int(float(lineage.get("label.horizon", "0") or 0))
    last = _utc(end)
    start = lineage.get("data.start")
    return TrainingWindow(_utc(start) if start else None, last, horizon, last + horizon * CANDLE)


def _utc(text: str) -> datetime:
    ts = pd.Timestamp(text)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def _skill(metrics: Mapping[str, float], prefix: str) -> dict[str, float]:
    """The run metrics named ``<prefix><name>``, as name -> value."""
    return {k[len(prefix) :]: float(v) for k, v in sorted(metrics.items()) if k.startswith(prefix)}


class ModelInfoSource:
    """Builds ``ModelInfo`` from the model provider and the memory engine's store. A failed
    read of the run is not an error of the call: the answer says the window is unknown, and why."""

    def __init__(self, models: ModelProvider, store: Any | None) -> None:
        self.models = models
        self.store = store
        self._lock = threading.Lock()
        self._cache: tuple[str, ModelInfo] | None = None

    def current(self) -> ModelInfo:
        store_id = str(getattr(self.store, "store_id", "") or "")
        path = getattr(self.store, "path", None)
        if getattr(self.store, "backend", "sqlite") != "sqlite":  # a database URL, without its password
            location = str(getattr(self.store, "location", ""))
        else:
            location = str(path.resolve()) if path is not None else ""
        registry = public_location(self.models.tracking_uri)
        model = self.models.model
        if model is None:
            reason = self.models.absent_reason()
            return ModelInfo(False, reason, memory_store=StoreIdentity(store_id, location), registry=registry)
        with self._lock:
            if self._cache is None or self._cache[0] != model.version:
                self._cache = (model.version, self._describe(model))
            info = self._cache[1]
        return replace(info, memory_store=StoreIdentity(store_id, location), registry=registry)

    def _describe(self, model: Any) -> ModelInfo:
        names = tuple(model.feature_names)
        run_id = model.run_id
        base = dict(champion_version=model.version, run_id=run_id, feature_names=names)
        if not run_id:
            return ModelInfo(
                True,
                f"serving version {model.version}; its run is not recorded, so its training window is unknown",
                **base,
            )
        try:
            run = model.run if model.run is not None else read_run(run_id, self.models.tracking_uri)
        except Exception as exc:  # the registry is unreachable: answer what is known, say why
            log.warning("cannot read run %s of champion version %s: %s", run_id, model.version, exc)
            return ModelInfo(
                True, f"serving version {model.version}; its run {run_id} could not be read: {exc}", **base
            )
        lineage = {**run.tags, **run.params}
        window = training_window(lineage)
        reason = f"serving version {model.version}"
        if window is None:
            reason += f"; run {run_id} records no training window (data.end)"
        return ModelInfo(
            True,
            reason,
            estimator=lineage.get("estimator", ""),
            feature_set=lineage.get("feature_set") or model.feature_set.name,
            training_window=window,
            holdout_skill=_skill(run.metrics, "holdout_"),
            walk_forward_skill=_skill(run.metrics, "walk_forward_"),
            **base,
        )
