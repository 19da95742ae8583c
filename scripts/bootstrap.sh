#!/usr/bin/env bash
# Idempotent set-up: a .venv with Python >= 3.12 and the project installed, plus the QuestDB
# server jar fetched once from Maven Central with Maven. Source it or run it; it prints nothing
# when everything is already in place.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
QUESTDB_VERSION="${MEM_QUESTDB_VERSION:-9.3.4}"
CACHE="$ROOT/.cache"
mkdir -p "$CACHE"

die() { echo "bootstrap: $*" >&2; exit 1; }

find_python() {
  local c
  for c in "${MEM_PYTHON:-}" python3.12 python3.13 python3 \
           "$HOME"/.pyenv/versions/3.12*/bin/python3 "$HOME"/.pyenv/versions/3.13*/bin/python3 \
           /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9]; do
    [ -n "$c" ] || continue
    command -v "$c" >/dev/null 2>&1 || [ -x "$c" ] || continue
    if "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
      # pyenv shims may point at a version that is not installed; resolve to a real binary
      "$c" -c 'import sys; print(sys.executable)'; return 0
    fi
  done
  return 1
}

# 1. Python virtual environment
if [ ! -x .venv/bin/python ]; then
  PY="$(find_python)" || die "no Python >= 3.12 found (pandas-ta needs it); install one, e.g. 'pyenv install 3.12', or set MEM_PYTHON"
  echo "bootstrap: creating .venv with $PY"
  "$PY" -m venv .venv
fi
STAMP=".venv/.mem-installed"
WANT="$(sha256sum pyproject.toml | cut -c1-16)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "bootstrap: installing the project and its dependencies into .venv (first time takes a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  echo "$WANT" > "$STAMP"
fi

# 1b. numba's cache of the kernels mem serve loads, so its first start does not compile them
.venv/bin/python scripts/warm_kernels.py || die "compiling the feature and model kernels failed (scripts/warm_kernels.py)"

# 2. Java >= 17 and the QuestDB server jar
JAR="$CACHE/questdb-$QUESTDB_VERSION.jar"
if [ -z "${MEM_QUESTDB_HOST:-}" ]; then
  JAVA="${MEM_JAVA:-java}"
  command -v "$JAVA" >/dev/null 2>&1 || die "Java >= 17 is required to run the local QuestDB ('$JAVA' not found; install e.g. openjdk-17-jre-headless), or point MEM_QUESTDB_HOST at an external QuestDB"
  JV="$("$JAVA" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')"
  [ "${JV%%.*}" -ge 17 ] 2>/dev/null || die "Java >= 17 is required for QuestDB, found '$JV'"
  if [ ! -s "$JAR" ]; then
    command -v mvn >/dev/null 2>&1 || die "Maven (mvn) is required once to fetch org.questdb:questdb:$QUESTDB_VERSION"
    echo "bootstrap: fetching org.questdb:questdb:$QUESTDB_VERSION with Maven"
    mvn -q -B dependency:copy -Dartifact="org.questdb:questdb:$QUESTDB_VERSION" -DoutputDirectory="$CACHE" \
      || die "could not fetch org.questdb:questdb:$QUESTDB_VERSION from Maven Central"
  fi
  [ -s "$JAR" ] || die "QuestDB jar missing at $JAR"
fi
export MEM_QUESTDB_JAR="${MEM_QUESTDB_JAR:-$JAR}"

# 3. grpcurl (serving's independent-client test): built once from the Go module proxy.
# --- serving: grpcurl (owned by mem_serving; keep this block small) ---
GRPCURL_VERSION="${MEM_GRPCURL_VERSION:-v1.9.4}"
GRPCURL="$CACHE/bin/grpcurl"
if [ ! -x "$GRPCURL" ] || [ "$(cat "$CACHE/bin/.grpcurl-version" 2>/dev/null)" != "$GRPCURL_VERSION" ]; then
  command -v go >/dev/null 2>&1 || die "Go is required once to build grpcurl $GRPCURL_VERSION (the serving client test)"
  echo "bootstrap: building grpcurl $GRPCURL_VERSION with go install"
  GOBIN="$CACHE/bin" GOFLAGS=-buildvcs=false go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION" \
    || die "could not build grpcurl $GRPCURL_VERSION from the Go module proxy"
  echo "$GRPCURL_VERSION" > "$CACHE/bin/.grpcurl-version"
fi
export MEM_GRPCURL="${MEM_GRPCURL:-$GRPCURL}"
# --- end serving ---

# 4. PostgreSQL server binaries: the memory's PostgreSQL store is tested on a throwaway cluster
# (mem_testing/pg_cluster.py: initdb + pg_ctl on a free loopback port). Debian's package, installed when
# missing; as root with apt-get only, else a clear message. MEM_TEST_PG_BIN names another folder.
pg_bin_present() {
  [ -n "${MEM_TEST_PG_BIN:-}" ] && [ -x "$MEM_TEST_PG_BIN/pg_ctl" ] && return 0
  compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null 2>&1 && return 0
  command -v pg_ctl >/dev/null 2>&1
}
if ! pg_bin_present; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing PostgreSQL (Debian package postgresql) for the memory's PostgreSQL tests"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null \
      || die "could not install the Debian package postgresql"
    # the package starts a system cluster; the tests start their own, so leave the system one alone
  else
    echo "bootstrap: PostgreSQL server binaries are missing: the memory's PostgreSQL tests need initdb and pg_ctl (they fail in CI without them, and are skipped elsewhere); install them, e.g. 'sudo apt-get install postgresql', or set MEM_TEST_PG_BIN to their folder" >&2
  fi
fi

# 5. promtool: checks and unit-tests the alert rules of deploy/prometheus (tests/test_deploy_prometheus.py).
# Debian's package prometheus provides it; installed when missing, as root with apt-get only (the
# package's service is not started in a container without systemd, and the tests need only promtool).
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing promtool (Debian package prometheus) for the alert-rule tests"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
      || die "could not install the Debian package prometheus"
  elif [ "${CI:-}" = "true" ]; then
    die "promtool is missing and cannot be installed here (not root or no apt-get): install the Debian package prometheus ('sudo apt-get install prometheus'); the alert-rule tests fail in CI without it"
  else
    echo "bootstrap: promtool is missing: the alert-rule tests need it (they fail in CI without it, and are skipped elsewhere); install it, e.g. 'sudo apt-get install prometheus'" >&2
  fi
fi
