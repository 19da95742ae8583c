"""The candle history's rule as a caller sees it over gRPC (real server on loopback, real champion,
no QuestDB): a too-short newest contiguous run makes EnhanceSignal answer with the ML silent and
PredictReversal answer FAILED_PRECONDITION, both naming the counts; late candles fill the gap;
a late call never takes newer candles away."""

from __future__ import annotations

import grpc
import pandas as pd
import pytest

from mem_core.features import MIN_HISTORY, SERVING_HISTORY
from mem_serving.api import pb

from .helpers import candles_pb, now_pb
from .stack import Stack


def _enhance(stack: Stack, symbol: str, frame: pd.DataFrame) -> pb.EnhancedSignal:
    return stack.stub.EnhanceSignal(
        pb.EnhanceSignalRequest(
            symbol=symbol,
            action=pb.ACTION_BUY,
            base_confidence=0.65,
            price=float(frame["close"].iloc[-1]),
            time=now_pb(),
            strategy="momentum",
            candles=candles_pb(frame),
        ),
        timeout=10,
    )


def _predict(stack: Stack, symbol: str, frame: pd.DataFrame) -> pb.PredictReversalResponse:
    return stack.stub.PredictReversal(pb.PredictReversalRequest(symbol=symbol, candles=candles_pb(frame)), timeout=10)


def _refused(stack: Stack, symbol: str, frame: pd.DataFrame) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        _predict(stack, symbol, frame)
    return err.value.code(), err.value.details()


def _ms(ts: pd.Timestamp) -> int:
    return int(pd.Timestamp(ts).value // 1_000_000)


def test_a_short_history_silences_the_ml_and_fails_the_precondition(stack: Stack, serve_candles) -> None:
    few = serve_candles.iloc[:10]
    answer = _enhance(stack, "SHORT", few)
    assert answer.decision_id and answer.ml_absent and not answer.HasField("ml_confidence")
    assert f"10 of {MIN_HISTORY} contiguous candles of SHORT" in answer.ml_absent_reason
    assert stack.engine.store.get_decision(answer.decision_id)[0] is not None  # decided and recorded

    code, details = _refused(stack, "SHORT", serve_candles.iloc[10:12])  # 12 held now, still short
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert details.startswith("candles:") and f"12 of {MIN_HISTORY} contiguous candles of SHORT" in details

    enough = _enhance(stack, "SHORT", serve_candles.iloc[12:MIN_HISTORY])  # the same symbol grows to enough
    assert not enough.ml_absent and enough.HasField("ml_confidence") and enough.model_version


def test_a_gap_is_short_until_the_late_candles_fill_it(stack: Stack, serve_candles) -> None:
    first = _predict(stack, "GAP", serve_candles.iloc[:SERVING_HISTORY])
    assert first.candle_ts.ToMilliseconds() == _ms(serve_candles["ts"].iloc[SERVING_HISTORY - 1])

    after_gap = serve_candles.iloc[SERVING_HISTORY + 3 : SERVING_HISTORY + 5]  # three candles missing
    code, details = _refused(stack, "GAP", after_gap)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and f"2 of {MIN_HISTORY} contiguous candles" in details

    late = _predict(stack, "GAP", serve_candles.iloc[SERVING_HISTORY : SERVING_HISTORY + 3])  # they arrive late
    newest = _ms(serve_candles["ts"].iloc[SERVING_HISTORY + 4])
    assert late.candle_ts.ToMilliseconds() == newest  # answered for the newest candle held: the run is whole

    again = _predict(stack, "GAP", serve_candles.iloc[100:SERVING_HISTORY])  # a caller restarting further back
    assert again.candle_ts.ToMilliseconds() == newest and again.confidence == late.confidence
