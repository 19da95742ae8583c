"""The ``memory_backup`` asset: an online snapshot of the memory store, with retention.

Thin: ``mem_memory.backup`` does the work (SQLite's backup API, 0600 file in a 0700 folder, a
manifest, an audit row in the store). No key is needed: the snapshot is copied as stored.
"""

from pathlib import Path

import dagster as dg

from mem_core.settings import project_paths
from mem_pipelines.resources import MemoryStoreResource

GROUP = "memory"


class MemoryBackupConfig(dg.Config):
    folder: str = ""  # empty: <MEM_HOME>/.mem/backups/memory; point it at another disk in production
    keep: int = 14  # newest backups kept in the folder; older ones (and their manifests) deleted


def backup_folder(config: MemoryBackupConfig) -> Path:
    return Path(config.folder) if config.folder else project_paths().state / "backups" / "memory"


@dg.asset(
    group_name=GROUP,
    deps=["memory_store"],  # the external asset of learning/defs.py
    description=(
        "A consistent snapshot of the memory store taken while servers write (SQLite backup API), "
        "encrypted as stored, 0600 in a 0700 folder, with a manifest; keeps the newest `keep`."
    ),
    kinds={"sqlite"},
)
def memory_backup(
    context: dg.AssetExecutionContext, config: MemoryBackupConfig, memory_store: MemoryStoreResource
) -> dg.MaterializeResult:
    from mem_memory.backup import backup

    info = backup(memory_store.db_path(), backup_folder(config), keep=config.keep, command="dagster memory_backup")
    context.log.info(
        "memory backup %s: %d bytes, events through %d, %.1f s", info.path, info.bytes, info.last_event_id, info.seconds
    )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(info.path),
            "bytes": info.bytes,
            "sha256": info.sha256,
            "last_event_id": info.last_event_id,
            "decisions": info.decisions,
            "outcomes": info.outcomes,
            "key_ids": ", ".join(info.key_ids) or "not encrypted",
            "seconds": dg.MetadataValue.float(info.seconds),
            "pruned": len(info.pruned),
        }
    )
