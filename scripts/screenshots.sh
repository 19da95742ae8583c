#!/usr/bin/env bash
# Screenshots for docs/ui.md, taken with headless Chromium (Debian package `chromium`):
#   bash scripts/screenshots.sh            # into docs/img/
# Uses the instance of a main job under MEM_HOME (default /tmp/mem-screenshots; runs
# `mem main` there first when it holds no MLflow store), starts the Dagster webserver and the
# MLflow UI on free loopback ports, takes the pictures, and stops what it started.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/docs/img}"
export MEM_HOME="$(realpath -m "${MEM_HOME:-/tmp/mem-screenshots}")"
export DAGSTER_HOME="$MEM_HOME"
export MLFLOW_TRACKING_URI="sqlite:///$MEM_HOME/mlflow.db"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
PY="$ROOT/.venv/bin/python"
CHROMIUM="$(command -v chromium || command -v chromium-browser || true)"
[ -n "$CHROMIUM" ] || { echo "chromium is missing: apt-get install chromium (as root)" >&2; exit 1; }
mkdir -p "$OUT" "$MEM_HOME"

if [ ! -f "$MEM_HOME/mlflow.db" ]; then
  echo "no main job under $MEM_HOME yet: running it (a few minutes)"
  "$PY" -m mem_cli.main main
fi

# the project's instance settings (no "join the community" dialog over the pictures)
"$PY" -c 'import sys; from pathlib import Path; from mem_pipelines.settings import ensure_instance_config; ensure_instance_config(Path(sys.argv[1]))' "$DAGSTER_HOME"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
DPORT="$(free_port)"; MPORT="$(free_port)"
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

"$PY" -m dagster_webserver -w workspace.yaml -h 127.0.0.1 -p "$DPORT" >"$MEM_HOME/screenshots-dagster.log" 2>&1 &
PIDS+=($!)
# as scripts/ui.sh mlflow starts it (one worker, no job runner), but on 127.0.0.2: MLflow opens its
# assistant panel over the page on a first visit to localhost/127.0.0.1, not on another loopback address
MHOST=127.0.0.2
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false "$ROOT/.venv/bin/mlflow" ui --backend-store-uri "$MLFLOW_TRACKING_URI" \
  --default-artifact-root "$MEM_HOME/mlruns" -h "$MHOST" -p "$MPORT" --workers 1 \
  --allowed-hosts "$MHOST,$MHOST:$MPORT" --cors-allowed-origins "http://$MHOST:$MPORT" >"$MEM_HOME/screenshots-mlflow.log" 2>&1 &
PIDS+=($!)

wait_for() {  # url
  for _ in $(seq 1 240); do curl -fs -o /dev/null "$1" && return 0; sleep 0.5; done
  echo "no answer from $1" >&2; return 1
}
wait_for "http://127.0.0.1:$DPORT/server_info"
wait_for "http://$MHOST:$MPORT/health"

# the newest version (the gate's verdict on it, against the champion of the time), its run, and
# the main job's training run
read -r VERSION EXPERIMENT RUN < <("$PY" -c '
from mem_core import registry
mv = max(registry.client().search_model_versions(f"name=\x27{registry.MODEL_NAME}\x27"), key=lambda v: int(v.version))
print(mv.version, registry.ensure_experiment(), mv.run_id)')
TRAIN_RUN="$("$PY" -c '
from dagster import DagsterInstance, RunsFilter
runs = DagsterInstance.get().get_runs(RunsFilter(job_name="train_and_gate"), limit=1)
print(runs[0].run_id if runs else "")')"

shot() {  # name url [width height]
  "$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size="${3:-1440},${4:-900}" \
    --virtual-time-budget=20000 --screenshot="$OUT/$1.png" "$2" >/dev/null 2>&1 || { echo "chromium failed on $2" >&2; return 1; }
  echo "$OUT/$1.png  <- $2"
}
D="http://127.0.0.1:$DPORT"
shot dagster-lineage "$D/assets/candles?view=lineage&lineageScope=downstream&lineageDepth=12" 1600 900
shot dagster-training-group "$D/locations/mem/asset-groups/training/lineage" 1600 900
shot dagster-reversal-model "$D/assets/reversal_model" 1920 1500
shot dagster-memory-store "$D/assets/memory_store" 1440 1000
shot dagster-candles-checks "$D/assets/candles?view=checks" 1600 1000
shot dagster-runs "$D/runs"
[ -z "$TRAIN_RUN" ] || shot dagster-train-run "$D/runs/$TRAIN_RUN" 1600 900
shot mlflow-model-version "http://$MHOST:$MPORT/#/models/mem-reversal/versions/$VERSION" 1440 1200
shot mlflow-run "http://$MHOST:$MPORT/#/experiments/$EXPERIMENT/runs/$RUN" 1440 1200
