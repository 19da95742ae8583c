"""EnhanceSignals, the candle close in one call, against the real server: one result per item in
order, each with its own status (a bad item fails alone), one model call for the batch, one
commit for its decisions (each stored before the answer), the same predictions as single calls;
the Python client and grpcurl (reflection only) call it."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pandas as pd
import pytest

from mem_core.compiled import PARALLEL_MIN_ROWS
from mem_core.feature_sets import REGIME_V1, SEED
from mem_core.features import SERVING_HISTORY
from mem_serving import handlers
from mem_serving.api import pb
from mem_serving.client import MemClient, MemClientError

from .helpers import candle_pb, candles_pb, now_pb
from .stack import Stack
from .test_grpcurl_client import _candles_json, _run, grpcurl  # noqa: F401  # the fixture

N = 12


def _item(symbol: str, candles: list, **over: object) -> pb.EnhanceSignalRequest:
    fields = {
        "symbol": symbol,
        "action": pb.ACTION_BUY,
        "base_confidence": 0.7,
        "price": 100.0,
        "time": now_pb(),
        "strategy": "momentum",
        "candles": candles,
    }
    return pb.EnhanceSignalRequest(**(fields | over))


def _symbols() -> list[str]:
    return [f"S{i:03d}USDT" for i in range(N)]


def _window(serve_candles: pd.DataFrame, i: int, end: int) -> pd.DataFrame:
    """Symbol i's candles: the serve candles shifted by 7*i rows (each symbol its own history)."""
    return serve_candles.iloc[7 * i : 7 * i + end]


