"""``mem serve`` as a process: ready line, health, metrics over HTTP, graceful stop on SIGTERM;
and TLS with a bearer token end to end."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mem_serving.api import MemServiceStub, pb

from .helpers import children, mem_serve_process, self_signed_cert
from .stack import ModelStore, start_stack

ROOT = Path(__file__).resolve().parents[2]


def test_mem_serve_runs_and_stops_gracefully_on_sigterm(
    mlflow_uri: str, model_store: ModelStore, tmp_path: Path
) -> None:
    env = {**os.environ, "MEM_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": mlflow_uri, "MEM_QUESTDB_PG_PORT": "1"}
    env.pop("MEM_SERVING_TOKEN", None)
    proc = mem_serve_process(env, tmp_path / "m.db")
    try:
        ready = json.loads(proc.stdout.readline())
        assert ready["model_version"] == model_store.v1 and not ready["auth"] and not ready["tls"]
        with grpc.insecure_channel(ready["grpc"]) as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="mem.v1.MemService"), timeout=10
            )
            assert status.status == health_pb2.HealthCheckResponse.SERVING
            assert MemServiceStub(channel).GetParameters(pb.GetParametersRequest(), timeout=10).version
        text = urllib.request.urlopen(ready["metrics"], timeout=10).read().decode()
        assert 'mem_requests_total{code="OK",method="GetParameters"} 1.0' in text
        assert (tmp_path / "m.db").stat().st_mode & 0o777 == 0o600
        kids = children(proc.pid)
        assert len(kids) == 1  # the memory's writer process
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in kids), "the writer process outlived mem serve"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "stopping" in proc.stderr.read()


def test_tls_with_bearer_token(mlflow_uri: str, tmp_path: Path, warm_features: None) -> None:
    cert, key = self_signed_cert(tmp_path)
    s = start_stack(mlflow_uri, tmp_path / "memory.db", tls_cert=cert, tls_key=key, token="tls-token")
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"localhost:{s.running.port}", creds) as channel:
            stub = MemServiceStub(channel)
            reply = stub.GetParameters(
                pb.GetParametersRequest(), timeout=10, metadata=(("authorization", "Bearer tls-token"),)
            )
            assert reply.version
            with pytest.raises(grpc.RpcError) as err:
                stub.GetParameters(pb.GetParametersRequest(), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with grpc.insecure_channel(f"localhost:{s.running.port}") as plain:  # plaintext is refused
            with pytest.raises(grpc.RpcError):
                MemServiceStub(plain).GetParameters(pb.GetParametersRequest(), timeout=3)
    finally:
        s.channel.close()
        s.running.stop(grace=1.0)
