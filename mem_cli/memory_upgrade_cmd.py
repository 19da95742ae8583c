"""``mem memory upgrade``: migrate the memory store to this MEM's revision (``mem_memory.migrations``),
offline steps included, after taking a backup."""

from __future__ import annotations

from pathlib import Path

import typer

from mem_cli.memory_cmd import _DB_HELP, _db, _keys, one_line_errors


def upgrade(
    backup_to: Path = typer.Option(
        None, help="Folder for the backup taken first (default: pre-upgrade/ beside the store)."
    ),
    no_backup: bool = typer.Option(
        False, "--no-backup", help="Take no backup (PostgreSQL: take a pg_dump yourself first)."
    ),
    memory_db: Path = typer.Option(None, envvar="MEM_MEMORY_DB", help=_DB_HELP),
) -> None:
    """Back up the store, then bring it to this MEM's revision with it to itself (refused while a
    server or anything else has it open). Killed midway, run it again: it resumes."""
    from mem_memory import MemoryStore, migrations
    from mem_memory.backend import is_postgres
    from mem_memory.backup import backup

    with one_line_errors():
        db = _db(memory_db)
        if is_postgres(db) and not no_backup:
            raise ValueError(
                "a PostgreSQL store is not backed up by MEM: take a pg_dump first, then run `mem memory upgrade --no-backup`"
            )
        taken = "none"
        if not no_backup:
            taken = backup(db, backup_to or Path(db).parent / "pre-upgrade", command="mem memory upgrade").path
        key, previous = _keys()
        store = MemoryStore.open(db, key, previous_keys=previous, exclusive=True, upgrade=True)
        store.close()
        typer.echo(f"the memory store {db} is at revision {migrations.head()} (backup: {taken})")
