"""Pure pieces of serving: candle validation, the TTL cache, the bearer check (the per-symbol
history: test_candle_history.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from mem_serving import converters as conv
from mem_serving.api import pb
from mem_serving.caches import TTLCache
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


def test_a_batch_parses_each_item_as_enhance_query_does() -> None:
    """One-candle items are checked together (columns); each answer is still the item's own."""
    far = Timestamp(seconds=4_000_000_000)  # beyond the future limit
    bad_candles = [
        dict(high=98.0),
        dict(close=math.nan),
        dict(volume=-1.0),
        dict(low=0.0, open=0.0, close=0.0),
        dict(open=102.0),
        dict(low=5e-13, open=1.0, close=1.0),
        dict(high=2e12),
        dict(volume=math.inf),
    ]
    items = [
        pb.EnhanceSignalRequest(
            symbol=f"S{i}USDT", action=pb.ACTION_BUY, base_confidence=0.5, price=100.0, candles=[_candle(i)]
        )
        for i in range(3)
    ]
    items += [
        pb.EnhanceSignalRequest(
            symbol="BADUSDT", action=pb.ACTION_SELL, base_confidence=0.5, price=100.0, candles=[_candle(0, **bad)]
        )
        for bad in bad_candles
    ]
    items += [
        pb.EnhanceSignalRequest(
            symbol="X",
            action=pb.ACTION_BUY,
            base_confidence=0.5,
            price=1.0,
            candles=[pb.Candle(ts=far, open=1, high=1, low=1, close=1)],
        ),
        pb.EnhanceSignalRequest(
            symbol="X",
            action=pb.ACTION_BUY,
            base_confidence=0.5,
            price=1.0,
            candles=[pb.Candle(open=1, high=1, low=1, close=1)],
        ),  # no ts
        pb.EnhanceSignalRequest(
            symbol="X",
            action=pb.ACTION_BUY,
            base_confidence=0.5,
            price=1.0,
            candles=[_candle(1, high=98.0)],
            session_id="s" * 200,
        ),  # the candle's error first
        pb.EnhanceSignalRequest(
            symbol="X", action=pb.ACTION_BUY, base_confidence=0.5, price=1.0, candles=[_candle(1)], session_id="s" * 200
        ),
        pb.EnhanceSignalRequest(symbol="X", action=pb.ACTION_BUY, base_confidence=1.5, price=1.0, candles=[_candle(1)]),
        pb.EnhanceSignalRequest(symbol="X", action=pb.ACTION_BUY, base_confidence=0.5, price=0.0, candles=[_candle(1)]),
        pb.EnhanceSignalRequest(symbol=" ", action=pb.ACTION_BUY, base_confidence=0.5, price=1.0, candles=[_candle(1)]),
        pb.EnhanceSignalRequest(
            symbol="Y",
            action=pb.ACTION_BUY,
            base_confidence=0.5,
            price=1.0,
            candles=[_candle(1), _candle(2)],
            request_id="r-1",
        ),
        pb.EnhanceSignalRequest(symbol="Y", action=7, base_confidence=0.5, price=1.0),
    ]
    batch = conv.enhance_queries(pb.EnhanceSignalsRequest(requests=items), 10, 100)
    assert len(batch) == len(items) and sum(isinstance(q, Exception) for q in batch) == len(items) - 4
    for item, got in zip(items, batch, strict=True):
        try:
            want = conv.enhance_query(item, 10)
        except InvalidArgument as exc:
            assert isinstance(got, InvalidArgument) and str(got) == str(exc)
            continue
        assert not isinstance(got, Exception)
        block, want_block = got.candles, want.candles
        assert (block is None) == (want_block is None)
        if block is not None and want_block is not None:
            assert block.ts_ms.dtype == np.int64 and block.ohlcv.dtype == np.float64
            assert block.ts_ms.tolist() == want_block.ts_ms.tolist()
            assert block.ohlcv.tolist() == want_block.ohlcv.tolist()
        got.candles = want.candles = None
        got.time = want.time
        assert got == want


def test_ttl_cache_expires_and_clears() -> None:
    now = [0.0]
    cache: TTLCache[int] = TTLCache(ttl_s=60, max_items=2, clock=lambda: now[0])
    cache.put_many([("a", 1)])
    assert cache.get_many(["a"]) == [1]
    now[0] = 61
    assert cache.get_many(["a"]) == [None]
    cache.put_many([("a", 1), ("b", 2), ("c", 3)])
    assert cache.get_many(["a", "c"]) == [None, 3]  # evicted beyond max_items
    assert cache.get_or_compute("d", lambda: 4) == 4 and cache.get_or_compute("d", lambda: 5) == 4
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


def test_the_model_cache_folder_comes_from_the_environment(tmp_path: Path) -> None:
    from mem_serving.settings import ServingSettings

    assert ServingSettings.from_env({"MEM_HOME": str(tmp_path)}).model_cache == (
        tmp_path.resolve() / ".mem" / "cache" / "models"
    )
    assert ServingSettings.from_env({"MEM_SERVING_MODEL_CACHE": " OFF "}).model_cache is None
    assert ServingSettings.from_env({"MEM_SERVING_MODEL_CACHE": "/var/cache/mem"}).model_cache == Path("/var/cache/mem")
    assert ServingSettings().model_cache is None  # servers built in code keep no copy unless told


def test_the_prediction_cache_holds_one_entry_per_symbol_however_many_candles_arrive() -> None:
    now = [0.0]
    cache: TTLCache[tuple[int, int]] = TTLCache(ttl_s=60, max_items=3, clock=lambda: now[0])
    for candle in range(10_000):  # a new candle per call: each replaces the symbol's entry
        cache.put_many([("BTCUSDT", (candle, candle))])
    assert len(cache) == 1 and cache.get_many(["BTCUSDT", "ETHUSDT"]) == [(9_999, 9_999), None]
    cache.put_many((s, (0, i)) for i, s in enumerate(("A", "B", "C")))
    assert len(cache) == 3 and cache.get_many(["BTCUSDT", "A", "C"]) == [None, (0, 0), (0, 2)]  # the oldest stored went
    now[0] = 61
    assert cache.get_many(["C"]) == [None]  # expired
