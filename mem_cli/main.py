"""The ``mem`` command line: one entry point for the local QuestDB, ingestion, the pipeline and serving.

Sub-commands import their layer lazily, so ``mem --help`` stays fast.
"""

from __future__ import annotations

import sys
from types import TracebackType


def _interrupted_quietly(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """Ctrl-C before a command handles it (while the libraries load): one line, no traceback."""
    if issubclass(kind, KeyboardInterrupt):
        sys.stderr.write("mem: interrupted\n")
        return
    sys.__excepthook__(kind, exc, tb)


sys.excepthook = _interrupted_quietly

from mem_cli import interrupt  # noqa: E402

interrupt.install()

import typer  # noqa: E402  (after the hook: importing the commands' libraries takes seconds)

from mem_cli import (  # noqa: E402
    candles_cmd,
    help_style,
    ingest_cmd,
    main_cmd,
    memory_cmd,
    memory_upgrade_cmd,
    memory_verify_cmd,
    model_cmd,
    questdb_cmd,
    replay_cmd,
    serve_cmd,
)

help_style.install()
app = typer.Typer(help="MEM: memory-enhanced ML trading signals.", no_args_is_help=True, add_completion=False)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"mem {version('mem-platform')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            typer.echo("mem (not installed; see pyproject.toml)")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """MEM: memory-enhanced ML trading signals."""


app.add_typer(questdb_cmd.app, name="questdb")
app.add_typer(ingest_cmd.app, name="ingest")
app.add_typer(candles_cmd.app, name="candles")
app.add_typer(model_cmd.app, name="model")
memory_cmd.app.command(name="verify")(memory_verify_cmd.verify)
memory_cmd.app.command(name="upgrade")(memory_upgrade_cmd.upgrade)
app.add_typer(memory_cmd.app, name="memory")
app.command(name="serve")(serve_cmd.serve)
app.command(name="replay")(replay_cmd.replay)
app.command(name="main")(main_cmd.main)

if __name__ == "__main__":
    app()
