"""Operations metrics of a real ``mem serve`` process (real QuestDB with candles, real MLflow
champion, real memory store): process and build info, the served model's version and times,
candle ages from start-up (before any call), no windowed gauge; the predicted-probability
histogram and out-of-range counter after calls; and every metric named by the Grafana dashboard
and the alert rules exists in the live /metrics."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from mem_core.features import SERVING_HISTORY
from mem_core.questdb.store import wait_for_wal, write_candles
from mem_core.settings import QuestDBSettings
from mem_serving.api import MemServiceStub, pb
from mem_serving.metrics import ServingMetrics, build_info, model_times

from .helpers import candle_pb, candles_pb, mem_serve_process, now_pb
from .stack import ModelStore

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "mem.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
SYMBOL = "OPSUSDT"
#: Metric names in PromQL: the families this project and prometheus_client export.
NAME = re.compile(r"\b((?:mem|process|python)_[a-zA-Z0-9_]+)\b")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _names(text: str) -> set[str]:
    return {name for name, _ in _samples(text)}


def _scrape(url: str) -> str:
    return urllib.request.urlopen(url, timeout=10).read().decode()


def _dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def _alert_queries() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


@pytest.fixture
def served(
    mlflow_uri: str, model_store: ModelStore, questdb: QuestDBSettings, serve_candles: pd.DataFrame, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    """``mem serve`` over a QuestDB holding SERVING_HISTORY candles of SYMBOL; its ready line."""
    history = serve_candles.iloc[:SERVING_HISTORY].assign(symbol=SYMBOL)
    write_candles(questdb, history)
    wait_for_wal(questdb)
    env = {
        **os.environ,
        "MEM_HOME": str(tmp_path),
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "MEM_QUESTDB_PG_PORT": str(questdb.pg_port),
        "MEM_QUESTDB_HTTP_PORT": str(questdb.http_port),
    }
    for name in ("MEM_SERVING_TOKEN", "MEM_QUESTDB_HOST", "MEM_MEMORY_KEY"):
        env.pop(name, None)
    proc = mem_serve_process(env, tmp_path / "m.db")
    try:
        ready = json.loads(proc.stdout.readline() or "{}")
        assert ready.get("metrics"), proc.stderr.read() if proc.poll() is not None else "no ready line"
        yield {**ready, "newest": history["ts"].iloc[-1]}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except Exception:
            proc.kill()
            proc.wait()


def test_a_fresh_server_exports_process_build_model_and_candle_age_series(
    served: dict[str, Any], model_store: ModelStore, mlflow_uri: str
) -> None:
    # two series are filled beside the start-up, each by its own thread: the champion's times
    # (a registry read) and the candle ages (a QuestDB read); neither orders the other
    promoted = ("mem_model_promoted_timestamp_seconds", ())
    age_key = ("mem_candles_newest_age_seconds", (("symbol", SYMBOL),))
    deadline = time.monotonic() + 60
    while True:
        text = _scrape(served["metrics"])
        samples = _samples(text)
        if {promoted, age_key} <= samples.keys() or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    names = _names(text)
    # process and build information
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_start_time_seconds"} <= names
    assert "python_info" in names
    version, commit = build_info()
    assert re.fullmatch(r"[0-9a-f]{40}", commit), commit  # the tests run from a git checkout
    assert samples[("mem_build_info", (("git_commit", commit), ("version", version)))] == 1.0
    # the served champion, its version number and its times as the registry has them
    assert samples[("mem_model_loaded", ())] == 1.0
    assert samples[("mem_model_version", ())] == float(model_store.v1)
    times = model_times(model_store.v1, mlflow_uri)
    assert times.training_end is not None and times.promoted is not None
    assert samples[("mem_model_training_end_timestamp_seconds", ())] == pytest.approx(times.training_end)
    assert samples[("mem_model_promoted_timestamp_seconds", ())] == pytest.approx(times.promoted)
    assert 0 < time.time() - times.training_end < 86400 * 30
    # the candle age of a symbol no call has named yet: read from QuestDB at start-up
    assert age_key in samples, "no candle age 60 s after the start"
    age = samples[age_key]
    expected = time.time() - served["newest"].timestamp()
    assert abs(age - expected) < 120, (age, expected)
    # health and memory writes, counters only
    assert samples[("mem_health_serving", (("service", "mem.v1.MemService"),))] == 1.0
    assert samples[("mem_memory_writes_ok", ())] == 1.0
    assert "mem_decisions_last_hour" not in names
    assert samples[("mem_predicted_probability_ratio_count", ())] == 0.0
    assert samples[("mem_predictions_out_of_range_total", ())] == 0.0


def test_every_dashboard_and_alert_query_names_an_exported_metric(
    served: dict[str, Any], serve_candles: pd.DataFrame
) -> None:
    with grpc.insecure_channel(served["grpc"]) as channel:
        stub = MemServiceStub(channel)
        history = serve_candles.iloc[:SERVING_HISTORY]
        prediction = stub.PredictReversal(
            pb.PredictReversalRequest(symbol="BTCUSDT", candles=candles_pb(history)), timeout=30
        )
        nxt = serve_candles.iloc[SERVING_HISTORY]
        signal_ = stub.EnhanceSignal(
            pb.EnhanceSignalRequest(
                symbol="BTCUSDT",
                action=pb.ACTION_BUY,
                base_confidence=0.9,
                price=float(nxt.close),
                time=now_pb(),
                candles=[candle_pb(tuple(nxt))],
            ),
            timeout=30,
        )
        stub.LogOutcome(
            pb.LogOutcomeRequest(
                decision_id=signal_.decision_id,
                entry_price=float(nxt.close),
                exit_price=float(nxt.close) * 1.01,
                size=max(signal_.size, 0.01),
                pnl=1.0,
                pnl_pct=0.01,
                exit_reason="take_profit",
                time=now_pb(),
            ),
            timeout=30,
        )
    text = _scrape(served["metrics"])
    exported = _names(text)
    samples = _samples(text)
    # the predictions' probabilities are in the histogram, in the right bucket
    count = samples[("mem_predicted_probability_ratio_count", ())]
    assert count in (1.0, 2.0)  # PredictReversal's, and EnhanceSignal's own (a new candle)
    total = samples[("mem_predicted_probability_ratio_sum", ())]
    assert prediction.confidence - 1e-9 <= total <= prediction.confidence + count - 1.0 + 1e-9
    le = "0.5" if prediction.confidence <= 0.5 else "1.0"
    assert samples[("mem_predicted_probability_ratio_bucket", (("le", le),))] >= 1.0
    out = samples[("mem_predictions_out_of_range_total", ())]
    assert out <= count and (out >= 1.0 if prediction.out_of_range_features else True)
    for feature in prediction.out_of_range_features:
        assert samples[("mem_out_of_range_features_total", (("feature", feature),))] >= 1.0

    queries = _dashboard_queries()
    assert len(queries) >= 20
    missing: dict[str, list[str]] = {}
    for expr in queries + _alert_queries():
        names = NAME.findall(expr)
        assert names, f"a query names no metric: {expr}"
        for name in names:
            if name not in exported:
                missing.setdefault(name, []).append(expr)
    assert not missing, f"queries name metrics the server does not export: {missing}"


def test_counters_replace_windowed_gauges() -> None:
    metrics = ServingMetrics()
    metrics.decisions.labels("BUY").inc(2)
    assert metrics.registry.get_sample_value("mem_decisions_total", {"action": "BUY"}) == 2.0
    assert metrics.registry.get_sample_value("mem_decisions_last_hour") is None
    metrics.predictions([0.42, 0.91], [["rsi", "macd"]])
    get = metrics.registry.get_sample_value
    assert get("mem_predicted_probability_ratio_bucket", {"le": "0.45"}) == 1.0
    assert get("mem_predicted_probability_ratio_bucket", {"le": "0.4"}) == 0.0
    assert get("mem_predicted_probability_ratio_bucket", {"le": "1.0"}) == 2.0
    assert get("mem_predictions_out_of_range_total") == 1.0
    assert get("mem_out_of_range_features_total", {"feature": "rsi"}) == 1.0
    # no champion: loaded 0, and no version or time series at all (never a misleading 0)
    metrics.set_model(None)
    assert get("mem_model_loaded") == 0.0
    assert get("mem_model_version") is None and get("mem_model_training_end_timestamp_seconds") is None


def test_a_batch_of_predictions_is_exposed_as_observing_each_one() -> None:
    from prometheus_client import generate_latest

    rng = np.random.default_rng(7)
    probabilities = [*rng.random(500).tolist(), 0.0, 0.1, 0.45, 0.5, 1.0, 1.5, -0.25]
    out_of_range = [["rsi"], ["macd", "rsi"], ["atr"]]
    batched, one_by_one = ServingMetrics(), ServingMetrics()
    batched.predictions(probabilities[:200], out_of_range[:2])
    batched.predictions(probabilities[200:], out_of_range[2:])
    for p in probabilities:
        one_by_one.predicted_probability.observe(p)
    for names in out_of_range:
        one_by_one.out_of_range_predictions.inc()
        for name in names:
            one_by_one.out_of_range_features.labels(name).inc()

    def exposed(m: ServingMetrics) -> list[str]:
        return [
            line
            for line in generate_latest(m.registry).decode().splitlines()
            if line.startswith(("mem_predicted_probability", "mem_predictions_out", "mem_out_of_range"))
        ]

    assert exposed(batched) == exposed(one_by_one)
    assert batched.registry.get_sample_value("mem_predicted_probability_ratio_count") == len(probabilities)


def test_without_the_write_behind_the_watcher_exports_the_candle_ages(
    questdb: QuestDBSettings, serve_candles: pd.DataFrame
) -> None:
    from prometheus_client import CollectorRegistry

    from mem_serving.candle_age import CandleAgeWatcher

    rows = serve_candles.iloc[:5].assign(symbol="AGEUSDT")
    write_candles(questdb, rows)
    wait_for_wal(questdb)
    registry = CollectorRegistry()
    watcher = CandleAgeWatcher(questdb, interval_s=3600)
    watcher.register(registry)
    assert registry.get_sample_value("mem_candles_newest_age_seconds", {"symbol": "AGEUSDT"}) is None
    watcher.start()
    try:
        deadline = time.monotonic() + 30
        while watcher.reads == 0:
            assert time.monotonic() < deadline, "the watcher never read QuestDB"
            time.sleep(0.05)
    finally:
        watcher.stop()
    age = registry.get_sample_value("mem_candles_newest_age_seconds", {"symbol": "AGEUSDT"})
    assert age is not None
    assert abs(age - (time.time() - rows["ts"].iloc[-1].timestamp())) < 60
