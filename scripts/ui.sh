#!/usr/bin/env bash
# Open a UI on the project's own stores: `bash scripts/ui.sh dagster` or `bash scripts/ui.sh mlflow`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
export DAGSTER_HOME="$ROOT"
case "${1:-}" in
  dagster) exec .venv/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p "${PORT:-3000}" ;;
  mlflow)  exec .venv/bin/mlflow ui --backend-store-uri "${MLFLOW_TRACKING_URI:-sqlite:///$ROOT/mlflow.db}" --default-artifact-root "$ROOT/mlruns" -h 127.0.0.1 -p "${PORT:-5000}" ;;
  *) echo "usage: bash scripts/ui.sh dagster|mlflow" >&2; exit 2 ;;
esac
