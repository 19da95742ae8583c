"""The records' one codec (``mem_memory.serial``) writes the bytes the hand-written
``to_dict`` methods of earlier releases wrote: every record of the committed fixture stores,
read back and written again, is byte for byte the stored payload."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mem_memory import InvalidRecord
from mem_memory.serial import OMIT_DEFAULT, STORED_NOT, Record
from mem_memory.types import (
    Decision,
    LearningUpdate,
    Outcome,
    ParameterAdjustment,
    Parameters,
    StrategySpec,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "memory"
PLAIN = sorted(FIXTURES.glob("*/plain.db"))


def _dumps(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), allow_nan=False).encode()  # as crypto.Codec.encode


def _again(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    if kind == "decision":
        return Decision.from_dict(payload).to_dict()
    if kind in ("outcome", "shadow_outcome"):
        return Outcome.from_dict(payload).to_dict()
    if kind == "strategy_upsert":
        return StrategySpec.from_dict(payload).to_dict()
    assert kind == "parameter_adjustment"
    return {
        "parameters": Parameters.from_dict(payload["parameters"]).to_dict(),
        "adjustments": [ParameterAdjustment.from_dict(a).to_dict() for a in payload["adjustments"]],
        "state": payload["state"],
    }


@pytest.mark.parametrize("db", PLAIN, ids=lambda p: p.parent.name)
def test_every_fixture_record_is_written_again_byte_for_byte(db: Path) -> None:
    conn = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)  # leaves the fixture untouched
    try:
        events = conn.execute("SELECT kind, payload FROM events ORDER BY event_id").fetchall()
        replies = conn.execute("SELECT reply FROM requests WHERE kind = 'outcome'").fetchall()
    finally:
        conn.close()
    kinds = {kind for kind, _ in events}
    assert kinds == {"decision", "outcome", "shadow_outcome", "parameter_adjustment", "strategy_upsert"}
    for kind, blob in events:
        assert _dumps(_again(kind, json.loads(blob))) == bytes(blob), kind
    assert replies
    for (reply,) in replies:  # an outcome's answer: a LearningUpdate, stored with its request id
        stored = json.loads(reply)
        if "answer" in stored:
            again: dict[str, Any] = {**stored, "answer": LearningUpdate.from_dict(stored["answer"]).to_dict()}
        else:  # stored before fingerprints existed: the answer alone
            again = LearningUpdate.from_dict(stored).to_dict()
        assert _dumps(again) == bytes(reply)


T = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def test_field_metadata_leaves_out_what_is_not_stored() -> None:
    adj = ParameterAdjustment("size", 1.0, 0.7, "monitor", "monitor", T, impact="+3%")
    assert "impact" not in adj.to_dict()
    assert ParameterAdjustment.from_dict({**adj.to_dict(), "impact": "x"}).impact is None
    out = Outcome("d1", 100.0, 101.0, 1.0, 1.0, 0.01, "target", T)
    assert "shadow" not in out.to_dict()  # the default is not written
    shadow = Outcome("d1", 100.0, 101.0, 1.0, 1.0, 0.01, "target", T, shadow=True)
    assert shadow.to_dict()["shadow"] is True
    assert Outcome.from_dict(shadow.to_dict()) == shadow
    assert out.to_dict()["time"] == "2026-01-02T03:04:05.678901+00:00"


def test_reading_validates_through_the_constructor() -> None:
    out = Outcome("d1", 100.0, 101.0, 1.0, 1.0, 0.01, "target", T).to_dict()
    with pytest.raises(InvalidRecord, match="entry_price"):
        Outcome.from_dict({**out, "entry_price": -1.0})
    with pytest.raises(TypeError):
        Outcome.from_dict({**out, "unknown": 1})
    with pytest.raises(TypeError):
        Outcome.from_dict({k: v for k, v in out.items() if k != "pnl"})


@dataclass(frozen=True, slots=True)
class _Inner(Record):
    n: int


@dataclass(frozen=True, slots=True)
class _Outer(Record):
    at: datetime
    one: _Inner
    maybe: _Inner | None
    many: tuple[_Inner, ...]
    tags: dict[str, str] = field(default_factory=dict)
    later: str = field(default="", metadata=STORED_NOT)
    flag: bool = field(default=False, metadata=OMIT_DEFAULT)


def test_a_new_record_gets_the_codec_from_its_fields() -> None:
    rec = _Outer(T, _Inner(1), None, (_Inner(2), _Inner(3)), {"a": "b"}, later="x", flag=True)
    d = rec.to_dict()
    assert d == {
        "at": T.isoformat(),
        "one": {"n": 1},
        "maybe": None,
        "many": [{"n": 2}, {"n": 3}],
        "tags": {"a": "b"},
        "flag": True,
    }
    assert list(d) == ["at", "one", "maybe", "many", "tags", "flag"]  # declaration order: stable bytes
    back = _Outer.from_dict(d)
    assert back == _Outer(T, _Inner(1), None, (_Inner(2), _Inner(3)), {"a": "b"}, flag=True)
