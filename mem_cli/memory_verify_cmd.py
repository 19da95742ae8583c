"""``mem memory verify``: check every record of the memory store; list the corrupt ones.

Exit code 0 when every record is sound, 1 when some are corrupt (or the store cannot be opened).
Read-only, safe while ``mem serve`` runs; works on a store whose disk is full (opened read-only)
and on a half-rotated store (MEM_MEMORY_KEY_PREVIOUS, as `mem serve` reads it).
"""

from __future__ import annotations

from pathlib import Path

import typer


def verify(
    memory_db: Path = typer.Option(
        None, "--memory-db", help="Memory store (default MEM_MEMORY_DB or .mem/memory/memory.db)."
    ),
) -> None:
    """Check that every stored record decodes, authenticates (encrypted store) and is filed where it belongs."""
    from mem_cli.memory_cmd import one_line_errors
    from mem_core.settings import project_paths
    from mem_memory import open_with_env_keys
    from mem_memory.backend import is_postgres
    from mem_memory.verify import verify as check
    from mem_serving.settings import ServingSettings

    with one_line_errors():
        path = (
            memory_db or ServingSettings.from_env().memory_db or project_paths().memory_db
        )  # the store `mem serve` uses
        if not is_postgres(path) and not path.is_file():
            raise FileNotFoundError(f"no memory store at {path} (MEM_MEMORY_DB or --memory-db)")
        store = open_with_env_keys(path, read_only_when_full=True)
        try:
            report = check(store)
        finally:
            store.close()
    for line in report.lines():
        typer.echo(line)
    if not report.ok:
        raise typer.Exit(1)
