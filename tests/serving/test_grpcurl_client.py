"""An independent gRPC stack (grpcurl, Go) calls the server through reflection only: no stubs,
no proto file. Stands in for the C# engine. No skip: if grpcurl cannot be built, this fails."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from mem_core.features import SERVING_HISTORY

from .stack import ModelStore, Stack

ROOT = Path(__file__).resolve().parents[2]
GRPCURL_VERSION = "v1.9.4"  # keep in step with scripts/bootstrap.sh


@pytest.fixture(scope="session")
def grpcurl() -> str:
    path = Path(os.environ.get("MEM_GRPCURL") or ROOT / ".cache" / "bin" / "grpcurl")
    if not os.access(path, os.X_OK):
        bindir = ROOT / ".cache" / "bin"
        bindir.mkdir(parents=True, exist_ok=True)
        built = subprocess.run(
            ["go", "install", f"github.com/fullstorydev/grpcurl/cmd/grpcurl@{GRPCURL_VERSION}"],
            env={**os.environ, "GOBIN": str(bindir), "GOFLAGS": "-buildvcs=false"},
            capture_output=True,
            text=True,
        )
        if built.returncode != 0:
            pytest.fail(f"cannot build grpcurl {GRPCURL_VERSION}: {built.stderr[-2000:]}")
        path = bindir / "grpcurl"
    return str(path)


def _run(grpcurl: str, *args: str, data: object | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [grpcurl, "-plaintext", "-max-time", "20"]
    if data is not None:
        cmd += ["-d", "@"]
    return subprocess.run(
        [*cmd, *args], input=None if data is None else json.dumps(data), capture_output=True, text=True, timeout=60
    )


def _candles_json(frame: pd.DataFrame) -> list[dict]:
    return [
        {
            "ts": pd.Timestamp(r.ts).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "open": r.open,
            "high": r.high,
            "low": r.low,
            "close": r.close,
            "volume": r.volume,
        }
        for r in frame.itertuples(index=False)
    ]


def test_bootstrap_pins_the_same_grpcurl() -> None:
    assert (
        f'GRPCURL_VERSION="${{MEM_GRPCURL_VERSION:-{GRPCURL_VERSION}}}"'
        in (ROOT / "scripts" / "bootstrap.sh").read_text()
    )


def test_grpcurl_enhances_a_signal_through_reflection(
    grpcurl: str, stack: Stack, model_store: ModelStore, serve_candles: pd.DataFrame
) -> None:
    listed = _run(grpcurl, stack.address, "list")
    assert listed.returncode == 0, listed.stderr
    assert {"mem.v1.MemService", "grpc.health.v1.Health"} <= set(listed.stdout.split())

    health = _run(grpcurl, stack.address, "grpc.health.v1.Health/Check", data={"service": "mem.v1.MemService"})
    assert health.returncode == 0 and json.loads(health.stdout)["status"] == "SERVING", health.stderr

    history = serve_candles.iloc[:SERVING_HISTORY]
    request = {
        "symbol": "BTCUSDT",
        "action": "ACTION_BUY",
        "baseConfidence": 0.65,
        "price": float(history.close.iloc[-1]),
        "time": "2025-02-01T00:00:00Z",
        "strategy": "momentum",
        "candles": _candles_json(history),
        "marketContext": {"regime": "trend"},
        "sessionId": "grpcurl",
    }
    done = _run(grpcurl, stack.address, "mem.v1.MemService/EnhanceSignal", data=request)
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)  # grpcurl prints the proto field names
    assert reply.get("decision_id"), done.stdout
    assert reply["symbol"] == "BTCUSDT"
    assert reply["action"] in ("ACTION_BUY", "ACTION_HOLD")
    assert 0.0 <= reply.get("confidence", 0.0) <= 1.0
    assert reply["model_version"] == model_store.v1
    assert 0.0 <= reply["ml_confidence"] <= 1.0
    assert reply["base_confidence"] == 0.65
    assert reply["reasoning"]

    bad = _run(grpcurl, stack.address, "mem.v1.MemService/EnhanceSignal", data={**request, "symbol": ""})
    assert bad.returncode != 0
    assert "InvalidArgument" in bad.stderr and "symbol" in bad.stderr