@pytest.mark.parametrize("copies", [1, PARALLEL_MIN_ROWS // 4 + 1], ids=["serial", "parallel"])
@pytest.mark.parametrize("feature_set", [SEED, REGIME_V1], ids=lambda f: f.name)
def test_the_features_of_many_symbols_in_one_pass_equal_one_at_a_time(
    feature_set, copies: int, serve_candles: pd.DataFrame
) -> None:
    """Bit for bit, on the serial kernel and (``copies`` of the 4 symbols: 4 * copies rows) on
    numba's thread pool."""
    ts = serve_candles["ts"].dt.as_unit("ms").astype("int64").to_numpy()
    ohlcv = serve_candles[["open", "high", "low", "close", "volume"]].to_numpy(dtype=np.float64)
    ends = [feature_set.min_history, SERVING_HISTORY, SERVING_HISTORY + 37, len(ts)] * copies  # lengths differ
    cap = 2 * SERVING_HISTORY
    ring = np.zeros((len(ends), cap, 5))
    for k, end in enumerate(ends):  # symbol k's newest candles end at ring position 100 * k + 30 (wrapping)
        rows = ohlcv[end - min(end, cap) : end]
        ring[k, (100 * k + 30 - len(rows) + np.arange(len(rows))) % cap] = rows
    lengths = [min(end, SERVING_HISTORY) for end in ends]
    newest = [int(ts[end - 1]) for end in ends]
    many = feature_set.newest_ring(
        ring,
        np.arange(len(ends)),
        np.array([(100 * k + 30) % cap for k in range(len(ends))]),
        np.array(lengths),
        np.array(newest),
    )
    assert many.shape == (len(ends), len(feature_set.names))
    for row, end in zip(many, ends):
        assert list(row) == list(feature_set.newest(ohlcv[:end], int(ts[end - 1])).values())  # bit for bit


def test_the_candle_close_in_one_call(
    stack: Stack, serve_candles: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    symbols = _symbols()
    seeded = stack.stub.EnhanceSignals(
        pb.EnhanceSignalsRequest(
            requests=[_item(s, candles_pb(_window(serve_candles, i, SERVING_HISTORY))) for i, s in enumerate(symbols)]
        ),
        timeout=30,
    )
    assert [r.code for r in seeded.results] == [0] * N, [r.message for r in seeded.results]

    calls: list[int] = []
    predict_rows = handlers._predict_rows

    def spy(model, x: np.ndarray) -> list[float]:
        calls.append(len(x))
        return predict_rows(model, x)

    monkeypatch.setattr(handlers, "_predict_rows", spy)
    commits = stack.engine.group_stats["commits"]
    close = [
        _item(s, [candle_pb(tuple(_window(serve_candles, i, SERVING_HISTORY + 1).iloc[-1]))])
        for i, s in enumerate(symbols)
    ]
    close[3].price = -1.0  # one bad item
    close[5].symbol = ""  # and another
    reply = stack.stub.EnhanceSignals(pb.EnhanceSignalsRequest(requests=close), timeout=30)
    results = reply.results
    assert len(results) == N
    bad = {3: "price", 5: "symbol"}
    for i, r in enumerate(results):
        if i in bad:
            assert r.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and r.message.startswith(bad[i]), r
            assert not r.HasField("signal")
        else:
            assert r.code == 0 and r.signal.symbol == symbols[i] and r.signal.HasField("ml_confidence"), r
    assert calls == [N - 2]  # the model once, on the stacked rows (the bad items never reach it)
    assert stack.engine.group_stats["commits"] == commits + 1  # one commit for its decisions
    ids = [r.signal.decision_id for r in results if r.code == 0]
    assert len(stack.store.decision_event_ids(ids)) == N - 2  # stored when answered

    # the same predictions as a single call makes (the one-row compiled path, no cache: a new name)
    for i in (0, 7):
        window = _window(serve_candles, i, SERVING_HISTORY + 1)
        single = stack.stub.PredictReversal(
            pb.PredictReversalRequest(symbol=f"ALONE{i}USDT", candles=candles_pb(window)), timeout=10
        )
        assert abs(single.confidence - results[i].signal.ml_confidence) < 1e-9

    assert stack.stub.EnhanceSignals(pb.EnhanceSignalsRequest(), timeout=10).results == []
    with pytest.raises(grpc.RpcError) as err:
        stack.stub.EnhanceSignals(pb.EnhanceSignalsRequest(requests=[_item("A", [])] * 5001), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and err.value.details().startswith("requests:")


def test_the_client_and_grpcurl_call_it(grpcurl: str, stack: Stack, serve_candles: pd.DataFrame) -> None:  # noqa: F811
    history = serve_candles.iloc[:SERVING_HISTORY]
    nxt = serve_candles.iloc[SERVING_HISTORY : SERVING_HISTORY + 1]
    ts = nxt["ts"].iloc[0]
    with MemClient(stack.address, timeout_s=10) as client:
        answers = client.enhance_signals(
            [
                {
                    "symbol": "BTCUSDT",
                    "action": "BUY",
                    "base_confidence": 0.7,
                    "price": 100.0,
                    "time": ts,
                    "candles": history,
                },
                {"symbol": "BTCUSDT", "action": "BUY", "base_confidence": 2.0, "price": 100.0, "time": ts},
            ]
        )
    first, second = answers
    assert not isinstance(first, MemClientError) and first.symbol == "BTCUSDT" and first.ml_confidence is not None
    assert isinstance(second, MemClientError) and second.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "base_confidence" in str(second)

    request = {
        "requests": [
            {
                "symbol": "BTCUSDT",
                "action": "ACTION_SELL",
                "baseConfidence": 0.6,
                "price": float(nxt["close"].iloc[0]),
                "time": pd.Timestamp(ts).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "candles": _candles_json(nxt),
                "requestId": "grpcurl-batch-1",
            },
            {"symbol": "BTCUSDT", "action": "ACTION_UNSPECIFIED", "baseConfidence": 0.6, "price": 1.0},
        ]
    }
    done = _run(grpcurl, stack.address, "mem.v1.MemService/EnhanceSignals", data=request)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)["results"]
    assert results[0]["signal"]["symbol"] == "BTCUSDT" and results[0]["signal"]["decision_id"], results
    assert results[1]["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0] and results[1]["message"].startswith(
        "action"
    )
    again = json.loads(_run(grpcurl, stack.address, "mem.v1.MemService/EnhanceSignals", data=request).stdout)["results"]
    assert again[0]["signal"]["replayed"] and again[0]["signal"]["decision_id"] == results[0]["signal"]["decision_id"]
