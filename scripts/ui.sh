#!/usr/bin/env bash
# Open a UI on the same stores `mem main` and `mem serve` use:
#   bash scripts/ui.sh dagster            # Dagster UI on http://127.0.0.1:${PORT:-3000}
#   bash scripts/ui.sh mlflow             # MLflow UI on http://127.0.0.1:${PORT:-5000}
#   bash scripts/ui.sh --dry-run dagster  # print the environment and the command, run nothing
# Honours MEM_HOME (default: the project folder), DAGSTER_HOME (default: MEM_HOME), MEM_MEMORY_DB
# (default: <MEM_HOME>/.mem/memory/memory.db, the store `mem main` and `mem serve` write) and
# MLFLOW_TRACKING_URI (default: sqlite:///<MEM_HOME>/mlflow.db, artifacts in mlruns/ beside it),
# exactly as mem_core/settings.py and mem_pipelines/settings.py resolve them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY_RUN=""
if [ "${1:-}" = "--dry-run" ]; then DRY_RUN=1; shift; fi
case "${1:-}" in
  dagster|mlflow) ;;
  *) echo "usage: bash scripts/ui.sh [--dry-run] dagster|mlflow" >&2; exit 2 ;;
esac

# Resolved from the caller's directory, as `mem` resolves them, before anything changes directory.
MEM_HOME="$(realpath -m "${MEM_HOME:-$ROOT}")"
DAGSTER_HOME="$(realpath -m "${DAGSTER_HOME:-$MEM_HOME}")"
MEM_MEMORY_DB="${MEM_MEMORY_DB:-$MEM_HOME/.mem/memory/memory.db}"
case "$MEM_MEMORY_DB" in
  *://*) ;;  # a PostgreSQL URL: as given
  *) MEM_MEMORY_DB="$(realpath -m "$MEM_MEMORY_DB")" ;;
esac
MLFLOW_TRACKING_URI="${MLFLOW_TRACKING_URI:-sqlite:///$MEM_HOME/mlflow.db}"
case "$MLFLOW_TRACKING_URI" in
  sqlite:///*)  # a relative database path is relative to the caller's directory: made absolute
    DB="$(realpath -m "${MLFLOW_TRACKING_URI#sqlite:///}")"
    MLFLOW_TRACKING_URI="sqlite:///$DB"
    ARTIFACTS="$(dirname "$DB")/mlruns" ;;
  *) ARTIFACTS="$MEM_HOME/mlruns" ;;
esac
export MEM_HOME DAGSTER_HOME MEM_MEMORY_DB MLFLOW_TRACKING_URI

case "$1" in
  dagster) CMD=(.venv/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p "${PORT:-3000}") ;;
  mlflow)
    # The links in Dagster's metadata follow this URL (mem_pipelines/settings.py mlflow_ui_url):
    # MEM_MLFLOW_UI_URL if set, else this UI's own address, recorded under MEM_HOME/.mem.
    MLFLOW_UI_URL="${MEM_MLFLOW_UI_URL:-http://127.0.0.1:${PORT:-5000}}"
    MLFLOW_PORT="${PORT:-$(echo "$MLFLOW_UI_URL" | sed -nE 's#^[a-z]+://[^/:]+:([0-9]+).*#\1#p')}"
    # One worker and no job runner (a GenAI feature): 2 processes instead of ~15 on two cores.
    CMD=(env MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false .venv/bin/mlflow ui --backend-store-uri "$MLFLOW_TRACKING_URI"
         --default-artifact-root "$ARTIFACTS" -h 127.0.0.1 -p "${MLFLOW_PORT:-5000}" --workers 1) ;;
esac

if [ -n "$DRY_RUN" ]; then
  echo "MEM_HOME=$MEM_HOME"
  echo "DAGSTER_HOME=$DAGSTER_HOME"
  case "$MEM_MEMORY_DB" in *://*) echo "MEM_MEMORY_DB=<a PostgreSQL URL>" ;; *) echo "MEM_MEMORY_DB=$MEM_MEMORY_DB" ;; esac
  echo "MLFLOW_TRACKING_URI=$MLFLOW_TRACKING_URI"
  echo "cd $ROOT && ${CMD[*]}"
  exit 0
fi
if [ "$1" = mlflow ]; then mkdir -p "$MEM_HOME/.mem" && echo "$MLFLOW_UI_URL" > "$MEM_HOME/.mem/mlflow_ui_url"; fi
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"  # workspace.yaml and the relative storage paths of the project's dagster.yaml
if [ "$1" = dagster ]; then  # an instance outside the project gets the project's run queue and limits
  .venv/bin/python -c 'import sys; from pathlib import Path; from mem_pipelines.settings import ensure_instance_config; ensure_instance_config(Path(sys.argv[1]))' "$DAGSTER_HOME"
fi
exec "${CMD[@]}"
