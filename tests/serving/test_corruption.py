"""A served memory with one flipped bit in a decision, an outcome and a parameter set (clear and
encrypted): the server starts and stays SERVING, the call that needs a corrupt record answers
DATA_LOSS naming its event, every other call works, the metric counts the records, and
`mem memory verify` lists them and exits 1."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mem_memory import DECISION, OUTCOME, MemoryEngine, MemoryStore, Outcome, SignalRequest
from mem_serving.api import pb

from .helpers import now_pb
from .stack import start_stack

ROOT = Path(__file__).resolve().parents[2]


def _flip(db: Path, event_id: int, needle: bytes | None) -> None:
    import sqlite3

    with sqlite3.connect(db) as conn:
        blob = bytearray(conn.execute("SELECT payload FROM events WHERE event_id = ?", (event_id,)).fetchone()[0])
        at = blob.index(needle) + len(needle) if needle else len(blob) // 2
        blob[at] ^= 1
        conn.execute("UPDATE events SET payload = ? WHERE event_id = ?", (bytes(blob), event_id))
    conn.close()


def _plant(db: Path, key: bytes | None) -> tuple[list[str], dict[int, str]]:
    """Four decisions, two closed; then one bit flipped in an open decision, an outcome and the
    newest parameter set. Returns the decision ids and the corrupt events."""
    from datetime import UTC, datetime, timedelta

    store = MemoryStore.open(db, key=key)
    engine = MemoryEngine(store)
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    ds = [
        engine.enhance(
            SignalRequest("BTCUSDT", "BUY", 0.9, 100.0 + i, t0 + timedelta(minutes=i), "momentum", 0.8, "bullish", "1")
        )
        for i in range(4)
    ]
    for d in ds[:2]:
        engine.record_outcome(
            Outcome(d.decision_id, d.price, d.price * 1.01, 0.01, 1.0, 0.01, "tp", d.time + timedelta(minutes=5))
        )
    events = store.events_since(0)
    decision_event = next(e.event_id for e in events if e.kind == DECISION and e.subject == ds[2].decision_id)
    outcome_event = next(e.event_id for e in events if e.kind == OUTCOME and e.subject == ds[1].decision_id)
    parameter_event = store.parameter_history()[-1][0]
    store.close()
    _flip(db, decision_event, None if key else b'"decision_i')
    _flip(db, outcome_event, None if key else b'"exit_reaso')
    _flip(db, parameter_event, None if key else b'"position_size":0.0')
    return [d.decision_id for d in ds], {
        decision_event: DECISION,
        outcome_event: OUTCOME,
        parameter_event: "parameter_adjustment",
    }


def _verify(db: Path, key: bytes | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEM_MEMORY")}
    if key:
        env["MEM_MEMORY_KEY"] = base64.b64encode(key).decode()
    return subprocess.run(
        [sys.executable, "-m", "mem_cli.main", "memory", "verify", "--memory-db", str(db)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("encrypted", [False, True], ids=["clear", "encrypted"])
def test_a_corrupt_record_is_contained_by_the_server(
    mlflow_uri: str, tmp_path: Path, warm_features: None, encrypted: bool
) -> None:
    key = os.urandom(32) if encrypted else None
    db = tmp_path / "memory.db"
    ids, corrupt = _plant(db, key)
    s = start_stack(mlflow_uri, db, memory_key=key)
    try:
        health = health_pb2_grpc.HealthStub(s.channel).Check(
            health_pb2.HealthCheckRequest(service="mem.v1.MemService"), timeout=10
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        outcome = dict(entry_price=100, exit_price=101, size=0.01, pnl=1, pnl_pct=0.01, exit_reason="tp", time=now_pb())
        decision_event = next(e for e, k in corrupt.items() if k == DECISION)
        with pytest.raises(grpc.RpcError) as err:
            s.stub.LogOutcome(pb.LogOutcomeRequest(decision_id=ids[2], **outcome), timeout=10)
        assert (
            err.value.code() == grpc.StatusCode.DATA_LOSS
            and f"event {decision_event} is corrupt" in err.value.details()
        )
        learned = s.stub.LogOutcome(pb.LogOutcomeRequest(decision_id=ids[3], **outcome), timeout=10)  # a sound decision
        assert learned.win and learned.adjustments
        ml = pb.MlPrediction(confidence=0.8, direction=pb.DIRECTION_BULLISH, model_version="client")
        signal = s.stub.EnhanceSignal(
            pb.EnhanceSignalRequest(
                symbol="BTCUSDT",
                action=pb.ACTION_BUY,
                base_confidence=0.9,
                price=101.0,
                time=now_pb(),
                ml_prediction=ml,
            ),
            timeout=10,
        )
        assert signal.decision_id
        assert s.stub.GetParameters(pb.GetParametersRequest(), timeout=10).version
        assert s.handlers.metrics.registry.get_sample_value("mem_memory_corrupt_records") == 3

        done = _verify(db, key)  # beside the running server
        assert done.returncode == 1, done.stderr
        lines = done.stdout.strip().splitlines()
        assert sorted(int(line.split()[1]) for line in lines[:-1]) == sorted(corrupt)
        assert lines[-1].endswith("3 corrupt")
    finally:
        s.channel.close()
        s.running.stop(grace=1.0)


def test_verify_of_a_sound_store_exits_0_and_a_missing_one_1(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    MemoryStore.open(db).close()
    done = _verify(db, None)
    assert done.returncode == 0 and done.stdout.strip().endswith("0 events checked, sound")
    missing = _verify(tmp_path / "nowhere.db", None)
    assert missing.returncode == 1 and missing.stderr.startswith("error: no memory store at")
