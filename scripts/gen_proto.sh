#!/usr/bin/env bash
# Regenerate the committed Python gRPC stubs from proto/ (grpcio-tools, with .pyi stubs).
#   bash scripts/gen_proto.sh            # into mem_serving/_gen (commit the result)
#   bash scripts/gen_proto.sh OUT_DIR    # elsewhere (the staleness test compares the two)
# Modules land at <out>/mem/v1/mem_pb2.py, so the descriptor keeps its canonical file name
# "mem/v1/mem.proto" (reflection, other languages); the one cross-module import protoc writes
# ("from mem.v1 import mem_pb2") is rewritten to the package path mem_serving._gen.mem.v1.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/mem_serving/_gen}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
mkdir -p "$OUT"
rm -rf "$OUT/mem"
cd "$ROOT"
"$PY" -m grpc_tools.protoc -I proto \
  --python_out="$OUT" --pyi_out="$OUT" --grpc_python_out="$OUT" \
  proto/mem/v1/*.proto
for f in "$OUT"/mem/v1/*_pb2_grpc.py "$OUT"/mem/v1/*_pb2.py "$OUT"/mem/v1/*.pyi; do
  sed -i -E 's/^from mem\.v1 import /from mem_serving._gen.mem.v1 import /' "$f"
done
touch "$OUT/mem/__init__.py" "$OUT/mem/v1/__init__.py"
