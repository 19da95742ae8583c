"""``mem questdb start|stop|status``: the project's own local QuestDB."""
from __future__ import annotations

import json

import typer

from mem_core.questdb.local import QuestDBError, local_from_env
from mem_core.settings import DEFAULT_QUESTDB_HTTP_PORT, DEFAULT_QUESTDB_PG_PORT, QuestDBSettings

app = typer.Typer(help="Start, stop or inspect the local QuestDB (data under .mem/questdb).", no_args_is_help=True)


def _server(http_port: int | None, pg_port: int | None):
    server = local_from_env()
    if http_port:
        server.http_port = http_port
    if pg_port:
        server.pg_port = pg_port
    return server


@app.command()
def start(
    http_port: int = typer.Option(None, help=f"HTTP/ILP port (default MEM_QUESTDB_HTTP_PORT or {DEFAULT_QUESTDB_HTTP_PORT})."),
    pg_port: int = typer.Option(None, help=f"PG wire port (default MEM_QUESTDB_PG_PORT or {DEFAULT_QUESTDB_PG_PORT})."),
) -> None:
    """Start the local QuestDB and wait until it answers queries."""
    if QuestDBSettings.from_env().external:
        typer.echo("MEM_QUESTDB_HOST names an external QuestDB; nothing to start.")
        return
    server = _server(http_port, pg_port)
    try:
        server.start()
    except QuestDBError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"QuestDB is up (pid {server.pid()}): PG wire 127.0.0.1:{server.pg_port}, HTTP/ILP 127.0.0.1:{server.http_port}, console http://127.0.0.1:{server.http_port}")


@app.command()
def stop() -> None:
    """Stop the local QuestDB started by `mem questdb start`."""
    server = local_from_env()
    typer.echo("QuestDB stopped." if server.stop() else "QuestDB was not running.")


@app.command()
def status() -> None:
    """Print whether the local QuestDB runs and answers queries (JSON)."""
    typer.echo(json.dumps(local_from_env().status()))
