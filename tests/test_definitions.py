"""The project's Definitions load and validate; the ingest domain offers what the others build on."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from mem_pipelines.ingest.defs import ingest_defs
from mem_pipelines.resources import QuestDBResource, questdb_resource

ROOT = Path(__file__).resolve().parents[1]
CANDLE_CHECKS = {
    "no_nulls",
    "high_not_below_low",
    "high_covers_open_close",
    "low_under_open_close",
    "volume_non_negative",
    "ts_strictly_increasing",
    "gap_ratio_below_threshold",
}


def test_ingest_defs_offer_partitioned_candles_checks_and_job():
    defs = dg.Definitions.merge(
        ingest_defs({"MEM_SYMBOLS": "BTCUSDT,SOLUSDT"}), dg.Definitions(resources={"questdb": QuestDBResource()})
    )
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {"candles", "kline_files"}
    assert {k.name for k in graph.asset_check_keys} == CANDLE_CHECKS | {"fresh_BTCUSDT", "fresh_SOLUSDT", "no_file_quarantined"}
    node = graph.get(dg.AssetKey("candles"))
    assert node.partitions_def.get_partition_keys() == ["BTCUSDT", "SOLUSDT"]
    assert graph.get(dg.AssetKey("kline_files")).partitions_def.get_partition_keys() == ["BTCUSDT", "SOLUSDT"]
    assert dg.AssetKey("kline_files") in node.parent_keys
    for job in ("candles_job", "landing_job", "candles_freshness_job"):
        assert defs.resolve_job_def(job) is not None
    assert defs.resolve_sensor_def("landing_sensor").job_name == "landing_job"


def test_questdb_resource_from_env_keeps_the_password_secret():
    r = questdb_resource({"MEM_QUESTDB_HOST": "db.internal", "MEM_QUESTDB_PG_PORT": "5432", "MEM_QUESTDB_PASSWORD": "s3cret"})
    assert (r.host, r.pg_port, r.external) == ("db.internal", 5432, True)
    assert isinstance(r.password, dg.EnvVar)  # resolved at run time, shown as an env var in the UI
    local = questdb_resource({})
    assert local.settings() == QuestDBResource().settings()
    assert local.settings().external is False


def test_project_definitions_load_and_validate(tmp_path):
    from mem_pipelines.definitions import defs

    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert dg.AssetKey("candles") in graph.get_all_asset_keys()
    assert CANDLE_CHECKS <= {k.name for k in graph.asset_check_keys if k.asset_key == dg.AssetKey("candles")}
    assert "questdb" in defs.resources


def test_dagster_cli_validates_the_workspace(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed validation" in proc.stdout + proc.stderr
