"""``mem memory backup|restore|rekey|audit|new-key|key-id``: operations on the memory store.

Keys come only from the environment (MEM_MEMORY_KEY, and MEM_MEMORY_KEY_PREVIOUS for a
rotation's old key), never from the command line; nothing here prints a key except
``new-key``, whose output is the new key.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(help="Back up, restore, rekey, audit and verify the memory store.", no_args_is_help=True)

_DB_HELP = "Memory store (default MEM_MEMORY_DB, else $MEM_HOME/.mem/memory/memory.db)."


def _db(memory_db: Path | None) -> Path:
    if memory_db is not None:
        return memory_db
    from mem_core.settings import project_paths

    return project_paths().memory_db


@contextmanager
def one_line_errors() -> Iterator[None]:
    """One line and exit code 1 for every failure of a command on the store (a bad backup, a
    full disk, a key that does not fit, a store in use, SQLite's own errors): never a traceback."""
    import sqlite3

    import psycopg

    from mem_memory import MemoryStoreError

    try:
        yield
    except (MemoryStoreError, OSError, ValueError, sqlite3.Error, psycopg.Error) as exc:
        message = " ".join(str(exc).split()) or exc.__class__.__name__
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1) from None


def _keys() -> tuple[bytes | None, tuple[bytes, ...]]:
    from mem_memory import key_from_env, previous_keys_from_env

    return key_from_env(), previous_keys_from_env()


def _echo_json(data: dict[str, Any]) -> None:
    typer.echo(json.dumps(data, indent=1))


@app.command()
def backup(
    dest: Path = typer.Argument(..., help="Folder for the backup (created 0700)."),
    keep: int = typer.Option(None, min=1, help="Keep only the newest N backups in DEST."),
    memory_db: Path = typer.Option(None, envvar="MEM_MEMORY_DB", help=_DB_HELP),
) -> None:
    """Take an online, consistent snapshot of the store (servers may keep writing); prints JSON."""
    from mem_memory.backup import backup as run

    with one_line_errors():
        _echo_json(run(_db(memory_db), dest, keep=keep).as_dict())


@app.command()
def restore(
    src: Path = typer.Argument(..., help="A backup file (memory-<time>.db; its .json manifest beside it is checked)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing store (moved aside, never deleted)."),
    memory_db: Path = typer.Option(None, envvar="MEM_MEMORY_DB", help=_DB_HELP),
) -> None:
    """Restore a backup as the store, after checking it; refused while anything has the store open."""
    from mem_memory.backup import restore as run

    with one_line_errors():
        key, previous = _keys()
        _echo_json(run(src, _db(memory_db), key, previous_keys=previous, force=force).as_dict())


@app.command()
def rekey(
    batch: int = typer.Option(2000, min=1, help="Records re-encrypted per transaction."),
    memory_db: Path = typer.Option(None, envvar="MEM_MEMORY_DB", help=_DB_HELP),
) -> None:
    """Re-encrypt every record under MEM_MEMORY_KEY (the new key), reading the old ones with
    MEM_MEMORY_KEY_PREVIOUS. Offline: refused while a server or anything else has the store open.
    Interrupted, it leaves a store that opens with both keys; run it again to finish."""
    from mem_memory.rekey import rekey as run

    def progress(done: int, through: int) -> None:
        typer.echo(f"rekey: {done} records re-encrypted, through event {through}", err=True)

    with one_line_errors():
        key, previous = _keys()
        if key is None:
            raise ValueError("set MEM_MEMORY_KEY to the new key and MEM_MEMORY_KEY_PREVIOUS to the current one")
        _echo_json(run(_db(memory_db), key, previous, batch=batch, progress=progress).as_dict())


@app.command()
def audit(
    limit: int = typer.Option(50, min=1, help="Show the newest N entries."),
    action: str = typer.Option(
        None, help="Only this action (open, open.refused, rekey.start, rekey.finish, backup, restore)."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    memory_db: Path = typer.Option(None, envvar="MEM_MEMORY_DB", help=_DB_HELP),
) -> None:
    """List the audit trail of credential use (key ids, never keys); no key needed. Exit code 1
    when the trail's hash chain is broken."""
    from mem_memory import audit as trail
    from mem_memory.backend import PgConnection, is_postgres, postgres_url
    from mem_memory.store import read_only_connect

    db = _db(memory_db)
    conn: Any
    with one_line_errors():
        if is_postgres(db):
            conn = PgConnection.connect(postgres_url(db), "mem memory audit")
        elif not db.exists():
            raise FileNotFoundError(f"the memory store {db} does not exist")
        else:
            conn = read_only_connect(db)  # on a full disk too
        try:
            rows = trail.entries(conn, limit=limit, action=action)
            broken = trail.verify_chain(conn)
        finally:
            conn.close()
    show: Callable[[Any], str] = (lambda e: json.dumps(e.to_dict())) if as_json else _line
    for e in rows:
        typer.echo(show(e))
    if broken is not None:
        typer.echo(f"error: the audit chain is broken at entry {broken} (edited or deleted rows)", err=True)
        raise typer.Exit(1)


def _line(e: Any) -> str:
    detail = " ".join(f"{k}={v}" for k, v in e.detail.items())
    return f"{e.audit_id:>5} {e.at} {e.action:<13} key={e.key_id or '-':<16} {e.command!r} pid={e.pid} {e.user}@{e.host} {detail}"


@app.command(name="new-key")
def new_key() -> None:
    """Print a fresh random key (base64 of 32 bytes) for MEM_MEMORY_KEY."""
    from mem_memory import new_key as make

    sys.stdout.write(make() + "\n")


@app.command(name="key-id")
def key_id() -> None:
    """Print the ids of MEM_MEMORY_KEY and MEM_MEMORY_KEY_PREVIOUS (what the audit trail and
    backups name), never the keys."""
    from mem_memory import key_id as ident

    with one_line_errors():
        key, previous = _keys()
        _echo_json({"key_id": ident(key) if key else None, "previous_key_ids": [ident(k) for k in previous]})
