"""The Dagster UI as its users meet it: ``dagster-webserver`` on the project's workspace.yaml (a
free loopback port, a temporary DAGSTER_HOME), asked through GraphQL. The code location loads
with every asset, check, sensor and schedule of the Definitions; the learning group's lineage
reaches back to the gate through the external assets; ``daily_retrain`` is on by default; a
launch of ``train_and_gate`` over every symbol (one run) succeeds on real candles in the test
QuestDB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mem_core.questdb.local import free_port
from mem_core.questdb.store import write_candles
from mem_core.settings import QuestDBSettings
from mem_pipelines.ingest.csv_source import read_kline_csv

ROOT = Path(__file__).resolve().parents[1]
SYMBOL = "BTCUSDT"
DAYS = 10

WORKSPACE = """
query {
  workspaceOrError {
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError {
          __typename
          ... on PythonError { message }
          ... on RepositoryLocation {
            repositories {
              name
              jobs { name }
              schedules { name scheduleState { status } }
              sensors { name }
              assetNodes {
                assetKey { path }
                groupName
                owners { ... on TeamAssetOwner { team } }
                dependencyKeys { path }
                assetChecksOrError { ... on AssetChecks { checks { name } } }
              }
            }
          }
        }
      }
    }
  }
}
"""

LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
  }
}
"""

RUN = """
query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }
"""


def _graphql(port: int, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    assert "errors" not in answer, answer["errors"]
    return answer["data"]


@pytest.fixture(scope="module")
def candles(questdb: QuestDBSettings, shared_candles: Path) -> QuestDBSettings:
    import psycopg

    with psycopg.connect(**questdb.pg_conninfo(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS candles")
    frame = read_kline_csv(shared_candles / f"{SYMBOL}-5m.csv.gz").frame
    write_candles(questdb, frame[frame["ts"] >= frame["ts"].max() - pd.Timedelta(days=DAYS)].reset_index(drop=True))
    return questdb


@pytest.fixture(scope="module")
def webserver(candles: QuestDBSettings, tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("dagster_home")
    # runs start at once (the project's dagster.yaml queues them for the daemon of `dagster dev`)
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nnux:\n  enabled: false\n"
        "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n"
    )
    mem_home = tmp_path_factory.mktemp("mem_home")
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "MEM_HOME": str(mem_home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{mem_home / 'mlflow.db'}",
        "MEM_SYMBOLS": SYMBOL,
        "MEM_QUESTDB_PG_PORT": str(candles.pg_port),
        "MEM_QUESTDB_HTTP_PORT": str(candles.http_port),
        "MEM_MEMORY_DB": str(mem_home / "memory.db"),
    }
    log = (home / "webserver.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    try:
        while True:
            assert proc.poll() is None, (home / "webserver.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "dagster-webserver did not answer in 180 s"
                time.sleep(0.5)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _repository(port: int) -> dict[str, Any]:
    entries = _graphql(port, WORKSPACE)["workspaceOrError"]["locationEntries"]
    assert [e["name"] for e in entries] == ["mem"]
    location = entries[0]["locationOrLoadError"]
    assert location["__typename"] == "RepositoryLocation", location
    (repo,) = location["repositories"]
    return repo


def test_the_code_location_loads_everything_and_train_and_gate_launches(webserver: int) -> None:
    from mem_pipelines.definitions import build_definitions
    from mem_pipelines.settings import PipelineSettings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        defs = build_definitions(PipelineSettings(symbols=(SYMBOL,)))
    graph = defs.resolve_asset_graph()
    repo = _repository(webserver)

    nodes = {"/".join(n["assetKey"]["path"]): n for n in repo["assetNodes"]}
    assert set(nodes) == {k.to_user_string() for k in graph.get_all_asset_keys()}
    checks = {c["name"] for n in nodes.values() for c in (n["assetChecksOrError"].get("checks") or [])}
    assert checks == {k.name for k in graph.asset_check_keys}
    assert {s["name"] for s in repo["sensors"]} == {s.name for s in defs.sensors or []}
    schedules = {s["name"]: s["scheduleState"]["status"] for s in repo["schedules"]}
    assert set(schedules) == {s.name for s in defs.schedules or []}
    assert schedules["daily_retrain"] == "RUNNING"
    assert {"train_and_gate", "candles_job"} <= {j["name"] for j in repo["jobs"]}
    # the learning group's lineage: the gate -> the served model -> the memory store -> learning
    assert ["champion_gate"] in [d["path"] for d in nodes["served_model"]["dependencyKeys"]]
    assert ["memory_store"] in [d["path"] for d in nodes["learned_strategies"]["dependencyKeys"]]
    assert nodes["reversal_model"]["owners"] in ([{"team": "ml"}], [{"team": "team:ml"}])

    launched = _graphql(
        webserver,
        LAUNCH,
        {
            "params": {
                "selector": {
                    "repositoryLocationName": "mem",
                    "repositoryName": repo["name"],
                    "jobName": "train_and_gate",
                },
                "runConfigData": {
                    "ops": {
                        "training_dataset": {"config": {"last_days": 6}},
                        "reversal_model": {"config": {"walk_forward_folds": 0}},
                    }
                },
                "executionMetadata": {
                    "tags": [
                        {"key": "dagster/asset_partition_range_start", "value": SYMBOL},
                        {"key": "dagster/asset_partition_range_end", "value": SYMBOL},
                    ]
                },
            }
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + 420
    status = "?"
    while time.monotonic() < deadline:
        status = _graphql(webserver, RUN, {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    assert status == "SUCCESS", f"run {run_id} ended {status}"
