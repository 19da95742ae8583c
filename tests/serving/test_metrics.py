"""/metrics as Prometheus scrapes it from a real server (real champion in MLflow, real memory
store, real gRPC calls): every known label set from the start at zero, no ``_created`` series,
no NaN, a latency histogram for every RPC, champion load and swap metrics, unit suffixes."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mem_core.features import SERVING_HISTORY
from mem_memory.types import ACTIONS
from mem_serving.api import pb
from mem_serving.metrics import CODES, METHODS, ServingMetrics
from mem_serving.model_provider import ModelProvider

from .helpers import candles_pb, promote
from .stack import ModelStore, Stack, start_stack


@pytest.fixture
def http_stack(mlflow_uri: str, tmp_path: Path, warm_features: None) -> Iterator[Stack]:
    s = start_stack(mlflow_uri, tmp_path / "memory" / "memory.db", metrics_port=0)
    yield s
    s.channel.close()
    s.running.stop(grace=1.0)


def _scrape(stack: Stack) -> str:
    url = f"http://127.0.0.1:{stack.running.metrics_port}/metrics"
    return urllib.request.urlopen(url, timeout=5).read().decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(text: str, name: str, **labels: str) -> float:
    return _samples(text)[(name, tuple(sorted(labels.items())))]


def test_a_fresh_server_exports_every_known_series_at_zero_without_created_or_nan(http_stack: Stack) -> None:
    text = _scrape(http_stack)
    assert "_created" not in text
    assert "NaN" not in text
    assert set(METHODS) >= {"PredictReversal", "EnhanceSignal", "LogOutcome", "GetParameters", "ListStrategies"}
    for method in METHODS:
        for code in CODES:
            assert _value(text, "mem_requests_total", method=method, code=code) == 0.0
        assert _value(text, "mem_request_duration_seconds_count", method=method) == 0.0
    for action in ACTIONS:
        assert _value(text, "mem_decisions_total", action=action) == 0.0
    for result in ("win", "loss"):
        assert _value(text, "mem_outcomes_total", result=result) == 0.0
    for result in ("hit", "miss"):
        assert _value(text, "mem_prediction_cache_total", result=result) == 0.0
    for method in ("EnhanceSignal", "LogOutcome"):
        assert _value(text, "mem_replays_total", method=method) == 0.0
    for state in ("active", "deprecated"):
        assert _value(text, "mem_strategies", state=state) == 0.0
    # no trade closed yet: the win rate is absent, not NaN and not 0
    assert "mem_win_rate_24h" not in text
    # the champion was loaded once at start, nothing swapped, nothing failed
    assert _value(text, "mem_model_loads_total", result="ok") == 1.0
    assert _value(text, "mem_model_loads_total", result="error") == 0.0
    assert _value(text, "mem_model_loads_total", result="refused") == 0.0
    assert _value(text, "mem_model_swaps_total") == 0.0
    assert 0.0 < _value(text, "mem_model_load_seconds") < 60.0


def test_units_and_types_follow_prometheus_conventions(http_stack: Stack) -> None:
    for family in text_string_to_metric_families(_scrape(http_stack)):
        if not family.name.startswith("mem_"):
            continue
        if family.type == "histogram":
            assert family.name.endswith(("_seconds", "_ratio")), family.name
        if family.type == "gauge" and ("win_rate" in family.name or "ratio" in family.name):
            assert family.name.endswith("_ratio"), family.name
        for sample in family.samples:
            assert sample.value == sample.value, sample  # not NaN


def test_every_rpc_is_timed_whatever_its_status(http_stack: Stack, serve_candles: pd.DataFrame) -> None:
    stub = http_stack.stub
    history = serve_candles.iloc[:SERVING_HISTORY]
    stub.PredictReversal(pb.PredictReversalRequest(symbol="BTCUSDT", candles=candles_pb(history)), timeout=10)
    stub.GetParameters(pb.GetParametersRequest(), timeout=10)
    stub.ListStrategies(pb.ListStrategiesRequest(), timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        stub.LogOutcome(pb.LogOutcomeRequest(decision_id="no-such-decision", entry_price=1, exit_price=1), timeout=10)
    bad = err.value.code().name
    text = _scrape(http_stack)
    for method in ("PredictReversal", "GetParameters", "ListStrategies", "LogOutcome"):
        assert _value(text, "mem_request_duration_seconds_count", method=method) == 1.0, method
        assert _value(text, "mem_request_duration_seconds_sum", method=method) > 0.0, method
        assert _value(text, "mem_request_duration_seconds_bucket", method=method, le="+Inf") == 1.0
    assert _value(text, "mem_requests_total", method="LogOutcome", code=bad) == 1.0
    assert _value(text, "mem_requests_total", method="PredictReversal", code="OK") == 1.0
    assert _value(text, "mem_request_duration_seconds_count", method="EnhanceSignal") == 0.0


def test_a_promotion_counts_one_load_and_one_swap(http_stack: Stack, model_store: ModelStore) -> None:
    promote(http_stack.uri, model_store.v2)
    deadline = time.monotonic() + 30
    while http_stack.handlers.models.version != model_store.v2:
        assert time.monotonic() < deadline, "the new champion was not picked up"
        time.sleep(0.1)
    text = _scrape(http_stack)
    assert _value(text, "mem_model_loads_total", result="ok") == 2.0
    assert _value(text, "mem_model_swaps_total") == 1.0
    assert _value(text, "mem_model_info", version=model_store.v2) == 1.0
    assert ("mem_model_info", (("version", model_store.v1),)) not in _samples(text)


def test_a_champion_that_cannot_load_is_counted(empty_mlflow_uri: str) -> None:
    metrics = ServingMetrics()

    def broken(version: str, uri: str | None):
        raise OSError("artifact store unreachable")

    provider = ModelProvider(empty_mlflow_uri, 0, version_fn=lambda uri: "3", load_fn=broken, metrics=metrics)
    assert provider.refresh() is False
    assert metrics.registry.get_sample_value("mem_model_loads_total", {"result": "error"}) == 1.0
    assert metrics.registry.get_sample_value("mem_model_loads_total", {"result": "ok"}) == 0.0
