"""PredictReversal -> EnhanceSignal -> LogOutcome over gRPC against a real champion and a real
memory store: the learning rules change strategy stats and parameter memory, and the decision
shows up in the exports."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pandas as pd
import pytest

from mem_core.features import SERVING_HISTORY
from mem_memory import Condition, MemoryStore, StrategySpec, StrategyStats
from mem_serving.api import pb

from .helpers import candle_pb, candles_pb, now_pb
from .stack import ModelStore, Stack, start_stack


def _spec(name: str, action: str) -> StrategySpec:
    t = datetime(2025, 1, 1, tzinfo=UTC)
    return StrategySpec(
        name=name,
        conditions=(Condition("rsi14", ">=", 0.0),),
        action=action,
        confidence=0.8,
        size=0.03,
        stop_loss_pct=0.015,
        take_profit_pct=0.05,
        stats=StrategyStats(),
        created_at=t,
        updated_at=t,
        evidence="seeded by the serving test",
    )


@pytest.fixture
def seeded_stack(mlflow_uri: str, tmp_path: Path, warm_features: None) -> Iterator[Stack]:
    """A stack whose memory already holds one learned strategy per action."""
    db = tmp_path / "memory" / "memory.db"
    db.parent.mkdir(parents=True)
    store = MemoryStore.open(db)
    store.append_strategy(_spec("always_buy", "BUY"))
    store.append_strategy(_spec("always_sell", "SELL"))
    store.close()
    s = start_stack(mlflow_uri, db, metrics_port=0)
    yield s
    s.channel.close()
    s.running.stop(grace=1.0)


def test_full_cycle_learns_and_exports(
    seeded_stack: Stack, model_store: ModelStore, serve_candles: pd.DataFrame, tmp_path: Path
) -> None:
    stub = seeded_stack.stub
    history = serve_candles.iloc[:SERVING_HISTORY]
    before = stub.GetParameters(pb.GetParametersRequest(), timeout=10)
    size_before = before.parameters["position_size"]

    prediction = stub.PredictReversal(
        pb.PredictReversalRequest(symbol="BTCUSDT", candles=candles_pb(history)), timeout=10
    )
    assert prediction.model_version == model_store.v1
    # the action the ML prediction supports most (so the final confidence clears the HOLD rule)
    bullish = prediction.direction == pb.DIRECTION_BULLISH
    buy = bullish == (prediction.confidence >= 0.5)
    action = pb.ACTION_BUY if buy else pb.ACTION_SELL
    nxt = serve_candles.iloc[SERVING_HISTORY]
    signal = stub.EnhanceSignal(
        pb.EnhanceSignalRequest(
            symbol="BTCUSDT",
            action=action,
            base_confidence=0.9,
            price=float(nxt.close),
            time=now_pb(),
            strategy="momentum",
            candles=[candle_pb(tuple(nxt))],
            session_id="engine-1",
        ),
        timeout=10,
    )
    assert signal.decision_id and signal.action == action
    assert signal.model_version == model_store.v1 and signal.HasField("ml_confidence")
    assert signal.learned_strategy == ("always_buy" if buy else "always_sell")
    assert signal.size > 0 and signal.stop_loss > 0 and signal.take_profit > 0
    assert (signal.stop_loss < float(nxt.close)) == buy  # the stop is below the entry for a BUY
    assert signal.reasoning

    learned = stub.LogOutcome(
        pb.LogOutcomeRequest(
            decision_id=signal.decision_id,
            entry_price=float(nxt.close),
            exit_price=float(nxt.close) * (1.01 if buy else 0.99),
            size=signal.size,
            pnl=12.5,
            pnl_pct=0.01,
            exit_reason="take_profit",
            time=now_pb(),
        ),
        timeout=10,
    )
    assert learned.win and learned.strategy == signal.learned_strategy
    assert (
        learned.strategy_stats.trades == 1
        and learned.strategy_stats.wins == 1
        and learned.strategy_stats.win_rate == 1.0
    )
    [adjustment] = [a for a in learned.adjustments if a.parameter == "position_size"]
    assert adjustment.from_value == pytest.approx(size_before)
    assert adjustment.to_value == pytest.approx(size_before * 1.02)  # the win rule: size x1.02
    assert "win" in adjustment.reason and adjustment.trigger == f"outcome:{signal.decision_id}"

    after = stub.GetParameters(pb.GetParametersRequest(), timeout=10)  # the outcome cleared the cache
    assert after.parameters["position_size"] == pytest.approx(size_before * 1.02)
    assert after.version == learned.parameters_version != before.version
    specs = {s.name: s for s in stub.ListStrategies(pb.ListStrategiesRequest(), timeout=10).strategies}
    assert specs[signal.learned_strategy].stats.trades == 1
    assert specs["always_buy"].conditions[0].feature == "rsi14"

    # a second outcome for the same decision is refused; the first one stands
    with pytest.raises(grpc.RpcError) as err:
        stub.LogOutcome(
            pb.LogOutcomeRequest(decision_id=signal.decision_id, entry_price=1, exit_price=1, size=0), timeout=10
        )
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS

    paths = seeded_stack.engine.export_all(tmp_path / "exports")
    assert signal.decision_id in paths["core_memory_updates"].read_text()
    assert "position_size" in json.dumps(json.loads(paths["parameter_updates"].read_text()))
    assert signal.learned_strategy in paths["strategy_modules"].read_text()

    # metrics on HTTP in Prometheus format
    text = (
        urllib.request.urlopen(f"http://127.0.0.1:{seeded_stack.running.metrics_port}/metrics", timeout=5)
        .read()
        .decode()
    )
    for name in (
        "mem_decisions_total",
        'mem_decisions_total{action="%s"} 1.0' % ("BUY" if buy else "SELL"),
        "mem_ml_latency_seconds_bucket",
        "mem_memory_load_seconds_count",
        "mem_enhancement_seconds_sum",
        "mem_win_rate_24h_ratio 1.0",
        'mem_strategies{state="active"} 2.0',
        'mem_strategies{state="deprecated"} 0.0',
        f'mem_model_info{{version="{model_store.v1}"}} 1.0',
    ):
        assert name in text, name
