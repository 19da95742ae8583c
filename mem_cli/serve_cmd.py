"""``mem serve``: the gRPC server, champion poller and Prometheus metrics, until Ctrl-C/SIGTERM."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, NoReturn

import typer

from mem_cli import interrupt
from mem_core.settings import DEFAULT_METRICS_PORT, DEFAULT_SERVING_PORT


def serve(
    host: str = typer.Option(None, help="Bind address (default MEM_SERVING_HOST or 127.0.0.1)."),
    port: int = typer.Option(None, help=f"gRPC port (default MEM_SERVING_PORT or {DEFAULT_SERVING_PORT}; 0 = free)."),
    metrics_port: int = typer.Option(
        None,
        help=f"Prometheus HTTP port (default MEM_SERVING_METRICS_PORT or {DEFAULT_METRICS_PORT}; 0 = free, -1 = off).",
    ),
    memory_db: Path = typer.Option(
        None,
        help="Memory store (default MEM_MEMORY_DB, else $MEM_HOME/.mem/memory/memory.db; MEM_HOME: the project folder).",
    ),
    tracking_uri: str = typer.Option(
        None,
        help="MLflow tracking/registry URI (default MLFLOW_TRACKING_URI, else sqlite:///$MEM_HOME/mlflow.db; MEM_HOME: the project folder).",
    ),
    model_poll: float = typer.Option(
        None, help="Seconds between checks for a new champion (default MEM_SERVING_MODEL_POLL_S or 5)."
    ),
    workers: int = typer.Option(
        None,
        help="Threads for the calls that block on QuestDB or SQLite (default MEM_SERVING_WORKERS or 8); the rest run on the event loop.",
    ),
) -> None:
    """Serve PredictReversal, EnhanceSignal, LogOutcome, GetParameters, ListStrategies over gRPC."""
    # one handler for a Ctrl-C anywhere before serving (typer would turn one it sees into a
    # silent exit 130); once serving, the server's own handler stops it gracefully instead
    try:
        from mem_serving.credentials import CredentialError
        from mem_serving.server import StartupError
        from mem_serving.server import serve as run
        from mem_serving.settings import ServingSettings

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        try:
            settings = ServingSettings.from_env(
                host=host,
                port=port,
                metrics_port=metrics_port,
                memory_db=memory_db,
                tracking_uri=tracking_uri,
                model_poll_s=model_poll,
                max_workers=workers,
            )
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        try:
            with interrupt.deferred("mem serve: stopping once started (Ctrl-C again to stop now)"):
                run(settings, ready=lambda running: _ready(settings, running))
        except (StartupError, CredentialError) as exc:  # a configuration problem: one line, no traceback
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    except KeyboardInterrupt:
        _interrupted()


def _ready(settings: Any, running: Any) -> None:
    """Started: the ready line, or a stop for a Ctrl-C while starting (``serve`` stops the server)."""
    if interrupt.requested.is_set():
        raise KeyboardInterrupt
    typer.echo(_ready_line(settings, running))


def _ready_line(settings: Any, running: Any) -> str:
    """The line printed once serving: where, and with which champion (JSON)."""
    return json.dumps(
        {
            "grpc": f"{settings.host}:{running.port}",
            "tls": settings.tls,
            "auth": bool(settings.token or settings.token_file),
            "metrics": None
            if running.metrics_port is None
            else f"http://{settings.metrics_host}:{running.metrics_port}/metrics",
            "model_version": running.handlers.models.version,
        }
    )


def _interrupted() -> NoReturn:
    typer.echo("mem serve: interrupted while starting; stopped", err=True)
    raise typer.Exit(130) from None
