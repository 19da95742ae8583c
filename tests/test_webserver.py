"""The Dagster UI as its users meet it: ``dagster-webserver`` on the project's workspace.yaml (a
free loopback port, a temporary DAGSTER_HOME, the default symbols), asked through GraphQL. The
code location loads with every asset, check, sensor and schedule of the Definitions; the learning
group's lineage reaches back to the gate through the external assets; ``daily_retrain`` is on by
default; a plain launch of ``train_and_gate`` (no partition, no tags, no config: one click in the
Launchpad) trains on every symbol; the runs ``mem main`` makes carry the code location's origin
and the UI re-executes them. Candles: the last days of the shipped sample (real, BTCUSDT and
ETHUSDT) in the test QuestDB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from mem_core.questdb.local import free_port
from mem_core.questdb.store import newest_candle_times, write_candles
from mem_core.settings import DEFAULT_SYMBOLS, QuestDBSettings
from mem_pipelines.ingest.csv_source import read_kline_csv
from mem_pipelines.ingest.sample import sample_files

ROOT = Path(__file__).resolve().parents[1]
SYMBOLS = DEFAULT_SYMBOLS  # what the code location partitions by when MEM_SYMBOLS is not set
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

REEXECUTE = """
mutation($params: ReexecutionParams!) {
  launchRunReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""

RUN = """
query($id: ID!) {
  runOrError(runId: $id) {
    ... on Run {
      status
      jobName
      pipelineSnapshotId
      parentPipelineSnapshotId
      tags { key value }
      repositoryOrigin { repositoryLocationName repositoryName }
      assetMaterializations {
        assetKey { path }
        metadataEntries { label ... on JsonMetadataEntry { jsonString } ... on TextMetadataEntry { text } }
      }
    }
  }
}
"""


JOB_SNAPSHOT = """
query($selector: PipelineSelector!) {
  pipelineOrError(params: $selector) { __typename ... on Pipeline { pipelineSnapshotId } }
}
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


def _finished(port: int, run_ids: list[str], timeout: float = 420) -> dict[str, dict[str, Any]]:
    """The runs once each has ended (success, failure or cancel), by id."""
    deadline = time.monotonic() + timeout
    runs: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        runs = {i: _graphql(port, RUN, {"id": i})["runOrError"] for i in run_ids}
        if all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs.values()):
            return runs
        time.sleep(2)
    raise AssertionError(f"runs not finished in {timeout:.0f} s: { {i: r['status'] for i, r in runs.items()} }")


def _metadata(run: dict[str, Any], asset: str) -> dict[str, Any]:
    (event,) = [m for m in run["assetMaterializations"] if m["assetKey"]["path"] == [asset]]
    return {
        e["label"]: json.loads(e["jsonString"]) if "jsonString" in e else e.get("text")
        for e in event["metadataEntries"]
    }


@dataclass(frozen=True)
class Webserver:
    port: int
    env: dict[str, str]  # the code location's environment (its stores, QuestDB, symbols)


@pytest.fixture(scope="module")
def candles(questdb: QuestDBSettings) -> QuestDBSettings:
    import psycopg

    with psycopg.connect(**questdb.pg_conninfo(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS candles")
    for path in sample_files(SYMBOLS):
        frame = read_kline_csv(path).frame
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
        **{k: v for k, v in os.environ.items() if k not in ("MEM_SYMBOLS", "MEM_QUESTDB_HOST")},
        "DAGSTER_HOME": str(home),
        "MEM_HOME": str(mem_home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{mem_home / 'mlflow.db'}",
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
        yield Webserver(port, env)
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


def test_the_code_location_loads_everything_and_one_plain_launch_trains_on_every_symbol(
    webserver: Webserver,
) -> None:
    from mlflow import MlflowClient

    from mem_pipelines.definitions import build_definitions
    from mem_pipelines.settings import PipelineSettings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        defs = build_definitions(PipelineSettings())
    graph = defs.resolve_asset_graph()
    repo = _repository(webserver.port)

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

    # the Launchpad's one click: no partition, no tags, the default config
    launched = _graphql(
        webserver.port,
        LAUNCH,
        {
            "params": {
                "selector": {
                    "repositoryLocationName": "mem",
                    "repositoryName": repo["name"],
                    "jobName": "train_and_gate",
                },
            }
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    run = _finished(webserver.port, [run_id])[run_id]
    assert run["status"] == "SUCCESS", f"run {run_id} ended {run['status']}"
    assert not [
        t for t in run["tags"] if t["key"].startswith("dagster/asset_partition") or t["key"] == "dagster/partition"
    ]
    # the tag the instance's run queue limits training runs by (dagster.yaml), on a plain launch too
    assert {"key": "mem/pool", "value": "training"} in run["tags"]

    # trained on every symbol: the frames, the dataset and the MLflow run say so
    for asset in ("training_candles", "features", "labels"):
        assert list(_metadata(run, asset)["rows_per_symbol"]) == list(SYMBOLS), asset
    dataset = _metadata(run, "training_dataset")
    assert dataset["symbols"] == list(SYMBOLS) and dataset["skipped_symbols"] == []
    assert all(rows > 1000 for rows in dataset["rows_per_symbol"].values())
    mlflow_run = MlflowClient(webserver.env["MLFLOW_TRACKING_URI"]).get_run(
        _metadata(run, "reversal_model")["mlflow_run_id"]
    )
    assert mlflow_run.data.tags["data.symbols"] == ",".join(SYMBOLS)
    assert mlflow_run.data.tags["dagster.run_id"] == run_id


def test_runs_of_the_main_job_carry_the_code_location_and_the_ui_re_executes_them(
    webserver: Webserver, candles: QuestDBSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mem_cli.main_job import Steps, _dagster
    from mem_core.settings import project_paths

    for name in ("MEM_SYMBOLS", "MEM_QUESTDB_HOST"):
        monkeypatch.delenv(name, raising=False)
    for name in (
        "DAGSTER_HOME",
        "MEM_HOME",
        "MLFLOW_TRACKING_URI",
        "MEM_QUESTDB_PG_PORT",
        "MEM_QUESTDB_HTTP_PORT",
        "MEM_MEMORY_DB",
    ):
        monkeypatch.setenv(name, webserver.env[name])
    home = webserver.env["DAGSTER_HOME"]
    with dg.DagsterInstance.from_config(home) as instance:
        before = {r.run_id for r in instance.get_runs()}
    # the main job's training window: a week ending before the newest candle (its replay window)
    end = min(newest_candle_times(candles, list(SYMBOLS)).values()) - pd.Timedelta(hours=1)
    lines: list[str] = []
    summary = _dagster(SYMBOLS, project_paths(), end - pd.Timedelta(days=7), end, Steps(lines.append))
    assert summary["verdict"] in ("promoted", "rejected"), lines
    assert any("training_dataset done" in line for line in lines), lines

    with dg.DagsterInstance.from_config(home) as instance:
        made = [r for r in instance.get_runs() if r.run_id not in before]
    assert sorted(r.job_name for r in made) == ["candles_job", "candles_job", "train_and_gate"]
    for run in made:
        origin = run.remote_job_origin
        assert origin is not None and origin.location_name == "mem", run.job_name
        assert origin.repository_origin.repository_name == "__repository__"
        shown = _graphql(webserver.port, RUN, {"id": run.run_id})["runOrError"]
        assert shown["repositoryOrigin"] == {"repositoryLocationName": "mem", "repositoryName": "__repository__"}
        # the UI's Re-execute shows no "may be different" warning: the run's job snapshot is the
        # code location's (what useJobAvailabilityErrorForRun compares)
        selector = {"repositoryLocationName": "mem", "repositoryName": "__repository__", "pipelineName": run.job_name}
        job = _graphql(webserver.port, JOB_SNAPSHOT, {"selector": selector})["pipelineOrError"]
        assert job["__typename"] == "Pipeline", job
        assert (shown["parentPipelineSnapshotId"] or shown["pipelineSnapshotId"]) == job["pipelineSnapshotId"], (
            run.job_name
        )

    # "Re-execute" (all steps) on the training run and on one symbol's candles run
    parents = [r for r in made if r.job_name == "train_and_gate"] + [
        r for r in made if r.job_name == "candles_job" and r.tags.get("dagster/partition") == SYMBOLS[0]
    ]
    children = {}
    for parent in parents:
        answer = _graphql(
            webserver.port, REEXECUTE, {"params": {"parentRunId": parent.run_id, "strategy": "ALL_STEPS"}}
        )["launchRunReexecution"]
        assert answer["__typename"] == "LaunchRunSuccess", answer
        children[answer["run"]["runId"]] = parent
    for child_id, child in _finished(webserver.port, list(children)).items():
        parent = children[child_id]
        assert child["status"] == "SUCCESS", f"re-execution {child_id} of {parent.job_name} ended {child['status']}"
        tags = {t["key"]: t["value"] for t in child["tags"]}
        assert child["jobName"] == parent.job_name and tags["dagster/parent_run_id"] == parent.run_id
        if parent.job_name == "candles_job":
            assert tags["dagster/partition"] == SYMBOLS[0]
        else:
            assert _metadata(child, "training_dataset")["symbols"] == list(SYMBOLS)
