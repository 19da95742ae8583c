"""Prometheus metrics of one server (own registry, so several servers can live in one process).

name                                   type       meaning
=====================================  =========  ============================================
mem_decisions_total{action}            counter    enhanced signals recorded (rate()/increase())
mem_decisions_last_hour                gauge      decisions recorded in the last 60 minutes
mem_outcomes_total{result}             counter    outcomes logged, result = win | loss
mem_win_rate_24h                       gauge      wins / trades closed in the last 24 h, from the
                                                  memory store (NaN when none)
mem_ml_latency_seconds                 histogram  features + model inference of one prediction
mem_memory_load_seconds                histogram  the memory engine's part of one enhancement
mem_enhancement_seconds                histogram  one EnhanceSignal end to end in the handler
mem_strategies{state}                  gauge      learned strategies, state = active | deprecated
mem_requests_total{method,code}        counter    gRPC calls by final status code
mem_prediction_cache_total{result}     counter    prediction cache hit | miss
mem_model_info{version}                gauge      1 for the champion version being served
mem_replays_total{method}              counter    calls answered with the first answer to their
                                                  repeated request id (nothing recorded)
mem_ml_absent_total                    counter    EnhanceSignal decisions taken with the ML silent
                                                  (no champion model)
mem_ml_absent_total                      counter    EnhanceSignal decisions taken with the ML silent
                                                    (no champion model)
mem_memory_corrupt_records             gauge      corrupt records the memory has met (left out
                                                  of every read; ``mem memory verify`` lists all)
=====================================  =========  ============================================
=======
=======================================  =========  ==========================================
name                                     type       meaning
=======================================  =========  ==========================================
mem_decisions_total{action}              counter    enhanced signals recorded (rate()/increase())
mem_decisions_last_hour                  gauge      decisions recorded in the last 60 minutes
mem_outcomes_total{result}               counter    outcomes logged, result = win | loss
mem_win_rate_24h_ratio                   gauge      wins / trades closed in the last 24 h (0..1),
                                                    from the memory store; absent when none
mem_ml_latency_seconds                   histogram  features + model inference of one prediction
mem_memory_load_seconds                  histogram  the memory engine's part of one enhancement
mem_enhancement_seconds                  histogram  one EnhanceSignal end to end in the handler
mem_request_duration_seconds{method}     histogram  every RPC, received to answered, any status
mem_strategies{state}                    gauge      learned strategies, state = active | deprecated
mem_requests_total{method,code}          counter    gRPC calls by final status code
mem_prediction_cache_total{result}       counter    prediction cache hit | miss
mem_model_info{version}                  gauge      1 for the champion version being served
mem_model_loads_total{result}            counter    champion loads: ok | refused | error
mem_model_swaps_total                    counter    loads that replaced a served champion
mem_model_load_seconds                   gauge      duration of the last successful load
mem_replays_total{method}                counter    calls answered with the first answer to
                                                    their repeated request id (nothing recorded)
mem_memory_corrupt_records               gauge      corrupt records the memory has met (left
                                                    out of every read; ``mem memory verify``)
=======================================  =========  ==========================================

Conventions (prometheus.io/docs/practices): every known label set is exported from the start
at zero (every method x status code, as go-grpc-prometheus does), so ``rate()`` and alerts see
the first event; no ``_created`` series; base units in names (seconds, ratio); no NaN values: a
gauge with nothing to report is absent.

The last-hour decision window is kept in this process (a deque of timestamps) and restarts with
the server; counters are the durable view for Prometheus. The 24 h win rate and the strategy
counts come from the memory store (all processes).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from mem_memory.types import ACTIONS
from mem_serving._gen.mem.v1 import mem_pb2

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


class _Window:
    """Events in a sliding time window (thread-safe)."""

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self.seconds = seconds
        self._clock = clock
        self._events: deque[tuple[float, bool]] = deque()
        self._lock = threading.Lock()

    def add(self, flag: bool = True) -> None:
        with self._lock:
            self._events.append((self._clock(), flag))

    def _trim(self) -> None:
        cutoff = self._clock() - self.seconds
        while self._events and self._events[0][0] < cutoff:
            self._events.popleft()

    def count(self) -> int:
        with self._lock:
            self._trim()
            return len(self._events)


class ServingMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        # ``<name>_created`` series are off for the whole process: their values are the process's
        # start time, one extra series per labelled child, and Prometheus ignores them
        prometheus_client.disable_created_metrics()
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._hour = _Window(3600.0, clock)
        self.decisions = Counter("mem_decisions", "Enhanced signals recorded", ["action"], registry=r)
        self.decisions_last_hour = Gauge("mem_decisions_last_hour", "Decisions recorded in the last hour", registry=r)
        self.decisions_last_hour.set_function(self._hour.count)
        self.outcomes = Counter("mem_outcomes", "Outcomes logged", ["result"], registry=r)
        self.ml_latency = Histogram(
            "mem_ml_latency_seconds", "Features + inference of one prediction", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.memory_load = Histogram(
            "mem_memory_load_seconds", "Memory engine time of one enhancement", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.enhancement = Histogram(
            "mem_enhancement_seconds",
            "One EnhanceSignal end to end in the handler",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.request_duration = Histogram(
            "mem_request_duration_seconds",
            "One RPC from receipt to answer, whatever its status",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.strategies = Gauge("mem_strategies", "Learned strategies", ["state"], registry=r)
        self.requests = Counter("mem_requests", "gRPC calls by final status", ["method", "code"], registry=r)
        self.prediction_cache = Counter("mem_prediction_cache", "Prediction cache lookups", ["result"], registry=r)
        self.model_info = Gauge("mem_model_info", "Champion version being served (value 1)", ["version"], registry=r)
        self.model_loads = Counter(
            "mem_model_loads",
            "Attempts to load a champion version: ok, refused (unknown kind), error",
            ["result"],
            registry=r,
        )
        self.model_swaps = Counter("mem_model_swaps", "Loads that replaced the champion being served", registry=r)
        self.model_load_seconds = Gauge(
            "mem_model_load_seconds",
            "Duration of the last successful champion load (registry + preparation)",
            registry=r,
        )
        self.replays = Counter("mem_replays", "Calls answered again for a repeated request id", ["method"], registry=r)
        self.ml_absent = Counter(
            "mem_ml_absent", "EnhanceSignal decisions taken with the ML silent (no champion model)", registry=r
        )
        self.corrupt_records = Gauge(
            "mem_memory_corrupt_records", "Corrupt memory records met (left out; see mem memory verify)", registry=r
        )
        self._model_lock = threading.Lock()
        self._initialise_labels()

    def _initialise_labels(self) -> None:
        """Every known label set at zero, so a series exists before its first event."""
        for action in ACTIONS:
            self.decisions.labels(action)
        for result in ("win", "loss"):
            self.outcomes.labels(result)
        for method in METHODS:
            self.request_duration.labels(method)
            for code in CODES:
                self.requests.labels(method, code)
        for result in ("hit", "miss"):
            self.prediction_cache.labels(result)
        for method in REPLAYED_METHODS:
            self.replays.labels(method)
        for result in LOAD_RESULTS:
            self.model_loads.labels(result)
        for state in ("active", "deprecated"):
            self.strategies.labels(state)

    def decision(self, action: str) -> None:
        self.decisions.labels(action).inc()
        self._hour.add()

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
        self.registry.register(_WinRateCollector(stats))
        self.strategies.labels("active").set_function(lambda: stats().active_strategies)
        self.strategies.labels("deprecated").set_function(lambda: stats().deprecated_strategies)
        self.corrupt_records.set_function(lambda: stats().corrupt_records)

    def set_model(self, version: str | None) -> None:
        with self._model_lock:
            self.model_info.clear()
            if version is not None:
                self.model_info.labels(version).set(1)


class _WinRateCollector:
    """``mem_win_rate_24h_ratio`` at scrape time: absent while no trade closed in the last 24 h
    (a ratio of nothing is not 0 and Prometheus's NaN breaks comparisons in alerts)."""

    def __init__(self, stats: Callable[[], Any]) -> None:
        self._stats = stats

    def describe(self) -> list[Metric]:
        return []  # collected only when scraped

    def collect(self) -> Iterator[Metric]:
        rate = self._stats().win_rate_24h
        if rate is not None:
            yield GaugeMetricFamily(
                "mem_win_rate_24h_ratio", "Wins / trades closed in the last 24 h (memory store)", value=float(rate)
            )
