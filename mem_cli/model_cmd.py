"""``mem model list|promote``: the registered versions of the reversal model, and moving the
champion by hand with an audit trail (a running ``mem serve`` picks the new champion up within
its poll interval, 5 s by default)."""

from __future__ import annotations

import os
from typing import NoReturn

import typer

app = typer.Typer(help="Review the registered models and move the champion by hand.", no_args_is_help=True)

_URI_HELP = "MLflow tracking/registry URI (default MLFLOW_TRACKING_URI, else sqlite:///$MEM_HOME/mlflow.db)."


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _who() -> str:
    from mem_core.settings import operator_name

    return operator_name() or f"uid {os.getuid()}"


@app.command("list")
def list_cmd(tracking_uri: str = typer.Option(None, help=_URI_HELP)) -> None:
    """Every version, newest first: aliases, when registered, the gate's outcome and the holdout
    log-loss gain it tagged, and who promoted it by hand (when someone did)."""
    from mem_core.promotion import PromotionError, list_versions

    try:
        rows = list_versions(tracking_uri)
    except PromotionError as exc:
        _fail(str(exc))
    if not rows:
        typer.echo("no registered version yet: train one (mem main, or the Dagster job train_and_gate)")
        return
    header = ("version", "aliases", "registered (UTC)", "gate", "log-loss gain", "promoted by hand")
    table = [header] + [
        (
            r.version,
            ",".join(r.aliases) or "-",
            f"{r.created:%Y-%m-%d %H:%M}",
            r.gate or "-",
            f"{r.log_loss_gain_mnat} mnat" if r.log_loss_gain_mnat else "-",
            f"{r.promoted_by} at {r.promoted_at}: {r.reason}" if r.promoted_by else "-",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        typer.echo("  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]]).rstrip())


@app.command("promote")
def promote_cmd(
    version: str = typer.Argument(..., help="The version to make champion (see `mem model list`)."),
    reason: str = typer.Option(..., help="Why: kept as the version's audit tag and in its description."),
    by: str = typer.Option(None, help="Who promotes (default MEM_USER, else the login name)."),
    tracking_uri: str = typer.Option(None, help=_URI_HELP),
) -> None:
    """Move alias `champion` to VERSION, overriding the gate, with an audit tag (who, when, why)."""
    from mem_core.promotion import PromotionError, promote

    try:
        previous = promote(version, reason, by or _who(), tracking_uri)
    except PromotionError as exc:
        _fail(str(exc))
    was = f"was version {previous}" if previous else "there was none"
    typer.echo(
        f"version {version.lstrip('v')} is the champion ({was}); a running mem serve swaps to it within its poll interval"
    )
