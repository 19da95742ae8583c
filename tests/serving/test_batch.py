"""EnhanceSignals, the candle close in one call, against the real server: one result per item in
order, each with its own status (a bad item fails alone), one model call for the batch, one
commit for its decisions (each stored before the answer), the same predictions as single calls;
the Python client and grpcurl (reflection only) call it."""

from __future__ import annotations

import json
import operator

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


def test_the_replies_are_the_bytes_built_after_the_commit(
    stack: Stack, serve_candles: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reply made while the decisions commit is sent when every decision committed as new;
    otherwise (a replay, a conflicting id, an item refused at the edge) it is made again. Either
    way byte for byte the reply built from the final results, each item as EnhanceSignal answers
    it alone."""
    from mem_serving import converters as conv

    finals: list[list] = []  # each call's results from the handlers
    built: list[list] = []  # the results each reply message was built from
    enhance, build = stack.handlers.enhance, conv.ReplyAhead.ahead

    async def kept(*args):
        finals.append(await enhance(*args))
        return finals[-1]

    monkeypatch.setattr(stack.handlers, "enhance", kept)
    monkeypatch.setattr(conv.ReplyAhead, "ahead", lambda reply, results: built.append(results) or build(reply, results))
    when = now_pb()
    items = [
        _item(s, candles_pb(_window(serve_candles, i, SERVING_HISTORY)), time=when) for i, s in enumerate(_symbols())
    ]
    for item in items[:3]:
        item.request_id = f"first-{item.symbol}"
    call, one = (
        stack.channel.unary_unary("/mem.v1.MemService/EnhanceSignals"),
        stack.channel.unary_unary("/mem.v1.MemService/EnhanceSignal"),
    )

    raw = call(pb.EnhanceSignalsRequest(requests=items).SerializeToString(), timeout=30)  # every decision new
    assert len(built) == 1 and all(map(operator.is_, built[0], finals[-1]))  # made ahead, from the results sent
    assert raw == _reply(finals[-1])
    first = pb.EnhanceSignalsResponse.FromString(raw).results
    assert [r.code for r in first] == [0] * N and not any(r.signal.replayed for r in first)

    conflicting = pb.EnhanceSignalRequest()
    conflicting.CopyFrom(items[1])
    conflicting.base_confidence = 0.3  # another request with the id of items[1]
    invalid = _item("BADUSDT", [], price=-1.0, time=when)
    close = [
        _item(s, [candle_pb(tuple(_window(serve_candles, i, SERVING_HISTORY + 1).iloc[-1]))], time=when)
        for i, s in enumerate(_symbols())
    ]
    close[:2] = [items[0], conflicting]  # a replay, a conflicting id, new decisions
    close[4].request_id = "new-one"
    raw = call(pb.EnhanceSignalsRequest(requests=close).SerializeToString(), timeout=30)
    assert len(built) == 3 and raw == _reply(finals[-1])  # made ahead, then again after the commit
    got = pb.EnhanceSignalsResponse.FromString(raw).results
    assert got[0].signal.replayed and got[0].signal.decision_id == first[0].signal.decision_id
    assert got[1].code == grpc.StatusCode.ALREADY_EXISTS.value[0] and not any(r.signal.replayed for r in got[2:])
    assert len(stack.store.decision_event_ids([r.signal.decision_id for r in got[2:]])) == N - 2
    raw = call(pb.EnhanceSignalsRequest(requests=[invalid, items[2]]).SerializeToString(), timeout=30)
    (refused,) = conv.enhance_queries(pb.EnhanceSignalsRequest(requests=[invalid]), 10, 10)
    assert raw == _reply([refused, *finals[-1]])  # an item refused at the edge, a replay
    bad, replayed = pb.EnhanceSignalsResponse.FromString(raw).results
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and replayed.signal.replayed

    # each item alone: the replays' bytes, the same statuses (a new item: stored, then answered replayed)
    assert one(items[0].SerializeToString(), timeout=10) == got[0].signal.SerializeToString()
    assert one(items[2].SerializeToString(), timeout=10) == replayed.signal.SerializeToString()
    for request, answer in ((conflicting, got[1]), (invalid, bad)):
        with pytest.raises(grpc.RpcError) as err:
            one(request.SerializeToString(), timeout=10)
        assert (err.value.code().value[0], err.value.details()) == (answer.code, answer.message)
    again = pb.EnhancedSignal.FromString(one(close[4].SerializeToString(), timeout=10))
    assert again.replayed and again.decision_id == got[4].signal.decision_id


def _reply(results: list) -> bytes:
    """The reply to ``results`` as EnhanceSignals built it before any was made ahead."""
    from mem_serving.converters import signal_fields
    from mem_serving.errors import to_status

    reply = pb.EnhanceSignalsResponse()
    for r in results:
        if isinstance(r, Exception):
            code, message = to_status(r, "EnhanceSignals")
            reply.results.add(code=code.value[0], message=message)
        else:
            reply.results.add(signal=signal_fields(r))
    return reply.SerializeToString()
