"""``mem memory verify``: check every record of the memory store; list the corrupt ones.

Exit code 0 when every record is sound, 1 when some are corrupt (or the store cannot be opened).
Read-only, safe while ``mem serve`` runs.
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
    from mem_core.settings import project_paths
    from mem_memory import MemoryKeyError, MemoryStore, key_from_env
    from mem_memory.verify import verify as check
    from mem_serving.settings import ServingSettings

    try:  # the store `mem serve` uses
        path = memory_db or ServingSettings.from_env().memory_db or project_paths().memory_db
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if not path.is_file():
        typer.echo(f"error: no memory store at {path} (MEM_MEMORY_DB or --memory-db)", err=True)
        raise typer.Exit(1)
    try:
        store = MemoryStore.open(path, key=key_from_env())
    except MemoryKeyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        report = check(store)
    finally:
        store.close()
    for line in report.lines():
        typer.echo(line)
    if not report.ok:
        raise typer.Exit(1)
