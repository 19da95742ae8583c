"""The champion model for serving, loaded from the registry (or the model cache) and swapped in,
with one attribute assignment, when it changes (docs/serving.md, "Champion model").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from mem_core import registry
from mem_core.estimators import UnknownEstimator
from mem_core.feature_sets import UnknownFeatureSet
from mem_serving.fast_predict import ServingModel
from mem_serving.model_cache import ModelCache, champion_version

if TYPE_CHECKING:
    from mem_serving.metrics import ServingMetrics

log = logging.getLogger(__name__)


class ModelProvider:
    def __init__(
        self,
        tracking_uri: str | None,
        poll_s: float = 5.0,
        *,
        version_fn: Callable[[str], str | None] | None = None,
        load_fn: Callable[[str, str | None], registry.LoadedModel] | None = None,
        metrics: ServingMetrics | None = None,
        cache: ModelCache | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri or registry.tracking_uri()
        self.poll_s = poll_s
        self._version_fn = version_fn or champion_version
        self._load_fn = load_fn  # None: the registry's (the cache then reads logged arrays first)
        self._listeners: list[Callable[[ServingModel | None], None]] = []
        self._metrics = metrics
        self._cache = cache
        self.model: ServingModel | None = None  # swapped by one assignment: a call keeps the one it read
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refresh_lock = threading.Lock()
        self.last_error: str | None = None

    @property
    def version(self) -> str | None:
        return None if self.model is None else self.model.version

    def refresh(self) -> bool:
        """Check the registry once; load and swap in a new champion. True when the model changed."""
        with self._refresh_lock:
            try:
                version = self._version_fn(self.tracking_uri)
            except Exception as exc:  # registry unreachable: keep serving what we have
                self._error(f"cannot read the champion version from {self.tracking_uri}: {exc}")
                return False
            current = self.model
            if version is None:
                if current is not None:
                    self._error(f"the registry has no champion any more; still serving version {current.version}")
                return False
            if current is not None and current.version == str(version):
                return False
            started = time.perf_counter()
            try:
                model = self._prepare(str(version))
            except Exception as exc:
                refused = isinstance(exc, UnknownFeatureSet | UnknownEstimator)  # a kind this code does not know
                self._error(
                    f"champion version {version} refused: {exc}"
                    if refused
                    else f"cannot load champion version {version}: {exc}"
                )
                if self._metrics is not None:
                    self._metrics.model_load_failed(refused)
                return False
            self._swap(model, current, time.perf_counter() - started)
            return True

    def _prepare(self, version: str) -> ServingModel:
        """``version`` ready to serve: from the cache, else from the registry (then cached)."""
        if self._cache is None:
            return ServingModel.prepare((self._load_fn or registry.load_version)(version, self.tracking_uri))
        return self._cache.load(version) or self._cache.fetch(version, self._load_fn)

    def _swap(self, model: ServingModel, current: ServingModel | None, seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.model_loaded(seconds, swapped=current is not None)
        self.model = model
        self.last_error = None
        if self._cache is not None:
            self._cache.prune(model.version)
        log.info(
            "serving champion version %s (was %s; %s over feature set %s; compiled one-row predictor: %s)",
            model.version,
            None if current is None else current.version,
            model.estimator,
            model.feature_set.name,
            model.compiled,
        )
        for listener in list(self._listeners):
            listener(model)

    def subscribe(self, listener: Callable[[ServingModel | None], None]) -> None:
        """Call ``listener(model)`` after every swap (and once now with the current model)."""
        self._listeners.append(listener)
        listener(self.model)

    def _error(self, message: str) -> None:
        if message != self.last_error:
            log.warning(message)
        self.last_error = message

    def absent_reason(self) -> str:
        """Why there is no model to score with, in one sentence (for callers and GetModelInfo)."""
        detail = f" ({self.last_error})" if self.last_error else ""
        return (
            "no champion model: the registry has no mem-reversal@champion yet (the gate promotes only a "
            f"model with skill over the base rate){detail}"
        )

    def start(self) -> ModelProvider:
        """Load the champion now (if any) and start polling."""
        self.refresh()
        if self.poll_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="champion-poller", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
