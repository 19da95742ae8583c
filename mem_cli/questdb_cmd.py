"""``mem questdb start|stop|status``: the project's own local QuestDB."""

from __future__ import annotations

import json
from typing import NoReturn

import typer

from mem_core.questdb.local import QuestDBError, local_from_env
from mem_core.settings import DEFAULT_QUESTDB_HTTP_PORT, DEFAULT_QUESTDB_PG_PORT, QuestDBSettings

app = typer.Typer(
    help="Start, stop or inspect the local QuestDB (data under $MEM_HOME/.mem/questdb).", no_args_is_help=True
)


def _local():
    try:
        return local_from_env()
    except ValueError as exc:  # a malformed MEM_QUESTDB_* variable; the message names it
        _fail(str(exc))


def _server(http_port: int | None, pg_port: int | None):
    server = _local()
    if http_port:
        server.http_port = http_port
    if pg_port:
        server.pg_port = pg_port
    return server


@app.command()
def start(
    http_port: int = typer.Option(
        None, help=f"HTTP/ILP port (default MEM_QUESTDB_HTTP_PORT or {DEFAULT_QUESTDB_HTTP_PORT})."
    ),
    pg_port: int = typer.Option(None, help=f"PG wire port (default MEM_QUESTDB_PG_PORT or {DEFAULT_QUESTDB_PG_PORT})."),
) -> None:
    """Start the local QuestDB and wait until it answers queries."""
    for name, port in (("--http-port", http_port), ("--pg-port", pg_port)):
        if port is not None and not 0 < port < 65536:
            _fail(f"{name} {port}: must be a TCP port (1-65535)")
    try:
        external = QuestDBSettings.from_env().external
        server = None if external else _server(http_port, pg_port)
    except ValueError as exc:  # a malformed MEM_QUESTDB_* variable; the message names it
        _fail(str(exc))
    if server is None:
        typer.echo("MEM_QUESTDB_HOST names an external QuestDB; nothing to start.")
        return
    try:
        server.start()
    except QuestDBError as exc:
        first, _, more = str(exc).partition("\n")
        _fail(f"{first} (log: {server.log_file})" if more else first)
    typer.echo(
        f"QuestDB is up (pid {server.pid()}): PG wire 127.0.0.1:{server.pg_port}, HTTP/ILP 127.0.0.1:{server.http_port}, console http://127.0.0.1:{server.http_port}"
    )


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@app.command()
def stop() -> None:
    """Stop the local QuestDB started by `mem questdb start`."""
    server = _local()
    typer.echo("QuestDB stopped." if server.stop() else "QuestDB was not running.")


@app.command()
def status() -> None:
    """Print whether the local QuestDB runs and answers queries (JSON)."""
    typer.echo(json.dumps(_local().status()))
