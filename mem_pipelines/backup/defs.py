"""Dagster definitions of the memory backup: the asset, its job and the daily schedule (03:00
UTC, after the 02:00 retrain). The ``memory_store`` resource is bound in ``mem_pipelines.definitions``."""

from __future__ import annotations

import dagster as dg

from mem_pipelines.backup.assets import memory_backup

memory_backup_job = dg.define_asset_job(
    "memory_backup_job", selection=[memory_backup], description="Back up the memory store and prune old backups."
)

daily_memory_backup = dg.ScheduleDefinition(
    name="daily_memory_backup",
    job=memory_backup_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    description="Daily at 03:00 UTC: snapshot the memory store, keep the newest 14.",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)


def backup_defs() -> dg.Definitions:
    return dg.Definitions(assets=[memory_backup], jobs=[memory_backup_job], schedules=[daily_memory_backup])
