"""Prometheus metrics of one server, in its own registry (several servers can live in one process).
The series and their conventions: docs/serving.md ("Metrics"); deploy/prometheus/alerts.yml and
deploy/grafana/mem.json are built on these names.
"""

from __future__ import annotations

import collections
import functools
import logging
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric

from mem_memory.types import ACTIONS
from mem_serving._gen.mem.v1 import mem_pb2
from mem_serving.api import SERVICE_NAME

log = logging.getLogger(__name__)

#: P(reversal) buckets: tenths, finer around the default reversal threshold (0.5).
PROBABILITY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9, 1.0)
_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

#: The RPCs of ``mem.v1.MemService`` (from the compiled proto, so a new RPC is counted from the start).
METHODS: tuple[str, ...] = tuple(m.name for m in mem_pb2.DESCRIPTOR.services_by_name["MemService"].methods)
#: Every gRPC status code by name, as ``mem_requests_total`` labels them.
CODES: tuple[str, ...] = tuple(c.name for c in grpc.StatusCode)
#: The RPCs that take a client request id (a repeat is answered from the first answer; an
#: EnhanceSignals item counts as EnhanceSignal).
REPLAYED_METHODS = ("EnhanceSignal", "LogOutcome", "PushCandles")
#: Outcomes of an attempt to load a champion version.
LOAD_RESULTS = ("ok", "refused", "error")


