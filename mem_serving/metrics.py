"""Prometheus metrics of one server (own registry, so several servers can live in one process).

=====================================  =========  ============================================
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
mem_memory_corrupt_records             gauge      corrupt records the memory has met (left out
                                                  of every read; ``mem memory verify`` lists all)
=====================================  =========  ============================================

The last-hour decision window is kept in this process (a deque of timestamps) and restarts with
the server; counters are the durable view for Prometheus. The 24 h win rate and the strategy
counts come from the memory store (all processes).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else float(value)


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
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._hour = _Window(3600.0, clock)
        self.decisions = Counter("mem_decisions", "Enhanced signals recorded", ["action"], registry=r)
        self.decisions_last_hour = Gauge("mem_decisions_last_hour", "Decisions recorded in the last hour", registry=r)
        self.decisions_last_hour.set_function(self._hour.count)
        self.outcomes = Counter("mem_outcomes", "Outcomes logged", ["result"], registry=r)
        self.win_rate_24h = Gauge(
            "mem_win_rate_24h", "Win rate of trades closed in the last 24 h (memory store)", registry=r
        )
        self.win_rate_24h.set(math.nan)
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
        self.strategies = Gauge("mem_strategies", "Learned strategies", ["state"], registry=r)
        self.requests = Counter("mem_requests", "gRPC calls by final status", ["method", "code"], registry=r)
        self.prediction_cache = Counter("mem_prediction_cache", "Prediction cache lookups", ["result"], registry=r)
        self.model_info = Gauge("mem_model_info", "Champion version being served (value 1)", ["version"], registry=r)
        self.replays = Counter("mem_replays", "Calls answered again for a repeated request id", ["method"], registry=r)
        self.corrupt_records = Gauge(
            "mem_memory_corrupt_records", "Corrupt memory records met (left out; see mem memory verify)", registry=r
        )
        self._model_lock = threading.Lock()

    def decision(self, action: str) -> None:
        self.decisions.labels(action).inc()
        self._hour.add()

    def outcome(self, win: bool) -> None:
        self.outcomes.labels("win" if win else "loss").inc()

    def bind_memory(self, stats: Callable[[], Any]) -> None:
        """Read the 24 h win rate and the strategy counts from the memory store at scrape time
        (``stats`` returns a ``MemoryStats``; cached by the caller), so trades and strategies
        written by other processes (Dagster) count too."""
        self.win_rate_24h.set_function(lambda: _nan_if_none(stats().win_rate_24h))
        self.strategies.labels("active").set_function(lambda: stats().active_strategies)
        self.strategies.labels("deprecated").set_function(lambda: stats().deprecated_strategies)
        self.corrupt_records.set_function(lambda: stats().corrupt_records)

    def set_model(self, version: str | None) -> None:
        with self._model_lock:
            self.model_info.clear()
            if version is not None:
                self.model_info.labels(version).set(1)
