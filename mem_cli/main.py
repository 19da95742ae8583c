"""The ``mem`` command line: one entry point for the local QuestDB, ingestion, the pipeline and serving."""
from __future__ import annotations

import typer

from mem_cli import ingest_cmd, questdb_cmd

app = typer.Typer(help="MEM: memory-enhanced ML trading signals.", no_args_is_help=True, add_completion=False)
app.add_typer(questdb_cmd.app, name="questdb")
app.add_typer(ingest_cmd.app, name="ingest")
app.command(name="replay")(__import__("mem_cli.replay_cmd", fromlist=["replay"]).replay)
app.command(name="serve")(__import__("mem_cli.serve_cmd", fromlist=["serve"]).serve)

if __name__ == "__main__":
    app()
