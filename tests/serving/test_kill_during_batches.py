"""``mem serve`` SIGKILLed during a stream of EnhanceSignals batches loses no acknowledged
decision: every decision a client got an answer for is in the store after a restart."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mem_memory import MemoryStore
from mem_serving.api import MemServiceStub, pb

from .helpers import children, mem_serve_process, now_pb
from .stack import ModelStore

SYMBOLS = 300  # more than async_commit.PART: each batch goes to the writer in parts
ML = pb.MlPrediction(confidence=0.8, direction=pb.DIRECTION_BULLISH, model_version="client")


def _batch(k: int) -> pb.EnhanceSignalsRequest:
    return pb.EnhanceSignalsRequest(
        requests=[
            pb.EnhanceSignalRequest(
                symbol=f"K{i:03d}USDT",
                action=pb.ACTION_BUY,
                base_confidence=0.9,
                price=100.0 + k,
                time=now_pb(),
                ml_prediction=ML,
                request_id=f"close-{k}-{i}",
            )
            for i in range(SYMBOLS)
        ]
    )


def _serve(tmp_path: Path, mlflow_uri: str):
    env = {**os.environ, "MEM_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": mlflow_uri, "MEM_QUESTDB_PG_PORT": "1"}
    env.pop("MEM_SERVING_TOKEN", None)
    proc = mem_serve_process(env, tmp_path / "m.db")
    return proc, json.loads(proc.stdout.readline())


def test_sigkill_during_batches_loses_no_acknowledged_decision(
    mlflow_uri: str, model_store: ModelStore, tmp_path: Path
) -> None:
    proc, ready = _serve(tmp_path, mlflow_uri)
    acked: list[str] = []
    sent: list[pb.EnhanceSignalsRequest] = []
    batches = 0
    failed: list[grpc.StatusCode] = []

    def stream(stub: MemServiceStub) -> None:
        nonlocal batches
        k = 0
        while True:
            sent.append(_batch(k))
            try:
                reply = stub.EnhanceSignals(sent[k], timeout=10)
            except grpc.RpcError as exc:  # the server is gone
                failed.append(exc.code())
                return
            assert all(r.code == 0 for r in reply.results), [r.message for r in reply.results if r.code]
            acked.extend(r.signal.decision_id for r in reply.results)
            batches += 1
            k += 1

    try:
        writers = children(proc.pid)
        with grpc.insecure_channel(ready["grpc"]) as channel:
            client = threading.Thread(target=stream, args=(MemServiceStub(channel),))
            client.start()
            deadline = time.monotonic() + 60
            while batches < 10 and client.is_alive() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert batches >= 10, failed
            os.kill(proc.pid, signal.SIGKILL)  # mid-stream: a batch is in flight or about to be
            proc.wait(timeout=10)
            client.join(30)
        assert failed and failed[0] in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), failed
        for pid in writers:  # the writer process ends when its parent's pipe closes
            for _ in range(100):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    proc, ready = _serve(tmp_path, mlflow_uri)  # a restart on the same store
    try:
        with grpc.insecure_channel(ready["grpc"]) as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="mem.v1.MemService"), timeout=10
            )
            assert status.status == health_pb2.HealthCheckResponse.SERVING
            # the last acknowledged batch again: answered from the store, nothing new
            again = MemServiceStub(channel).EnhanceSignals(sent[batches - 1], timeout=10).results
            assert all(r.code == 0 and r.signal.replayed for r in again), again[0]
            assert [r.signal.decision_id for r in again] == acked[-SYMBOLS:]
        store = MemoryStore.open(tmp_path / "m.db")
        try:
            stored = store.decision_event_ids(acked)
        finally:
            store.close()
        assert len(acked) == batches * SYMBOLS >= 10 * SYMBOLS
        assert len(stored) == len(acked), f"{len(acked) - len(stored)} acknowledged decisions lost"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
