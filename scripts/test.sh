#!/usr/bin/env bash
# Set up everything (idempotent) and run the whole test suite against real QuestDB, MLflow and gRPC.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec .venv/bin/python -m pytest "$@"
