"""The public client ``mem_serving.client.MemClient`` against the real server: every call with
typed records in and out, status codes as ``MemClientError``, and token + TLS from the same
environment ``mem serve`` reads."""

from __future__ import annotations

from pathlib import Path

import grpc
import pandas as pd
import pytest

from mem_core.features import SERVING_HISTORY
from mem_serving.client import MemClient, MemClientError, OutcomeLearning, ParameterSet, ReversalPrediction

from .helpers import self_signed_cert
from .stack import ModelStore, Stack, start_stack


def test_every_call_through_the_typed_client(
    stack: Stack, model_store: ModelStore, serve_candles: pd.DataFrame
) -> None:
    history = serve_candles.iloc[:SERVING_HISTORY]
    nxt = serve_candles.iloc[SERVING_HISTORY : SERVING_HISTORY + 1]
    with MemClient(stack.address, timeout_s=10) as client:
        assert client.health() == "SERVING" and client.health("") == "SERVING"
        before = client.get_parameters()
        assert isinstance(before, ParameterSet) and before.version and before.updated_at is not None
        size = before.values["position_size"]

        prediction = client.predict_reversal("BTCUSDT", history)
        assert isinstance(prediction, ReversalPrediction) and prediction.model_version == model_store.v1
        assert prediction.symbol == "BTCUSDT" and prediction.direction in ("bullish", "bearish")
        assert prediction.candle_ts == history["ts"].iloc[-1].to_pydatetime()
        assert 0.0 <= prediction.confidence <= 1.0 and prediction.is_reversal == (prediction.confidence >= 0.5)

        # the action the prediction supports, with the prediction passed in (the server does not predict again)
        action = "BUY" if (prediction.direction == "bullish") == (prediction.confidence >= 0.5) else "SELL"
        price, ts = float(nxt["close"].iloc[0]), nxt["ts"].iloc[0]
        signal = client.enhance_signal(
            "BTCUSDT",
            action,
            0.9,
            price,
            ts,
            strategy="momentum",
            candles=nxt,
            ml=prediction,
            session_id="client-test",
            market_context={"regime": "test"},
        )
        assert signal.decision_id and signal.action == action and signal.symbol == "BTCUSDT"
        assert signal.ml_confidence is not None and signal.model_version == model_store.v1
        assert signal.time == ts.to_pydatetime() and signal.reasoning
        assert signal.size > 0 and (signal.stop_loss < price) == (action == "BUY")

        learned = client.log_outcome(
            signal.decision_id, price, price * 1.01, signal.size, 5.0, 0.01, "target", ts + pd.Timedelta(minutes=30)
        )
        assert isinstance(learned, OutcomeLearning) and learned.win and learned.decision_id == signal.decision_id
        [step] = [a for a in learned.adjustments if a.parameter == "position_size"]
        assert step.to_value == pytest.approx(size * 1.02) and step.trigger == f"outcome:{signal.decision_id}"
        after = client.get_parameters()
        assert after.version == learned.parameters_version != before.version
        assert after.values["position_size"] == pytest.approx(size * 1.02)
        assert client.list_strategies(include_deprecated=True) == []  # nothing learned from one trade

        with pytest.raises(MemClientError, match=r"^LogOutcome at 127\.0\.0\.1:\d+ failed: ALREADY_EXISTS: ") as again:
            client.log_outcome(signal.decision_id, price, price, signal.size, 0.0, 0.0, "end", ts)
        assert again.value.code == grpc.StatusCode.ALREADY_EXISTS
        with pytest.raises(MemClientError) as bad:
            client.enhance_signal("BTCUSDT", "BUY", 1.5, price, ts)
        assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT and "base_confidence" in str(bad.value)


def test_no_server_is_a_clear_error() -> None:
    with pytest.raises(
        MemClientError, match=r"no gRPC server answers at 127\.0\.0\.1:1 .* start it with `mem serve`"
    ) as err:
        MemClient("127.0.0.1:1", timeout_s=0.5)
    assert err.value.code is None


def test_from_env_brings_token_and_tls(
    mlflow_uri: str, tmp_path: Path, warm_features: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed_cert(tmp_path)
    s = start_stack(mlflow_uri, tmp_path / "memory.db", tls_cert=cert, tls_key=key, token="tls-token")
    address = f"localhost:{s.running.port}"
    try:
        monkeypatch.setenv("MEM_SERVING_TLS_CERT", str(cert))
        monkeypatch.delenv("MEM_SERVING_TLS_KEY", raising=False)  # a client needs the certificate only
        monkeypatch.delenv("MEM_SERVING_TOKEN", raising=False)
        with MemClient.from_env(address, timeout_s=10) as client:
            with pytest.raises(MemClientError, match="UNAUTHENTICATED") as refused:
                client.get_parameters()
            assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
        monkeypatch.setenv("MEM_SERVING_TOKEN", "tls-token")
        with MemClient.from_env(address, timeout_s=10) as client:
            assert client.get_parameters().version
        monkeypatch.delenv("MEM_SERVING_TLS_CERT")
        with pytest.raises(MemClientError, match="no gRPC server answers"):  # plaintext never gets through
            MemClient.from_env(address, timeout_s=2)
    finally:
        s.channel.close()
        s.running.stop(grace=1.0)
