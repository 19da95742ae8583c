"""The memory's PostgreSQL server going away behind a running server: writes answer UNAVAILABLE,
health turns NOT_SERVING while they fail and SERVING again once the database is back (a probe
reconnects, with no call needed), and every acknowledged decision is still there."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from mem_memory import MemoryStore
from mem_serving.api import pb
from mem_testing.pg_cluster import PgCluster, find_bin

from .helpers import both_health as _health
from .helpers import enhance_buy
from .helpers import wait_both_health as _wait_health
from .stack import start_stack

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    """A cluster of this test's own (it is stopped and started again: not the session's)."""
    if find_bin() is None:
        pytest.fail("PostgreSQL is not installed (scripts/bootstrap.sh installs it)")
    cluster = PgCluster.start()
    yield cluster
    cluster.stop()


def test_the_memory_database_down_is_unavailable_and_not_serving_until_it_returns(
    own_cluster: PgCluster, mlflow_uri: str, tmp_path: Path, warm_features: None
) -> None:
    url = own_cluster.create_db("outage")
    s = start_stack(mlflow_uri, url)  # type: ignore[arg-type]  # a URL where a path usually goes
    s.engine.write_health.interval_s = 0.1

    def enhance(i: int) -> pb.EnhancedSignal:
        return enhance_buy(s.stub, i)

    try:
        acknowledged = [enhance(i).decision_id for i in range(3)]
        assert _health(s.channel) == (SERVING, SERVING)

        own_cluster.pause()
        with pytest.raises(grpc.RpcError) as err:
            enhance(3)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "PostgreSQL" in (err.value.details() or "")
        assert _wait_health(s.channel, NOT_SERVING) == (NOT_SERVING, NOT_SERVING)
        time.sleep(0.5)  # the probe keeps failing while the server is down: still NOT_SERVING
        assert _health(s.channel) == (NOT_SERVING, NOT_SERVING)

        own_cluster.resume()
        assert _wait_health(s.channel, SERVING) == (SERVING, SERVING)  # no call needed: the probe reconnects
        acknowledged.append(enhance(4).decision_id)
    finally:
        s.channel.close()
        s.running.stop(grace=1.0)
    with MemoryStore.open(url) as store:
        assert set(store.decision_event_ids(acknowledged)) == set(acknowledged)  # 0 acknowledged writes lost
