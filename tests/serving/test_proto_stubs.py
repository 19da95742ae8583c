"""The committed stubs in mem_serving/_gen are exactly what scripts/gen_proto.sh makes from proto/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mem_serving.api import pb

ROOT = Path(__file__).resolve().parents[2]
GEN = ROOT / "mem_serving" / "_gen"


def test_committed_stubs_are_fresh(tmp_path: Path) -> None:
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen_proto.sh"), str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(
        p.relative_to(GEN) for p in (GEN / "mem").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    assert fresh == committed, "stub files differ: run scripts/gen_proto.sh and commit"
    for rel in fresh:
        assert (tmp_path / rel).read_bytes() == (GEN / rel).read_bytes(), (
            f"{rel} is stale: run scripts/gen_proto.sh and commit"
        )


def test_proto_is_versioned_and_names_the_csharp_namespace() -> None:
    assert pb.DESCRIPTOR.package == "mem.v1"
    assert pb.DESCRIPTOR.GetOptions().csharp_namespace == "Mem.V1"
    methods = [m.name for m in pb.DESCRIPTOR.services_by_name["MemService"].methods]
    assert methods == [
        "PredictReversal",
        "EnhanceSignal",
        "LogOutcome",
        "GetParameters",
        "ListStrategies",
        "PushCandles",
        "GetModelInfo",
        "EnhanceSignals",
    ]
    for enum in (pb.Action, pb.Direction):
        assert enum.Name(0).endswith("_UNSPECIFIED")
