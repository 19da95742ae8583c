"""A batch's decisions encoded together (``Codec.encode_many``, ``StoreWrites.prepare_decisions``)
are stored as ``Codec.encode(DECISION, d.to_dict())`` stores each one: the same JSON bytes, and
under a key a payload that opens to them and reads back as the same record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mem_memory.crypto import Codec
from mem_memory.serial import json_values
from mem_memory.store import MemoryStore
from mem_memory.types import DECISION, Decision, record_maker, trusted

KEY = bytes(range(32))
text = st.text(max_size=12)  # non-ASCII and lone surrogates included (orjson refuses those: json's path)
number = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**70), 2**70)
unit = st.floats(0.0, 1.0)
positive = st.floats(0.0, 1e9) | st.sampled_from([0.0, 1e-300, 5e-324])
names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)


@st.composite
def times(draw: st.DrawFn) -> datetime:
    t = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)))
    return t.replace(microsecond=0) if draw(st.booleans()) else t


@st.composite
def decisions(draw: st.DrawFn) -> Decision:
    features: Any = draw(st.dictionaries(names, number | st.builds(np.float64, unit), max_size=6))
    context: Any = draw(st.dictionaries(text, text, max_size=3))
    if draw(st.booleans()):  # as the checked constructor and the store keep them
        features, context = MappingProxyType(features), MappingProxyType(context)
    return trusted(
        Decision,
        decision_id=draw(text),
        time=draw(times()),
        symbol=draw(text),
        strategy=draw(text),
        action=draw(st.sampled_from(["BUY", "SELL", "HOLD"])),
        base_action=draw(st.sampled_from(["BUY", "SELL", "HOLD"])),
        price=draw(positive | st.integers(1, 10**6)),
        base_confidence=draw(unit),
        ml_confidence=draw(st.none() | unit),
        memory_confidence=draw(st.none() | unit),
        confidence=draw(unit),
        size=draw(positive),
        stop_loss=draw(positive),
        take_profit=draw(positive),
        stop_loss_pct=draw(positive),
        take_profit_pct=draw(positive),
        reasoning=draw(text),
        learned_strategy=draw(st.none() | names),
        model_version=draw(st.none() | text),
        ml_direction=draw(st.sampled_from([None, "bullish", "bearish"])),
        features=features,
        regime=draw(text),
        parameters_version=draw(text),
        session_id=draw(text),
        market_context=context,
    )


@settings(max_examples=300, deadline=None)
@given(batch=st.lists(decisions(), max_size=5))
def test_a_batch_is_encoded_as_each_decision_alone(batch: list[Decision]) -> None:
    clear, sealed = Codec(None), Codec(KEY)
    alone = [clear.encode(DECISION, d.to_dict()) for d in batch]
    assert clear.encode_many(DECISION, batch) == alone
    payloads = sealed.encode_many(DECISION, batch)
    assert len(set(payloads)) == len(payloads)  # a nonce of its own each
    for d, payload, plain in zip(batch, payloads, alone, strict=True):
        assert sealed._open(DECISION, payload) == plain
        assert (
            sealed.decode(DECISION, payload)
            == clear.decode(DECISION, plain)
            == sealed.decode(DECISION, sealed.encode(DECISION, d.to_dict()))
        )


@settings(max_examples=100, deadline=None)
@given(d=decisions())
def test_json_values_are_to_dict_with_times_and_dicts_as_they_are(d: Decision) -> None:
    values, stored = json_values(d), d.to_dict()
    assert values.keys() == stored.keys()
    assert values["time"] is d.time and values["time"].isoformat() == stored["time"]
    assert values["features"] == stored["features"] and (values["features"] is d.features) == (type(d.features) is dict)
    assert {k: v for k, v in values.items() if k != "time"} == {k: v for k, v in stored.items() if k != "time"}


def test_a_time_in_another_zone_or_of_a_subclass_is_written_as_text() -> None:
    class Stamp(datetime):
        pass

    base = trusted(Decision, **{**_fields(), "time": datetime(2026, 1, 1, tzinfo=UTC)})
    for t in (datetime(2026, 1, 1, 5, tzinfo=timezone(timedelta(hours=5))), Stamp(2026, 1, 1, tzinfo=UTC)):
        d = trusted(Decision, **{**_fields(), "time": t})
        assert json_values(d)["time"] == t.isoformat()
        assert Codec(None).encode_many(DECISION, [d]) == [Codec(None).encode(DECISION, d.to_dict())]
    assert json_values(base)["time"] is base.time


def test_prepared_decisions_are_those_prepared_one_by_one(tmp_path: Path) -> None:
    batch = [trusted(Decision, **{**_fields(), "decision_id": f"d-{i}", "symbol": f"S{i}USDT"}) for i in range(4)]
    ids, fps = ["", "r-1", "r-2", ""], ["", "", "fp", "fp"]
    for key in (None, KEY):
        store = MemoryStore.open(tmp_path / f"{key is None}.db", key)
        try:
            together = store.prepare_decisions(batch, ids, fps)
            alone = [store.prepare_decision(d, r, f) for d, r, f in zip(batch, ids, fps, strict=True)]
            assert [type(p) for p in together] == [type(p) for p in alone]
            assert [p._replace(payload=b"") for p in together] == [p._replace(payload=b"") for p in alone]
            assert [store.decision_from(1, p.payload) for p in together] == batch
            if key is None:
                assert together == alone
        finally:
            store.close()


def test_record_maker_builds_the_record_trusted_builds() -> None:
    values = _fields()
    made = record_maker(Decision)(*values.values())
    assert type(made) is Decision and made == trusted(Decision, **values) == Decision(**values)
    assert Decision.from_dict(made.to_dict()) == made

    @dataclass(frozen=True, slots=True, weakref_slot=True)  # a slot besides the fields: no twin layout
    class Weak:
        a: int
        b: str = "x"

    weak = record_maker(Weak)(1, "y")
    assert type(weak) is Weak and weak == Weak(1, "y")


def _fields() -> dict[str, Any]:
    return {
        "decision_id": "d-1",
        "time": datetime(2026, 1, 1, 12, 30, tzinfo=UTC),
        "symbol": "BTCUSDT",
        "strategy": "momentum",
        "action": "BUY",
        "base_action": "BUY",
        "price": 100.0,
        "base_confidence": 0.65,
        "ml_confidence": 0.7,
        "memory_confidence": None,
        "confidence": 0.67,
        "size": 0.02,
        "stop_loss": 98.0,
        "take_profit": 104.0,
        "stop_loss_pct": 0.02,
        "take_profit_pct": 0.04,
        "reasoning": "BUY at 0.67",
        "learned_strategy": None,
        "model_version": "7",
        "ml_direction": "bullish",
        "features": {"rsi14": 55.0},
        "regime": "normal",
        "parameters_version": "abc",
        "session_id": "",
        "market_context": {},
    }


def test_symbol_tags_are_the_tags_of_the_store_key_even_remembered(monkeypatch: Any) -> None:
    from mem_memory import crypto

    monkeypatch.setattr(crypto, "_SYMBOL_TAGS", 3)
    other = bytes(range(1, 33))
    codec = Codec(KEY, [other])
    symbols = ["BTCUSDT", "ETHUSDT", "BTCUSDT", "SOLUSDT", "DOGEUSDT", "ETHUSDT"]
    assert Codec(None).symbol_tags(symbols) == symbols
    for _ in range(2):  # the second time from what it remembers (up to 3)
        assert codec.symbol_tags(symbols) == [codec.tag(s) for s in symbols]
    codec.use_store_key(crypto.key_id(other))  # another store key: other tags
    assert codec.symbol_tags(symbols) == [codec.tag(s) for s in symbols] == [Codec(other).tag(s) for s in symbols]
