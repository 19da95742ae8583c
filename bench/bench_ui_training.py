"""Benchmark: ``train_and_gate`` launched from the Dagster UI against the same job run in process as
``mem main`` runs it, on the same candles and window.

Starts its own QuestDB on free ports, ingests the shipped sample (data/sample: BTCUSDT, ETHUSDT;
not timed), starts ``dagster-webserver`` on the project's workspace (a temporary DAGSTER_HOME whose
runs start at once), then

* ``ui``: launches the job through GraphQL (the Launchpad's one click, the run config below) and
  times it from the launch to the end (the run's own process, imports included), and
* ``in_process``: runs it with ``mem_cli.location_runs.execute_location_run`` (what ``mem main``
  does) and times it.

Each uses its own MLflow store (so neither reuses the other's version). Prints JSON with both wall
times and their ratio; the target is ``ui`` within 1.5x of ``in_process``.

    .venv/bin/python bench/bench_ui_training.py [--last-days 180]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) { __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } }
}
"""
RUN = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status startTime endTime } } }"


def _graphql(port: int, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    if "errors" in answer:
        raise RuntimeError(answer["errors"])
    return answer["data"]


def _webserver(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while True:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text()[-2000:])
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                return proc
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("dagster-webserver did not answer in 240 s") from None
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--last-days", type=int, default=180)
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    import dagster as dg

    from mem_cli.location_runs import execute_location_run
    from mem_cli.main_job import main_definitions
    from mem_core.questdb.local import LocalQuestDB, default_jar, free_port
    from mem_core.settings import DEFAULT_SYMBOLS
    from mem_pipelines.ingest.sample import ingest_sample

    run_config = {"ops": {"training_dataset": {"config": {"last_days": args.last_days}}}}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        server = LocalQuestDB(root=home / "questdb", http_port=free_port(), pg_port=free_port(), jar=default_jar())
        settings = server.start()
        proc = None
        try:
            ingest_sample(settings, DEFAULT_SYMBOLS)
            (home / "dagster.yaml").write_text(
                "telemetry:\n  enabled: false\nnux:\n  enabled: false\n"
                "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n"
            )
            env = {
                **{k: v for k, v in os.environ.items() if k not in ("MEM_SYMBOLS", "MEM_QUESTDB_HOST")},
                "DAGSTER_HOME": str(home),
                "MEM_HOME": str(home),
                "MEM_QUESTDB_PG_PORT": str(settings.pg_port),
                "MEM_QUESTDB_HTTP_PORT": str(settings.http_port),
            }
            port = free_port()
            proc = _webserver({**env, "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'ui.db'}"}, port, home / "web.log")
            selector = {
                "repositoryLocationName": "mem",
                "repositoryName": "__repository__",
                "jobName": "train_and_gate",
            }
            started = time.monotonic()
            launched = _graphql(port, LAUNCH, {"params": {"selector": selector, "runConfigData": run_config}})
            run_id = launched["launchRun"]["run"]["runId"]
            while True:
                run = _graphql(port, RUN, {"id": run_id})["runOrError"]
                if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                    break
                time.sleep(1)
            ui_wall = time.monotonic() - started
            ui_status, ui_run = run["status"], run["endTime"] - run["startTime"]

            os.environ.update({**env, "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'main.db'}"})
            defs = main_definitions(DEFAULT_SYMBOLS)
            with dg.DagsterInstance.from_config(str(home)) as instance:
                started = time.monotonic()
                result = execute_location_run(
                    instance, defs, "train_and_gate", run_config=run_config, run_id=str(uuid.uuid4())
                )
                main_wall = time.monotonic() - started
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=60)
            server.stop()
    print(
        json.dumps(
            {
                "last_days": args.last_days,
                "ui": {
                    "status": ui_status,
                    "launch_to_end_s": round(ui_wall, 1),
                    "run_start_to_end_s": round(ui_run, 1),
                },
                "in_process": {"success": result.success, "wall_s": round(main_wall, 1)},
                "ratio_ui_over_in_process": round(ui_wall / main_wall, 2),
                "target_ratio": 1.5,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
