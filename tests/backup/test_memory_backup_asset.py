"""The memory_backup asset (materialised in-process on a real encrypted store, with retention)
and its daily schedule in the project's Definitions."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import dagster as dg
import pytest

from mem_memory import MemoryStore, audit, key_id
from mem_memory.backup import backups
from mem_pipelines.backup.assets import memory_backup
from mem_pipelines.resources import MemoryStoreResource
from tests.memory._history import populate
from tests.memory.helpers import b64


def test_memory_backup_asset_snapshots_and_keeps_the_newest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = b"k" * 32
    db = tmp_path / "memory" / "memory.db"
    populate(db, key, bulk=100)
    monkeypatch.delenv("MEM_MEMORY_KEY", raising=False)  # a backup needs no key
    folder = tmp_path / "backups"
    config = {"ops": {"memory_backup": {"config": {"folder": str(folder), "keep": 2}}}}
    results = [
        dg.materialize(
            [memory_backup], resources={"memory_store": MemoryStoreResource(path=str(db))}, run_config=config
        )
        for _ in range(3)
    ]
    assert all(r.success for r in results)
    meta = results[-1].asset_materializations_for_node("memory_backup")[0].metadata
    kept = backups(folder)
    assert len(kept) == 2 and Path(meta["path"].value) == kept[-1]
    assert meta["key_ids"].value == key_id(key) and meta["pruned"].value == 1
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and stat.S_IMODE(kept[-1].stat().st_mode) == 0o600
    manifest = json.loads(kept[-1].with_suffix(".json").read_text())
    assert manifest["sha256"] == meta["sha256"].value and manifest["last_event_id"] == meta["last_event_id"].value > 0
    monkeypatch.setenv("MEM_MEMORY_KEY", b64(key))
    store = MemoryStore.open(db, key)
    try:
        assert manifest["last_event_id"] == store.last_event_id()
        rows = [e for e in audit.entries(store._c()) if e.action == "backup"]
        assert [e.command for e in rows] == ["dagster memory_backup"] * 3
    finally:
        store.close()


def test_daily_schedule_materialises_memory_backup() -> None:
    from mem_pipelines.definitions import build_definitions

    defs = build_definitions()
    schedule = defs.resolve_schedule_def("daily_memory_backup")
    assert schedule.cron_schedule == "0 3 * * *" and schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "memory_backup_job"
    assert defs.resolve_job_def("memory_backup_job").asset_layer.selected_asset_keys == {dg.AssetKey("memory_backup")}
