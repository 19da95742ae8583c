"""The Dagster instance on PostgreSQL storage (docs/deploy.md): the storage block of
``deploy/dagster.cluster.yaml``, with its ``DAGSTER_PG_*`` variables pointing at a database of the
session's PostgreSQL cluster, runs a materialisation and reads its run, events and asset
materialisation back from PostgreSQL (a second instance object: nothing held in memory)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml

from mem_testing.pg_cluster import PgCluster

ROOT = Path(__file__).resolve().parents[1]


def test_the_cluster_instance_storage_runs_on_postgresql(
    postgres: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = postgres.create_db("dagster")
    cluster = yaml.safe_load((ROOT / "deploy" / "dagster.cluster.yaml").read_text())
    home = tmp_path / "dagster_home"
    home.mkdir()
    # the storage block as shipped; the run launcher (dagster-k8s, a cluster) is not part of this test
    (home / "dagster.yaml").write_text(yaml.safe_dump({"telemetry": {"enabled": False}, "storage": cluster["storage"]}))
    monkeypatch.setenv("DAGSTER_PG_HOST", "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_PORT", str(postgres.port))
    monkeypatch.setenv("DAGSTER_PG_USER", "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "unused-trust-auth")
    monkeypatch.setenv("DAGSTER_PG_DB", url.rsplit("/", 1)[1])

    @dg.asset
    def pg_probe() -> int:
        return 42

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = dg.materialize([pg_probe], instance=instance)
        assert result.success
        run_id = result.run_id
    with dg.DagsterInstance.from_config(str(home)) as again:
        run = again.get_run_by_id(run_id)
        assert run is not None and run.is_success
        event = again.get_latest_materialization_event(dg.AssetKey("pg_probe"))
        assert event is not None and event.run_id == run_id
    with psycopg.connect(url) as conn:  # the rows are in PostgreSQL
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    postgres.drop_db(url)
