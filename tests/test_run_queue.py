"""The run queue as ``scripts/ui.sh dagster`` runs it: ``dagster dev`` (webserver and daemon) on an
instance made from the project's dagster.yaml. Two launches of ``train_and_gate`` (two clicks in
the Launchpad): one starts, the other waits QUEUED until the first has ended (the one-training-run
limit, keyed on the tag every run of the job carries). Candles: the last days of the shipped
sample in the test QuestDB, so the first run is still training while the second waits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mem_core.questdb.local import free_port
from mem_core.questdb.store import write_candles
from mem_core.settings import DEFAULT_SYMBOLS, QuestDBSettings
from mem_pipelines.ingest.csv_source import read_kline_csv
from mem_pipelines.ingest.sample import sample_files
from mem_pipelines.settings import ensure_instance_config

ROOT = Path(__file__).resolve().parents[1]
DAYS = 20

LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) { __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } }
}
"""
STATUS = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value } } } }"
TERMINATE = """
mutation($id: String!) { terminateRun(runId: $id, terminatePolicy: MARK_AS_CANCELED_IMMEDIATELY) { __typename } }
"""


def _graphql(port: int, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    assert "errors" not in answer, answer["errors"]
    return answer["data"]


def _status(port: int, run_id: str) -> str:
    return _graphql(port, STATUS, {"id": run_id})["runOrError"]["status"]


def _wait(port: int, run_ids: list[str], done, timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        statuses = {i: _status(port, i) for i in run_ids}
        if done(statuses):
            return statuses
        assert time.monotonic() < deadline, f"timed out: {statuses}"
        time.sleep(1)


@pytest.mark.slow
def test_two_launches_of_the_training_job_one_runs_one_waits(questdb: QuestDBSettings, tmp_path: Path) -> None:
    import psycopg

    with psycopg.connect(**questdb.pg_conninfo(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS candles")
    for path in sample_files(DEFAULT_SYMBOLS):
        frame = read_kline_csv(path).frame
        write_candles(questdb, frame[frame["ts"] >= frame["ts"].max() - pd.Timedelta(days=DAYS)].reset_index(drop=True))
    ensure_instance_config(tmp_path)  # the project's dagster.yaml: QueuedRunCoordinator and its limits
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("MEM_SYMBOLS", "MEM_QUESTDB_HOST", "MEM_MEMORY_DB")},
        "DAGSTER_HOME": str(tmp_path),
        "MEM_HOME": str(tmp_path),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "MEM_QUESTDB_PG_PORT": str(questdb.pg_port),
        "MEM_QUESTDB_HTTP_PORT": str(questdb.http_port),
    }
    log = (tmp_path / "dev.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    run_ids: list[str] = []
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, (tmp_path / "dev.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "dagster dev did not answer in 240 s"
                time.sleep(1)
        selector = {"repositoryLocationName": "mem", "repositoryName": "__repository__", "jobName": "train_and_gate"}
        for _ in range(2):
            launched = _graphql(port, LAUNCH, {"params": {"selector": selector}})["launchRun"]
            assert launched["__typename"] == "LaunchRunSuccess", launched
            run_ids.append(launched["run"]["runId"])

        # the daemon starts one; the other stays queued while the first runs
        started = _wait(port, run_ids, lambda s: any(v != "QUEUED" for v in s.values()), timeout=180)
        (first,) = [i for i, v in started.items() if v != "QUEUED"]
        (second,) = [i for i in run_ids if i != first]
        observed = 0
        for _ in range(10):  # the daemon looks at the queue every few seconds
            if _status(port, first) not in ("STARTING", "STARTED"):
                break
            assert _status(port, second) == "QUEUED"
            observed += 1
            time.sleep(1)
        assert observed >= 3, f"the first run ended too soon to tell ({_status(port, first)})"
        tags = {t["key"]: t["value"] for t in _graphql(port, STATUS, {"id": second})["runOrError"]["tags"]}
        assert tags.get("mem/pool") == "training"

        # once the first has ended, the second starts
        _graphql(port, TERMINATE, {"id": first})
        _wait(port, [second], lambda s: s[second] != "QUEUED", timeout=120)
    finally:
        for run_id in run_ids:
            try:
                _graphql(port, TERMINATE, {"id": run_id})
            except OSError:
                pass
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
