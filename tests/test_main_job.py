"""The README's main job as a new user runs it, in a fresh MEM_HOME with free ports: ``mem main
--replay-days 1`` in a subprocess (the default training window; one day replayed, the shortest
replay the report is made for; the 2 and 5-day replays of the sample:
``bench/bench_replay_main.py sample --replay-days 1 2 5``, and their cheap check
tests/replay/test_replay_sample.py).

With no ``--csv`` it runs on the shipped sample of real candles (data/sample). It must produce
the three-way report, show progress while it trains, keep third-party INFO logs out of its
output, stop everything it started, and say where to look; its Definitions are partitioned by
its own symbols, passed as a parameter (never through os.environ); its runs belong to the
workspace's code location.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from mem_cli.location_runs import location_job_origin
from mem_cli.main_job import main_definitions
from mem_core.questdb.local import free_port

ROOT = Path(__file__).resolve().parents[1]


def _our_processes(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eo" not in line]


def test_main_definitions_take_the_symbols_as_a_parameter_not_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEM_SYMBOLS", "DOGEUSDT")
    import mem_pipelines.definitions  # noqa: F401  (third-party imports may set their own variables)

    before = dict(os.environ)
    defs = main_definitions(("SOLUSDT", "ETHUSDT"))
    assert dict(os.environ) == before
    assert defs.resolve_assets_def("candles").partitions_def.get_partition_keys() == ["SOLUSDT", "ETHUSDT"]
    assert defs.resolve_job_def("candles_job").partitions_def.get_partition_keys() == ["SOLUSDT", "ETHUSDT"]
    for key in ("training_candles", "features", "labels"):  # not partitioned: every symbol in one run
        assert defs.resolve_assets_def(key).metadata_by_key[dg.AssetKey(key)]["symbols"].value == ["SOLUSDT", "ETHUSDT"]


def test_main_job_runs_carry_the_origin_of_the_workspace_code_location(tmp_path: Path) -> None:
    """What the Dagster UI needs to re-execute a run (tests/test_webserver.py re-executes one)."""
    defs = main_definitions(("BTCUSDT",))
    origin = location_job_origin(defs, "train_and_gate")
    assert (origin.location_name, origin.job_name) == ("mem", "train_and_gate")
    assert origin.repository_origin.repository_name == defs.get_repository_def().name
    assert origin.repository_origin.code_location_origin.loadable_target_origin.module_name == (
        "mem_pipelines.definitions"
    )
    (tmp_path / "workspace.yaml").write_text("load_from:\n  - python_module: {module_name: x, location_name: other}\n")
    with pytest.raises(ValueError, match="no code location 'mem'"):
        location_job_origin(defs, "train_and_gate", workspace=tmp_path / "workspace.yaml")


LEARNING = ("served_model", "memory_store", "learned_strategies", "parameter_memory")
MATERIALIZED = """
query($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset { assetMaterializations(limit: 1) { runOrError { __typename } metadataEntries { label } } }
  }
}
"""


def _graphql(port: int, query: str, variables: dict) -> dict:
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    assert "errors" not in answer, answer["errors"]
    return answer["data"]


def _materializations_in_the_ui(env: dict[str, str], assets: tuple[str, ...]) -> dict[str, list[str]]:
    """The latest materialization's metadata labels of each of ``assets``, as the Dagster UI of
    ``env`` (what scripts/ui.sh would start) shows them through GraphQL."""
    port = free_port()
    log = Path(env["DAGSTER_HOME"]) / "webserver.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "dagster-webserver did not answer in 180 s"
                time.sleep(0.5)
        found = {}
        for asset in assets:
            node = _graphql(port, MATERIALIZED, {"key": {"path": [asset]}})["assetOrError"]
            assert node["__typename"] == "Asset", (asset, node)
            events = node["assetMaterializations"]
            found[asset] = [e["label"] for e in events[0]["metadataEntries"]] if events else []
        return found
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_main_job_end_to_end_leaves_report_and_no_processes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "MEM_HOME": str(home),
        "DAGSTER_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "MEM_QUESTDB_HTTP_PORT": str(free_port()),
        "MEM_QUESTDB_PG_PORT": str(free_port()),
        "MEM_SYMBOLS": "DOGEUSDT",  # the pipeline's own setting: the main job partitions by its symbols instead
    }
    for var in ("MEM_QUESTDB_HOST", "MEM_MEMORY_DB"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, "-m", "mem_cli.main", "main", "--replay-days", "1"],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = home / "reports" / "report.md"
    assert report.is_file()
    text = report.read_text()
    for row in ("Base strategy alone", "Base + ML filter", "Base + ML + memory (full system)"):
        assert f"| {row} |" in text
    with (home / "reports" / "comparison.csv").open() as f:
        variants = list(csv.DictReader(f))
    assert len(variants) == 3 and all(v["variant"] and v["signals"] for v in variants), variants
    assert (home / "reports" / "equity.png").stat().st_size > 1000
    assert "holdout accuracy" in proc.stdout and "majority baseline" in proc.stdout
    assert "candles[BTCUSDT]: ok" in proc.stdout and "candles[ETHUSDT]: ok" in proc.stdout
    # the shipped sample of real candles, all of it (no --csv, no --synthetic)
    for symbol, rows in (("BTCUSDT", "50,376"), ("ETHUSDT", "50,344")):
        assert f"ingested {rows} candles of {symbol} from {ROOT / 'data' / 'sample' / symbol}-5m.csv.gz" in proc.stdout
    assert "synthetic" not in proc.stdout
    # a line as each training step starts and ends; no INFO line of MLflow, Alembic or Dagster
    for step in ("features", "training_dataset", "reversal_model", "champion_gate"):
        assert f"  {step} ..." in proc.stdout and f"  {step} done (" in proc.stdout, step
    for noise in (
        "INFO mlflow",
        "INFO alembic",
        "[alembic",
        "INFO dagster",
        "- dagster - INFO",
        "Successfully registered model",  # MLflow's registry notes (print calls, not log records)
        "Created version",
    ):
        assert noise not in proc.stdout + proc.stderr, noise
    assert "DOGEUSDT" not in proc.stdout + proc.stderr
    assert "Dagster UI" in proc.stdout and "MLflow UI" in proc.stdout
    # nothing left running from this MEM_HOME (QuestDB data dir, memory store)
    assert _our_processes(str(home)) == []

    # one memory store for MEM_HOME: the one mem serve, the code location and ui.sh open by default
    store = home / ".mem" / "memory" / "memory.db"
    assert store.is_file() and not (home / ".mem" / "main").exists()
    assert f"its memory store: {store}" in proc.stdout
    assert "failed:" not in proc.stdout  # a healthy run: no failed check
    # the UI on this MEM_HOME shows the story through the learning: every asset materialized
    env.pop("MEM_SYMBOLS")
    shown = _materializations_in_the_ui(env, ("reversal_model", "champion_gate", *LEARNING))
    assert all(shown.values()), shown
    assert {"decisions", "outcomes", "store"} <= set(shown["memory_store"])
    assert {"active_strategies", "store"} <= set(shown["learned_strategies"])
    assert {"parameters", "last_event_id"} <= set(shown["parameter_memory"])
    assert "model_version" in shown["served_model"]


def test_an_earlier_memory_store_is_set_aside_whole_and_a_held_one_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The main job's replay starts from an empty memory in MEM_HOME's store: an earlier store
    moves (with its WAL files) to previous/<time>/, nothing deleted; a store a server holds is
    not moved."""
    from datetime import UTC, datetime

    from mem_cli.main_memory import set_aside
    from mem_memory import MemoryStore, StoreInUse

    monkeypatch.delenv("MEM_MEMORY_KEY", raising=False)
    db = tmp_path / "memory" / "memory.db"
    assert set_aside(db) is None  # nothing there yet
    store = MemoryStore.open(db)
    store_id = store.store_id
    with pytest.raises(StoreInUse):
        set_aside(db)
    assert db.is_file()
    store.close()
    moved = set_aside(db, now=datetime(2026, 12, 7, 10, 0, tzinfo=UTC))
    assert moved == db.parent / "previous" / "20261207T100000Z" and not db.exists()
    again = MemoryStore.open(moved / "memory.db")
    try:
        assert again.store_id == store_id
    finally:
        again.close()
