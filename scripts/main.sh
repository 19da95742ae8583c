#!/usr/bin/env bash
# Set up everything (idempotent) and run the main job: local QuestDB, sample candles, pipeline.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
export DAGSTER_HOME="${DAGSTER_HOME:-$ROOT}"
exec .venv/bin/mem main "$@"
