"""``mem candles list``: the symbols QuestDB holds, with their first and last candle and counts
(what ``mem replay --start/--end`` and training windows can use)."""

from __future__ import annotations

import json
from typing import NoReturn

import typer

app = typer.Typer(help="Inspect the candles QuestDB holds.", no_args_is_help=True)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@app.command("list")
def list_cmd(
    symbols: str = typer.Option(None, "--symbols", help="Comma-separated symbols to show (default: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
) -> None:
    """Each symbol's first and last candle (open time, UTC) and how many candles QuestDB holds."""
    import pandas as pd

    from mem_core.questdb.store import CandleStoreError, candle_summary
    from mem_core.settings import QuestDBSettings

    names = None if symbols is None else [s.strip().upper() for s in symbols.split(",") if s.strip()]
    try:
        settings = QuestDBSettings.from_env()
        rows = candle_summary(settings, names)
    except (ValueError, CandleStoreError) as exc:
        _fail(str(exc))
    if as_json:
        for r in rows:
            typer.echo(
                json.dumps(
                    {"symbol": r.symbol, "first": r.first.isoformat(), "last": r.last.isoformat(), "candles": r.candles}
                )
            )
        return
    if not rows:
        which = f" of {', '.join(names)}" if names else ""
        typer.echo(
            f"QuestDB at {settings.host}:{settings.pg_port} holds no candles{which}; load some with `mem ingest`."
        )
        return
    now = pd.Timestamp.now(tz="UTC")
    header = ("symbol", "first candle (UTC)", "last candle (UTC)", "candles", "last candle age")
    table = [header] + [
        (r.symbol, f"{r.first:%Y-%m-%d %H:%M}", f"{r.last:%Y-%m-%d %H:%M}", f"{r.candles:,}", _age(now - r.last))
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        typer.echo(
            "  ".join(
                cell.rjust(w) if i == 3 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))
            ).rstrip()
        )


def _age(delta) -> str:
    """A duration in days and hours (or minutes under an hour)."""
    seconds = max(0.0, delta.total_seconds())
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {rest // 60} min"
    return f"{rest // 60} min"
