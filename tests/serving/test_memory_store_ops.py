"""Store operations beside a live `mem serve` process: a restore is refused while the server has
the store open under another name (a symlink, a relative path), and nothing the server
acknowledges is lost; a server started on a full disk answers reads with the memory read-only,
reports NOT_SERVING for writes and returns to SERVING by itself once space is freed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pandas as pd
import pytest
from grpc_health.v1 import health_pb2

from mem_core.features import SERVING_HISTORY
from mem_memory import MemoryEngine, MemoryStore
from mem_memory.backup import backup
from mem_serving.api import MemServiceStub, pb
from tests.memory.disk import small_disk
from tests.memory.helpers import request

from .helpers import both_health, candles_pb, enhance_buy, mem_serve_process, wait_both_health
from .stack import ModelStore

ROOT = Path(__file__).resolve().parents[2]
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


def _env(tmp_path: Path, mlflow_uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEM_MEMORY_", "MEM_SERVING_TOKEN"))}
    return env | {"MEM_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": mlflow_uri, "MEM_QUESTDB_PG_PORT": "1"}


class Served:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            proc.wait(timeout=30)
            pytest.fail(f"mem serve did not start: {proc.stderr.read() if proc.stderr else ''}")
        self.ready = json.loads(line)
        self.channel = grpc.insecure_channel(self.ready["grpc"])
        self.stub = MemServiceStub(self.channel)

    def stop(self) -> int:
        self.channel.close()
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture
def serve(tmp_path: Path, mlflow_uri: str, model_store: ModelStore) -> Iterator:
    started: list[subprocess.Popen[str]] = []

    def start(db: Path) -> Served:
        proc = mem_serve_process(_env(tmp_path, mlflow_uri), db)
        started.append(proc)
        return Served(proc)

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _restore(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEM_MEMORY_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "mem_cli.main", "memory", "restore", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_restore_is_refused_while_mem_serve_has_the_store_open_through_a_symlink(tmp_path: Path, serve) -> None:
    real = tmp_path / "data" / "memory.db"
    MemoryStore.open(real).close()
    good = backup(real, tmp_path / "backups").path
    link = tmp_path / "link.db"
    link.symlink_to(real)
    server = serve(link)  # the server names the store by the symlink, the operator by the real path
    acknowledged = [enhance_buy(server.stub, 0).decision_id]
    for args, cwd in (
        (("--memory-db", str(real)), ROOT),
        (("--memory-db", real.name), real.parent),  # a relative path
        (("--memory-db", str(link)), ROOT),
    ):
        done = _restore(good, "--force", *args, cwd=cwd)
        assert done.returncode == 1, (done.stdout, done.stderr)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and "in use by" in lines[0], done.stderr
        assert f"pid {server.proc.pid}" in lines[0]
        acknowledged.append(enhance_buy(server.stub, len(acknowledged)).decision_id)
    assert server.stop() == 0
    assert link.is_symlink() and not list(real.parent.glob("*before-restore*"))
    store = MemoryStore.open(real)
    try:
        assert set(store.decision_event_ids(acknowledged)) == set(acknowledged)  # none went to a moved-aside file
    finally:
        store.close()


def test_mem_serve_starts_on_a_full_disk_answers_reads_and_recovers_without_restart(
    tmp_path: Path, serve, serve_candles: pd.DataFrame
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        db = disk.path / "memory" / "memory.db"
        store = MemoryStore.open(db)
        try:
            earlier = MemoryEngine(store).enhance(request(symbol="BTCUSDT")).decision_id
        finally:
            store.close()
        disk.fill()
        server = serve(db)
        stub = server.stub
        assert wait_both_health(server.channel, NOT_SERVING) == (NOT_SERVING, NOT_SERVING)
        assert stub.GetParameters(pb.GetParametersRequest(), timeout=10).version
        stub.ListStrategies(pb.ListStrategiesRequest(), timeout=10)
        info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
        assert info.champion_version == server.ready["model_version"] and info.memory_store.store_id
        history = candles_pb(serve_candles.iloc[:SERVING_HISTORY])
        predicted = stub.PredictReversal(pb.PredictReversalRequest(symbol="BTCUSDT", candles=history), timeout=30)
        assert predicted.model_version == server.ready["model_version"]
        with pytest.raises(grpc.RpcError) as refused:
            enhance_buy(stub, 1)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "is full" in refused.value.details()
        assert both_health(server.channel) == (NOT_SERVING, NOT_SERVING)

        disk.free()  # no restart: the memory's probe finds the space
        assert wait_both_health(server.channel, SERVING, seconds=15) == (SERVING, SERVING)
        later = enhance_buy(stub, 2).decision_id
        assert server.stop() == 0
        store = MemoryStore.open(db)
        try:
            assert set(store.decision_event_ids([earlier, later])) == {earlier, later}
            assert store.integrity_check() == "ok"
        finally:
            store.close()
