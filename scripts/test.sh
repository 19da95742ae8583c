#!/usr/bin/env bash
# Set up everything (idempotent) and run the test suite against real QuestDB, MLflow and gRPC, with
# the line coverage of every package (child processes included) printed per file at the end.
#   bash scripts/test.sh                 the whole suite (what CI runs)
#   bash scripts/test.sh --fast          the fast loop: -m "not slow" (the slow tier: tests/conftest.py)
#   bash scripts/test.sh tests/memory    any pytest arguments; MEM_TEST_COVERAGE=0 leaves coverage out
# Two pytest-xdist workers, one test file each at a time (--dist loadfile: a file's module fixtures
# start once), the longest files first (tests/durations.json; --no-loadscope-reorder keeps that
# order); MEM_TEST_WORKERS=0 runs everything in this one process, MEM_TEST_WORKERS=N on N.
# The 25 slowest tests are listed at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
# a run writes ~0.7 GB under the temporary folder (pytest keeps the last 3 runs' folders): stop here
# rather than let dozens of tests fail one by one with "No space left on device"
TMP_DIR="${TMPDIR:-/tmp}"
FREE_MB=$(( $(df -Pk "$TMP_DIR" | awk 'NR == 2 {print $4}') / 1024 ))
if [ "$FREE_MB" -lt 2048 ]; then
  echo "test.sh: only $FREE_MB MB free in $TMP_DIR; the suite needs about 2 GB (old runs' folders: $TMP_DIR/pytest-of-$(id -un))" >&2
  exit 1
fi
args=()
for a in "$@"; do
  if [ "$a" = "--fast" ]; then args+=(-m "not slow"); else args+=("$a"); fi
done
cov=()
if [ "${MEM_TEST_COVERAGE:-1}" != "0" ]; then
  cov=(--cov=mem_core --cov=mem_memory --cov=mem_serving --cov=mem_pipelines --cov=mem_cli --cov-report=term)
fi
workers=()
if [ "${MEM_TEST_WORKERS:-2}" != "0" ]; then
  workers=(-n "${MEM_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder)
fi
exec .venv/bin/python -m pytest "${workers[@]}" "${cov[@]}" --durations=25 "${args[@]}"
