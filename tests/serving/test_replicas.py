"""Serving replicas sharing one PostgreSQL memory store (issue 14): two gRPC servers on different
ports, each with its own engine and connection, over one database of the session's PostgreSQL
cluster. Decisions come from both; outcomes are logged on either, concurrently; no adjustment is
lost (``position_size`` after n wins is start x 1.02^n, every step logged once) and each replica
sees the other's learned changes within its refresh interval."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mem_memory import MemoryConfig
from mem_serving.api import pb
from mem_testing.pg_cluster import PgCluster

from .helpers import now_pb
from .stack import Stack, start_stack

N_WINS = 24  # 0.02 x 1.02^24 = 0.0322: inside the 10% cap, so every step applies


@pytest.fixture
def replicas(postgres: PgCluster, empty_mlflow_uri: str, warm_features: None) -> Iterator[tuple[Stack, Stack]]:
    url = postgres.create_db("replicas")
    a = start_stack(empty_mlflow_uri, url)  # type: ignore[arg-type]  # a URL where a path usually goes
    b = start_stack(empty_mlflow_uri, url)  # type: ignore[arg-type]
    yield a, b
    for s in (a, b):
        s.channel.close()
        s.running.stop(grace=1.0)
    postgres.drop_db(url)


def _enhance(stack: Stack, symbol: str) -> pb.EnhancedSignal:
    ml = pb.MlPrediction(confidence=0.8, direction=pb.DIRECTION_BULLISH, model_version="client")
    return stack.stub.EnhanceSignal(
        pb.EnhanceSignalRequest(
            symbol=symbol,
            action=pb.ACTION_BUY,
            base_confidence=0.9,
            price=100.0,
            time=now_pb(),
            strategy="momentum",
            ml_prediction=ml,
        ),
        timeout=10,
    )


def _win(stack: Stack, decision_id: str) -> pb.LearningUpdate:
    return stack.stub.LogOutcome(
        pb.LogOutcomeRequest(
            decision_id=decision_id,
            entry_price=100,
            exit_price=101,
            size=0.01,
            pnl=1,
            pnl_pct=0.01,
            exit_reason="take_profit",
            time=now_pb(),
        ),
        timeout=30,
    )


def _size(stack: Stack) -> float:
    return stack.stub.GetParameters(pb.GetParametersRequest(), timeout=10).parameters["position_size"]


def test_two_replicas_share_one_postgresql_memory(replicas: tuple[Stack, Stack], tmp_path: Path) -> None:
    a, b = replicas
    assert a.running.port != b.running.port
    assert a.store.backend == b.store.backend == "postgresql"  # type: ignore[attr-defined]
    assert a.store.store_id == b.store.store_id  # type: ignore[attr-defined]  # one store, two connections
    start = MemoryConfig().parameters["position_size"]
    assert _size(a) == _size(b) == pytest.approx(start)

    # decisions from both replicas, concurrently
    signals: list[pb.EnhancedSignal] = []
    lock = threading.Lock()

    def decide(stack: Stack, k: int) -> None:
        for i in range(N_WINS // 2):
            s = _enhance(stack, f"SYM{k}{i % 3}")
            with lock:
                signals.append(s)

    threads = [threading.Thread(target=decide, args=(s, k)) for k, s in enumerate((a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(signals) == N_WINS and all(s.action == pb.ACTION_BUY for s in signals)

    # outcomes on either replica, from four threads at once: each decision's outcome goes to the
    # replica that did NOT make it for half of them
    errors: list[BaseException] = []

    def close(part: list[pb.EnhancedSignal], k: int) -> None:
        try:
            for i, s in enumerate(part):
                _win((a, b)[(k + i) % 2], s.decision_id)
        except BaseException as exc:  # noqa: BLE001  # reported below
            errors.append(exc)

    parts = [signals[k::4] for k in range(4)]
    threads = [threading.Thread(target=close, args=(p, k)) for k, p in enumerate(parts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors

    expected = start * 1.02**N_WINS
    # each replica sees every learned step within its refresh interval (1 s), whichever server took it
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and not (
        _size(a) == pytest.approx(expected, rel=1e-6) and _size(b) == pytest.approx(expected, rel=1e-6)
    ):
        time.sleep(0.1)
    latest = a.store.latest_parameters()  # type: ignore[attr-defined]
    assert latest is not None and latest[1].values["position_size"] == pytest.approx(expected, rel=1e-6)
    assert _size(a) == pytest.approx(expected, rel=1e-6)
    assert _size(b) == pytest.approx(expected, rel=1e-6)

    # the log: consecutive ids, every decision and outcome once, one size step per outcome
    store = a.store
    events = list(store.iter_events())  # type: ignore[attr-defined]
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))
    kinds = [e.kind for e in events]
    assert kinds.count("decision") == N_WINS and kinds.count("outcome") == N_WINS
    steps = [
        adj
        for _, adjustments in store.parameter_changes_after(0)  # type: ignore[attr-defined]
        for adj in adjustments
        if adj.parameter == "position_size"
    ]
    assert len(steps) == N_WINS
    assert sorted(s.trigger for s in steps) == sorted(f"outcome:{s.decision_id}" for s in signals)


def test_a_learned_change_on_one_replica_reaches_the_other_within_its_refresh_interval(
    replicas: tuple[Stack, Stack],
) -> None:
    a, b = replicas
    before = _size(b)
    s = _enhance(a, "ONE")
    _win(a, s.decision_id)
    changed = time.monotonic()
    while _size(b) == pytest.approx(before):
        assert time.monotonic() - changed < 3.0, "replica b never saw replica a's learned change"
        time.sleep(0.05)
    seen = time.monotonic() - changed
    assert seen <= 1.0 + 0.5  # refresh_interval_s (1 s) plus a poll's slack on 2 busy cores
    assert _size(b) == pytest.approx(before * 1.02)


def test_two_mem_serve_processes_share_a_postgresql_memory_given_by_env(
    postgres: PgCluster, empty_mlflow_uri: str, tmp_path: Path
) -> None:
    """``MEM_MEMORY_DB=postgresql://…`` and two ``mem serve`` processes: a decision on one, its
    outcome on the other, the learned size on both; GetModelInfo names the same store."""
    import json
    import os
    import subprocess
    import sys

    import grpc

    from mem_serving.api import MemServiceStub

    url = postgres.create_db("serve")
    env = {
        **os.environ,
        "MEM_HOME": str(tmp_path),
        "MLFLOW_TRACKING_URI": empty_mlflow_uri,
        "MEM_MEMORY_DB": url,
        "MEM_SERVING_CANDLE_SINK": "off",
        "MEM_QUESTDB_PG_PORT": "1",
    }
    env.pop("MEM_SERVING_TOKEN", None)
    env.pop("MEM_MEMORY_KEY", None)
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mem_cli.main", "serve", "--port", "0", "--metrics-port", "-1"],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    channels: list[grpc.Channel] = []
    try:
        stubs = []
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            assert line, p.stderr.read() if p.stderr else ""
            channels.append(grpc.insecure_channel(json.loads(line)["grpc"]))
            stubs.append(MemServiceStub(channels[-1]))
        infos = [s.GetModelInfo(pb.GetModelInfoRequest(), timeout=10).memory_store for s in stubs]
        assert infos[0].store_id == infos[1].store_id and infos[0].location == url
        ml = pb.MlPrediction(confidence=0.8, direction=pb.DIRECTION_BULLISH, model_version="client")
        signal = stubs[0].EnhanceSignal(
            pb.EnhanceSignalRequest(
                symbol="PROC", action=pb.ACTION_BUY, base_confidence=0.9, price=100.0, time=now_pb(), ml_prediction=ml
            ),
            timeout=10,
        )
        start = stubs[1].GetParameters(pb.GetParametersRequest(), timeout=10).parameters["position_size"]
        stubs[1].LogOutcome(
            pb.LogOutcomeRequest(
                decision_id=signal.decision_id,
                entry_price=100,
                exit_price=101,
                size=0.01,
                pnl=1,
                pnl_pct=0.01,
                exit_reason="take_profit",
                time=now_pb(),
            ),
            timeout=30,
        )
        deadline = time.monotonic() + 3.0
        sizes: list[float] = []
        while time.monotonic() < deadline:
            sizes = [s.GetParameters(pb.GetParametersRequest(), timeout=10).parameters["position_size"] for s in stubs]
            if all(x == pytest.approx(start * 1.02) for x in sizes):
                break
            time.sleep(0.1)
        assert sizes == [pytest.approx(start * 1.02)] * 2
    finally:
        for c in channels:
            c.close()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        postgres.drop_db(url)
