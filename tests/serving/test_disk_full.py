"""A full disk behind the server (SQLite's page cap on the memory store standing in for it):
writes answer RESOURCE_EXHAUSTED with a clear message, health turns NOT_SERVING while they fail
and SERVING again once a write succeeds, reads keep working, and no acknowledged write is lost."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from mem_memory import MemoryStore
from mem_serving.api import pb

from .helpers import both_health as _health
from .helpers import enhance_buy, now_pb
from .helpers import wait_both_health as _wait_health
from .stack import start_stack

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


def test_a_full_disk_is_resource_exhausted_and_not_serving_until_space_returns(
    mlflow_uri: str, tmp_path: Path, warm_features: None
) -> None:
    db = tmp_path / "memory.db"
    s = start_stack(mlflow_uri, db)
    s.engine.write_health.interval_s = 0.1

    def enhance(i: int) -> pb.EnhancedSignal:
        return enhance_buy(s.stub, i)

    def log_outcome(decision_id: str) -> pb.LogOutcomeResponse:
        return s.stub.LogOutcome(
            pb.LogOutcomeRequest(
                decision_id=decision_id,
                entry_price=100,
                exit_price=101,
                size=0.01,
                pnl=1,
                pnl_pct=0.01,
                exit_reason="tp",
                time=now_pb(),
            ),
            timeout=10,
        )

    acknowledged, closed = [enhance(i).decision_id for i in range(3)], []
    try:
        assert _health(s.channel) == (SERVING, SERVING)
        s.store.set_max_bytes(0)  # the disk fills up: only the pages the store has now
        s.store.set_max_bytes((s.store.max_pages + 4) * 4096)
        for i in range(3, 3000):
            try:
                acknowledged.append(enhance(i).decision_id)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
                assert (
                    "memory store" in exc.details()
                    and "is full" in exc.details()
                    and "nothing was stored" in exc.details()
                )
                break
        else:
            pytest.fail("the store never filled up")
        assert _wait_health(s.channel, NOT_SERVING) == (NOT_SERVING, NOT_SERVING)
        with pytest.raises(grpc.RpcError) as err:
            for d_id in acknowledged:  # outcomes are refused too once no page is left
                log_outcome(d_id)
                closed.append(d_id)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert s.stub.GetParameters(pb.GetParametersRequest(), timeout=10).version  # reads work
        assert s.handlers.metrics.requests.labels("EnhanceSignal", "RESOURCE_EXHAUSTED")._value.get() >= 1
        time.sleep(0.5)
        assert _health(s.channel) == (NOT_SERVING, NOT_SERVING)  # still full: the probe keeps failing

        s.store.set_max_bytes(None)  # space is freed: health recovers with no client write
        assert _wait_health(s.channel, SERVING) == (SERVING, SERVING)
        acknowledged.append(enhance(10_000).decision_id)
        closed.append(log_outcome(acknowledged[-1]).decision_id)
    finally:
        s.channel.close()
        s.running.stop(grace=1.0)

    store = MemoryStore.open(db)
    try:
        assert set(store.decision_event_ids(acknowledged)) == set(acknowledged)  # 0 acknowledged writes lost
        assert store.counts() == {"decisions": len(acknowledged), "outcomes": len(closed), "shadow_outcomes": 0}
    finally:
        store.close()
