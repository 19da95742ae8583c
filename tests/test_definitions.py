"""The project's Definitions load and validate; the ingest domain offers what the others build on;
resources are bound once, per deployment, in ``mem_pipelines.definitions``."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from mem_core.settings import QuestDBSettings
from mem_pipelines.definitions import RESOURCES, build_definitions, defs
from mem_pipelines.ingest.defs import ingest_defs
from mem_pipelines.ingest.landing_assets import LandingResource
from mem_pipelines.learning.defs import learning_defs
from mem_pipelines.replay.defs import replay_defs
from mem_pipelines.resources import MemoryStoreResource, MlflowResource, QuestDBResource, TrainingFramesIOManager
from mem_pipelines.settings import PipelineSettings
from mem_pipelines.training.defs import training_defs

ROOT = Path(__file__).resolve().parents[1]
CANDLE_CHECKS = {
    "has_rows",
    "no_nulls",
    "high_not_below_low",
    "high_covers_open_close",
    "low_under_open_close",
    "volume_non_negative",
    "ts_strictly_increasing",
    "gap_ratio_below_threshold",
}
RESOURCE_KEYS = {"questdb", "mlflow", "training_frames", "io_manager", "memory_store", "landing"}


def test_ingest_defs_offer_partitioned_candles_checks_and_job():
    defs = dg.Definitions.merge(
        ingest_defs(("BTCUSDT", "SOLUSDT")),
        dg.Definitions(resources={"questdb": QuestDBResource(), "landing": LandingResource(folder="/tmp/landing")}),
    )
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {"candles", "kline_files"}
    assert {k.name for k in graph.asset_check_keys} == CANDLE_CHECKS | {
        "fresh_BTCUSDT",
        "fresh_SOLUSDT",
        "no_file_quarantined",
    }
    node = graph.get(dg.AssetKey("candles"))
    assert node.partitions_def.get_partition_keys() == ["BTCUSDT", "SOLUSDT"]
    assert graph.get(dg.AssetKey("kline_files")).partitions_def.get_partition_keys() == ["BTCUSDT", "SOLUSDT"]
    assert dg.AssetKey("kline_files") in node.parent_keys
    for job in ("candles_job", "landing_job", "candles_freshness_job"):
        assert defs.resolve_job_def(job) is not None
    assert defs.resolve_sensor_def("landing_sensor").job_name == "landing_job"


def test_the_deployment_is_chosen_by_one_setting_and_the_password_stays_secret():
    external = PipelineSettings.from_env(
        {"MEM_QUESTDB_HOST": "db.internal", "MEM_QUESTDB_PG_PORT": "5432", "MEM_QUESTDB_PASSWORD": "s3cret"}
    )
    assert external.deployment == "external"
    r = RESOURCES[external.deployment](external)["questdb"]
    assert (r.host, r.pg_port, r.external) == ("db.internal", 5432, True)
    assert isinstance(r.password, dg.EnvVar)  # resolved at run time, shown as an env var in the UI
    assert r.password.env_var_name == "MEM_QUESTDB_PASSWORD"

    local = PipelineSettings.from_env({"MEM_QUESTDB_PG_PORT": "18812"})
    assert local.deployment == "local"
    resources = RESOURCES[local.deployment](local)
    assert set(resources) == RESOURCE_KEYS
    assert resources["questdb"].settings() == QuestDBSettings(pg_port=18812)
    assert resources["questdb"].settings().external is False


def test_resources_are_bound_once_in_definitions_py_and_nowhere_else():
    for domain in (ingest_defs(("BTCUSDT",)), training_defs(("BTCUSDT",)), learning_defs(), replay_defs()):
        assert dict(domain.resources or {}) == {}
    built = build_definitions(PipelineSettings())
    assert set(built.resources) == RESOURCE_KEYS
    assert isinstance(built.resources["mlflow"], MlflowResource)
    assert isinstance(built.resources["training_frames"], TrainingFramesIOManager)
    assert isinstance(built.resources["memory_store"], MemoryStoreResource)
    # no other module of the pipelines passes resources= to Definitions or a materialization
    binders = []
    for path in sorted((ROOT / "mem_pipelines").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and any(k.arg == "resources" for k in node.keywords):
                binders.append(path.relative_to(ROOT).as_posix())
    assert set(binders) == {"mem_pipelines/definitions.py"}


def test_build_definitions_partitions_by_the_settings_symbols():
    built = build_definitions(PipelineSettings(symbols=("solusdt", "ADAUSDT", "SOLUSDT")))
    for key in ("kline_files", "candles"):
        assert built.resolve_assets_def(key).partitions_def.get_partition_keys() == ["SOLUSDT", "ADAUSDT"]
    # the training side is not partitioned: each asset holds every symbol's frame
    for key in ("training_candles", "features", "labels"):
        node = built.resolve_assets_def(key)
        assert node.partitions_def is None
        assert node.metadata_by_key[node.key]["symbols"].value == ["SOLUSDT", "ADAUSDT"]


def test_project_definitions_load_and_validate():
    loaded = defs()
    dg.Definitions.validate_loadable(loaded)
    graph = loaded.resolve_asset_graph()
    assert dg.AssetKey("candles") in graph.get_all_asset_keys()
    assert CANDLE_CHECKS <= {k.name for k in graph.asset_check_keys if k.asset_key == dg.AssetKey("candles")}
    assert set(loaded.resources) == RESOURCE_KEYS


def test_dagster_cli_validates_the_workspace(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed validation" in proc.stdout + proc.stderr


def test_job_snapshots_do_not_depend_on_the_hash_seed() -> None:
    """``mem main`` and the UI's code location build the jobs in two processes: their snapshots must
    match, or the UI's Re-execute warns that the job may have changed (a job's blocking checks in
    two single-check ops were ordered by the process's hash seed)."""
    script = (
        "import warnings; warnings.simplefilter('ignore')\n"
        "from mem_cli.main_job import main_definitions\n"
        "d = main_definitions(('BTCUSDT', 'ETHUSDT'))\n"
        "print(' '.join(d.resolve_job_def(j).get_job_snapshot().snapshot_id for j in ('train_and_gate', 'candles_job')))\n"
    )
    ids = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert len(ids) == 1, ids
