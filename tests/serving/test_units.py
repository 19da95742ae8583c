"""Pure pieces of serving: candle validation, the TTL cache, the bearer check (the per-symbol
history: test_candle_history.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from mem_serving import converters as conv
from mem_serving.api import pb
from mem_serving.caches import NewestPerKey, TTLCache
from mem_serving.errors import InvalidArgument

STEP = 300_000


def _candle(i: int, **over: float) -> pb.Candle:
    ts = Timestamp()
    ts.FromMilliseconds(1_700_000_000_000 + i * STEP)
    values = dict(open=100.0, high=101.0, low=99.0, close=100.5, volume=3.0) | over
    return pb.Candle(ts=ts, **values)


def test_candles_become_a_columnar_block() -> None:
    block = conv.candles([_candle(i) for i in range(3)], 10)
    assert block is not None and len(block) == 3
    assert block.ts_ms.dtype == np.int64 and block.ohlcv.shape == (3, 5)
    assert list(np.diff(block.ts_ms)) == [STEP, STEP]
    assert conv.candles([], 10) is None


@pytest.mark.parametrize(
    "candle, field",
    [
        (dict(high=98.0), "candles[1].high"),
        (dict(close=math.nan), "candles[1].close"),
        (dict(volume=math.inf), "candles[1].volume"),
        (dict(volume=-1.0), "candles[1].volume"),
        (dict(low=0.0, open=0.0, close=0.0), "candles[1].low"),
        (dict(open=102.0), "candles[1].open"),
    ],
)
def test_bad_candle_values_name_the_field(candle: dict, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        conv.candles([_candle(0), _candle(1, **candle)], 10)
    assert err.value.field == field
    assert str(err.value).startswith(field)


def test_candle_times_must_be_set_and_ascending() -> None:
    with pytest.raises(InvalidArgument, match=r"candles\[1\]\.ts: is required"):
        conv.candles([_candle(0), pb.Candle(open=1, high=1, low=1, close=1)], 10)
    with pytest.raises(InvalidArgument, match=r"candles\[2\]\.ts: candles must be ascending"):
        conv.candles([_candle(0), _candle(2), _candle(1)], 10)
    with pytest.raises(InvalidArgument, match="at most 2 candles"):
        conv.candles([_candle(i) for i in range(3)], 2)


def test_ttl_cache_expires_and_clears() -> None:
    now = [0.0]
    cache: TTLCache[int] = TTLCache(ttl_s=60, max_items=2, clock=lambda: now[0])
    cache.put("a", 1)
    assert cache.get("a") == 1
    now[0] = 61
    assert cache.get("a") is None
    cache.put("a", 1), cache.put("b", 2), cache.put("c", 3)
    assert cache.get("a") is None and cache.get("c") == 3  # evicted beyond max_items
    cache.clear()
    assert len(cache) == 0


def test_timestamps_out_of_protobuf_range_are_rejected() -> None:
    bad = Timestamp(seconds=-5)
    with pytest.raises(InvalidArgument, match="time: out of range"):
        conv.timestamp(bad, "time", has=True, default=None)
    assert conv.timestamp(Timestamp(), "time", has=False, default=conv.now_utc).tzinfo is not None


def test_memory_writer_mode_comes_from_the_environment() -> None:
    from mem_serving.settings import ServingSettings

    assert ServingSettings.from_env({}).memory_writer_process is True
    assert ServingSettings.from_env({"MEM_SERVING_MEMORY_WRITER": "inline"}).memory_writer_process is False
    with pytest.raises(ValueError, match="MEM_SERVING_MEMORY_WRITER"):
        ServingSettings.from_env({"MEM_SERVING_MEMORY_WRITER": "thread"})


def test_the_front_comes_from_the_environment() -> None:
    from mem_serving.settings import ServingSettings

    assert ServingSettings.from_env({}).front == "grpc"
    assert ServingSettings.from_env({"MEM_SERVING_FRONT": " Go "}).front == "go"
    with pytest.raises(ValueError, match="MEM_SERVING_FRONT"):
        ServingSettings.from_env({"MEM_SERVING_FRONT": "nginx"})


def test_the_fronts_process_gets_no_secret_and_one_go_thread_unless_told() -> None:
    from mem_serving.settings import front_environment, go_build_environment

    env = {"PATH": "/bin", "MEM_SERVING_TOKEN": "t", "MEM_MEMORY_KEY": "k", "PGPASSWORD": "p", "GOGC": "200"}
    assert front_environment(env) == {"GOMAXPROCS": "1", "PATH": "/bin", "GOGC": "200"}
    assert front_environment({"GOMAXPROCS": "2"})["GOMAXPROCS"] == "2"
    build = go_build_environment(env)
    assert not [k for k in build if k.startswith("MEM_")] and build["CGO_ENABLED"] == "0"


def test_the_prediction_cache_holds_one_entry_per_symbol_however_many_candles_arrive() -> None:
    now = [0.0]
    cache: NewestPerKey[int] = NewestPerKey(ttl_s=60, max_keys=3, clock=lambda: now[0])
    for candle in range(10_000):  # a new candle per call: each replaces the symbol's entry
        cache.put("BTCUSDT", (candle, "v1"), candle)
    assert len(cache) == 1 and cache.get("BTCUSDT", (9_999, "v1")) == 9_999
    assert (
        cache.get("BTCUSDT", (9_998, "v1")) is None and cache.get("BTCUSDT", (9_999, "v2")) is None
    )  # other candle, other model
    for s in ("A", "B", "C"):
        cache.put(s, (0, "v1"), 0)
    assert len(cache) == 3 and cache.get("BTCUSDT", (9_999, "v1")) is None  # the least recently stored symbol went
    now[0] = 61
    assert cache.get("C", (0, "v1")) is None  # expired