class ServingMetrics:
    def __init__(self) -> None:
        # ``<name>_created`` series are off for the whole process: their values are the process's
        # start time, one extra series per labelled child, and Prometheus ignores them
        prometheus_client.disable_created_metrics()
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        PlatformCollector(registry=r)  # python_info
        counter, gauge = functools.partial(Counter, registry=r), functools.partial(Gauge, registry=r)
        latency = functools.partial(Histogram, buckets=_LATENCY_BUCKETS, registry=r)
        self.build_info = gauge(
            "mem_build_info", "The running code: package version and git commit (value 1)", ["version", "git_commit"]
        )
        self.build_info.labels(*build_info()).set(1)
        self.decisions = counter("mem_decisions", "Enhanced signals recorded", ["action"])
        self.outcomes = counter("mem_outcomes", "Outcomes logged", ["result"])
        self.ml_latency = latency("mem_ml_latency_seconds", "Features + inference of one prediction")
        self.predicted_probability = Histogram(
            "mem_predicted_probability_ratio",
            "P(reversal) of each computed prediction (cache hits not counted again)",
            buckets=PROBABILITY_BUCKETS,
            registry=r,
        )
        self.out_of_range_predictions = counter(
            "mem_predictions_out_of_range",
            "Predictions with at least one feature outside the champion's training min/max",
        )
        self.out_of_range_features = counter(
            "mem_out_of_range_features", "Features outside the champion's training min/max, by feature", ["feature"]
        )
        self.memory_load = latency("mem_memory_load_seconds", "Memory engine time of one enhancement")
        self.enhancement = latency("mem_enhancement_seconds", "One EnhanceSignal end to end in the handler")
        self.request_duration = Histogram(
            "mem_request_duration_seconds",
            "One RPC from receipt to answer, whatever its status",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.strategies = gauge("mem_strategies", "Learned strategies", ["state"])
        self.requests = Counter("mem_requests", "gRPC calls by final status", ["method", "code"], registry=r)
        self.prediction_cache = counter("mem_prediction_cache", "Prediction cache lookups", ["result"])
        self.model_info = gauge("mem_model_info", "Champion version being served (value 1)", ["version"])
        self.model_loaded_gauge = gauge("mem_model_loaded", "1 while a champion model is served, else 0")
        self._served: tuple[str, ModelTimes] | None = None
        self._memory_stats: Callable[[], Any] | None = None
        r.register(self)  # collect: the series computed at scrape time
        self.model_loads = counter(
            "mem_model_loads", "Attempts to load a champion version: ok, refused (unknown kind), error", ["result"]
        )
        self.model_swaps = counter("mem_model_swaps", "Loads that replaced the champion being served")
        self.model_load_seconds = gauge(
            "mem_model_load_seconds", "Duration of the last successful champion load (registry + preparation)"
        )
        self.replays = counter("mem_replays", "Calls answered again for a repeated request id", ["method"])
        self.ml_absent = counter(
            "mem_ml_absent", "EnhanceSignal decisions taken with the ML silent (no champion model)"
        )
        self.corrupt_records = gauge(
            "mem_memory_corrupt_records", "Corrupt memory records met (left out; see mem memory verify)"
        )
        self.memory_writes_ok = gauge("mem_memory_writes_ok", "1 while the memory's writes succeed, 0 while they fail")
        self.health_serving = gauge(
            "mem_health_serving", "1 when the gRPC health of the service is SERVING, else 0", ["service"]
        )
        self.set_memory_writes(True)
        self._model_lock = threading.Lock()
        self._initialise_labels()

    def _initialise_labels(self) -> None:
        """Every known label set at zero, so a series exists before its first event."""
        for metric, values in (
            (self.decisions, ACTIONS),
            (self.outcomes, ("win", "loss")),
            (self.request_duration, METHODS),
            (self.prediction_cache, ("hit", "miss")),
            (self.replays, REPLAYED_METHODS),
            (self.model_loads, LOAD_RESULTS),
            (self.strategies, ("active", "deprecated")),
        ):
            for value in values:
                metric.labels(value)
        for method in METHODS:
            for code in CODES:
                self.requests.labels(method, code)

    def predictions(self, probabilities: Sequence[float], out_of_range: Sequence[Sequence[str]]) -> None:
        """Computed predictions: their probabilities and, of those with some, the features outside the
        training range (counted once per batch)."""
        observe = self.predicted_probability.observe
        for p in probabilities:  # ~1 us each; prometheus_client has no public batch observe
            observe(p)
        if out_of_range:
            self.out_of_range_predictions.inc(len(out_of_range))
            for name, count in collections.Counter(n for names in out_of_range for n in names).items():
                self.out_of_range_features.labels(name).inc(count)

    def outcome(self, win: bool) -> None:
        self.outcomes.labels("win" if win else "loss").inc()

    def model_loaded(self, seconds: float, swapped: bool) -> None:
        """A champion version was loaded in ``seconds``; ``swapped`` when it replaced one."""
        self.model_loads.labels("ok").inc()
        self.model_load_seconds.set(seconds)
        if swapped:
            self.model_swaps.inc()

    def model_load_failed(self, refused: bool) -> None:
        """A champion version could not be served: refused (a kind this code does not know) or an error."""
        self.model_loads.labels("refused" if refused else "error").inc()

    def bind_memory(self, stats: Callable[[], Any]) -> None:
        """Read the 24 h win rate and the strategy counts from the memory store at scrape time
        (``stats`` returns a ``MemoryStats``; cached by the caller), so trades and strategies
        written by other processes (Dagster) count too."""
        self._memory_stats = stats
        self.strategies.labels("active").set_function(lambda: stats().active_strategies)
        self.strategies.labels("deprecated").set_function(lambda: stats().deprecated_strategies)
        self.corrupt_records.set_function(lambda: stats().corrupt_records)

    def set_model(self, version: str | None) -> None:
        """The champion being served (None: none); its times follow (``set_model_times``)."""
        with self._model_lock:
            self.model_info.clear()
            self.model_loaded_gauge.set(0 if version is None else 1)
            if version is not None:
                self.model_info.labels(version).set(1)
            self._served = None if version is None else (version, ModelTimes())

    def set_model_times(self, version: str, times: ModelTimes) -> None:
        """The times of ``version``, read after it was loaded; ignored when another is served by now."""
        with self._model_lock:
            if self._served is not None and self._served[0] == version:
                self._served = (version, times)

    def set_memory_writes(self, ok: bool) -> None:
        """The memory's write health (``WriteHealth`` listener), which is the gRPC health of the
        service and of the server too (``RunningServer.set_memory_health``)."""
        self.memory_writes_ok.set(1 if ok else 0)
        for service in (SERVICE_NAME, ""):
            self.health_serving.labels(service).set(1 if ok else 0)

    def collect(self) -> Iterator[Metric]:
        """The served champion's version and times, and the 24 h win rate (``bind_memory``); each
        absent while unknown (never a misleading 0; a ratio of no trade is not 0, and NaN breaks alerts)."""
        version, times = self._served or ("", ModelTimes())
        values = {
            "mem_model_version": float(version) if version.isdigit() else None,
            "mem_model_training_end_timestamp_seconds": times.training_end,
            "mem_model_promoted_timestamp_seconds": times.promoted,
            "mem_win_rate_24h_ratio": self._memory_stats().win_rate_24h if self._memory_stats is not None else None,
        }
        for name, value in values.items():
            if value is not None:
                yield GaugeMetricFamily(name, _HELP[name], value=float(value))


@dataclass(frozen=True)
class ModelTimes:
    """When a registered version's training ended and when it became champion (Unix seconds)."""

    training_end: float | None = None
    promoted: float | None = None


def model_times(version: str, tracking_uri: str) -> ModelTimes:
    """The training end (the run's end time, else the version's creation) and the promotion time
    (the ``champion.promoted_at`` audit tag, else the version's last update: the gate writes its
    verdict just before it moves the alias) of ``version`` in the registry."""
    from mem_core import registry
    from mem_core.promotion import PROMOTED_AT_TAG

    client = registry.client(tracking_uri)
    mv = client.get_model_version(registry.MODEL_NAME, str(version))
    end = client.get_run(mv.run_id).info.end_time if mv.run_id else None
    trained = (end or mv.creation_timestamp or 0) / 1000.0 or None
    promoted: float | None = (mv.last_updated_timestamp or 0) / 1000.0 or None
    stamp = (mv.tags or {}).get(PROMOTED_AT_TAG)
    if stamp:
        try:
            promoted = datetime.fromisoformat(stamp).timestamp()
        except ValueError:
            log.warning("version %s: unreadable %s tag %r", version, PROMOTED_AT_TAG, stamp)
    return ModelTimes(trained, promoted)


def model_listener(metrics: ServingMetrics, tracking_uri: str) -> Callable[[Any], None]:
    """A ``ModelProvider`` listener that sets the served-model metrics; the registry is read once
    per new version (a failed read leaves the times absent, logged)."""

    def fill_times(version: str) -> None:
        try:
            metrics.set_model_times(version, model_times(version, tracking_uri))
        except Exception as exc:  # the registry is out of reach: serve anyway, times unknown
            log.warning("cannot read the times of champion version %s: %s", version, exc)

    def listen(model: Any) -> None:
        if model is None:
            metrics.set_model(None)
            return
        for name in getattr(model, "feature_names", ()):  # each feature's series from the start, at 0
            metrics.out_of_range_features.labels(name)
        metrics.set_model(model.version)
        # the registry read imports MLflow (seconds): off the start-up path, in its own thread
        threading.Thread(target=fill_times, args=(model.version,), name="mem-model-times", daemon=True).start()

    return listen


def build_info() -> tuple[str, str]:
    """(package version, git commit) of the running code: ``MEM_GIT_COMMIT`` when set (an image
    built without .git), else ``git rev-parse`` in the project folder; "unknown" when neither."""
    from mem_serving.settings import git_commit_override

    return _package_version(), git_commit_override() or _git_commit()


@functools.cache
def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mem-platform")
    except PackageNotFoundError:
        return "unknown"


@functools.cache
def _git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else "unknown"


#: The help of the series ``ServingMetrics.collect`` computes.
_HELP = {
    "mem_model_version": "Version number of the champion being served",
    "mem_model_training_end_timestamp_seconds": "Unix time the served champion's training run ended",
    "mem_model_promoted_timestamp_seconds": "Unix time the served champion was made champion",
    "mem_win_rate_24h_ratio": "Wins / trades closed in the last 24 h (memory store)",
}
