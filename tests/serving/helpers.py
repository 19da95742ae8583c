"""Real data, a real champion (from ``mem_testing.models``) and a TLS certificate for the serving tests."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mem_serving.api import SERVICE_NAME, MemServiceStub, pb

# re-exported: the serving tests import them from here
from mem_testing.models import TRAIN_ROWS, V1_PARAMS, V2_PARAMS, load_candles, promote, train_version  # noqa: F401
from mem_testing.serve_process import children  # noqa: F401


def candle_pb(row: pd.Series | tuple) -> pb.Candle:
    ts, o, h, lo, c, v = row
    stamp = Timestamp()
    stamp.FromMilliseconds(int(pd.Timestamp(ts).value // 1_000_000))
    return pb.Candle(ts=stamp, open=float(o), high=float(h), low=float(lo), close=float(c), volume=float(v))


def candles_pb(frame: pd.DataFrame) -> list[pb.Candle]:
    cols = frame[["ts", "open", "high", "low", "close", "volume"]]
    return [candle_pb(row) for row in cols.itertuples(index=False, name=None)]


def now_pb() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


def finite(x: float) -> bool:
    return bool(np.isfinite(x))


def self_signed_cert(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost`` and its key, as PEM files in ``tmp_path``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "server.crt", tmp_path / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def both_health(channel: grpc.Channel) -> tuple[int, int]:
    """Health of the server ("") and of ``mem.v1.MemService``."""
    stub = health_pb2_grpc.HealthStub(channel)
    return tuple(stub.Check(health_pb2.HealthCheckRequest(service=s), timeout=5).status for s in ("", SERVICE_NAME))  # type: ignore[return-value]


def wait_both_health(channel: grpc.Channel, want: int, seconds: float = 10.0) -> tuple[int, int]:
    """``both_health`` once both are ``want``, or what they are after ``seconds``."""
    deadline = time.monotonic() + seconds
    while (got := both_health(channel)) != (want, want) and time.monotonic() < deadline:
        time.sleep(0.05)
    return got


def enhance_buy(stub: MemServiceStub, i: int) -> pb.EnhancedSignal:
    """A BUY of BTCUSDT at price 100 + i with the client's own ML prediction (no candles needed)."""
    ml = pb.MlPrediction(confidence=0.8, direction=pb.DIRECTION_BULLISH, model_version="client")
    request = pb.EnhanceSignalRequest(
        symbol="BTCUSDT", action=pb.ACTION_BUY, base_confidence=0.9, price=100.0 + i, time=now_pb(), ml_prediction=ml
    )
    return stub.EnhanceSignal(request, timeout=10)


def mem_serve_process(env: dict[str, str], memory_db: Path, metrics_port: int = 0) -> subprocess.Popen[str]:
    """``mem serve --port 0`` as a process with ``env`` (stdout: its ready line; stderr piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "mem_cli.main", "serve", "--port", "0", "--metrics-port", str(metrics_port)]
        + ["--memory-db", str(memory_db)],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
