"""``mem ingest csv|synthetic``: load candles into QuestDB (the external one if configured, else the local one)."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer

from mem_core.settings import DEFAULT_SYMBOLS
from mem_pipelines.ingest.validation import DEFAULT_INTERVAL, INTERVALS, IngestError

app = typer.Typer(
    help="Load candles into the QuestDB `candles` table (idempotent: re-ingesting changes nothing).",
    no_args_is_help=True,
)

_INTERVAL_HELP = f"Candle interval; one of {', '.join(INTERVALS)}."


def _settings():
    from mem_core.questdb.local import can_query
    from mem_core.settings import QuestDBSettings

    settings = QuestDBSettings.from_env()
    if not can_query(settings):
        if settings.external:
            _fail(
                f"the external QuestDB at {settings.host}:{settings.pg_port} (MEM_QUESTDB_HOST) does not answer on PG wire"
            )
        _fail(f"no QuestDB answers at {settings.host}:{settings.pg_port}; start the local one with `mem questdb start`")
    return settings


def _check_files(paths: list[Path]) -> None:
    """Every input is a readable file, or one line naming the first that is not."""
    for path in paths:
        if not path.exists():
            _fail(f"{path}: no such file")
        if not path.is_file():
            _fail(f"{path}: not a file")
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            _fail(f"{path}: cannot be read ({exc.strerror})")


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _report(results) -> None:
    for r in results:
        typer.echo(
            f"{r.symbol}: {r.rows} candles {r.first:%Y-%m-%d %H:%M} .. {r.last:%Y-%m-%d %H:%M} UTC from {r.source}"
        )
    typer.echo(f"ingested {sum(r.rows for r in results)} candles")


@app.command("csv")
def csv_cmd(
    paths: list[Path] = typer.Argument(
        ...,
        help="Binance kline CSV files (12-column dump or open_time,open,high,low,close,volume header; plain, .gz or .zip).",
    ),
    symbol: str = typer.Option(
        None, "--symbol", "-s", help="Symbol for every file (default: from the file name, e.g. BTCUSDT-5m.csv.gz)."
    ),
    interval: str = typer.Option(DEFAULT_INTERVAL, "--interval", "-i", help=_INTERVAL_HELP),
) -> None:
    """Validate every file, then write them; any bad row refuses the whole call (file:line in the message)."""
    from mem_core.questdb.store import CandleStoreError
    from mem_pipelines.ingest.load import ingest_csv_files

    _check_files(paths)  # before any server is contacted: a typo is not a QuestDB problem
    settings = _settings()
    try:
        results = ingest_csv_files(settings, paths, interval=interval, symbol=symbol)
    except (IngestError, CandleStoreError) as exc:
        _fail(str(exc))
    _report(results)


@app.command("synthetic")
def synthetic_cmd(
    symbols: str = typer.Option(",".join(DEFAULT_SYMBOLS), "--symbols", help="Comma-separated symbols."),
    days: float = typer.Option(30.0, "--days", help="Days of candles per symbol (> 0, at most 3650)."),
    seed: int = typer.Option(7, "--seed", help="Random seed: the same seed gives the same candles."),
    end: str = typer.Option(
        None, "--end", help="End time (ISO 8601, UTC if no zone); the last candle closes at or before it. Default: now."
    ),
    interval: str = typer.Option(DEFAULT_INTERVAL, "--interval", "-i", help=_INTERVAL_HELP),
) -> None:
    """Generate seeded regime-switching candles (trend up/down, choppy, volatile) and write them."""
    import pandas as pd

    from mem_core.questdb.store import CandleStoreError
    from mem_pipelines.ingest.load import ingest_synthetic
    from mem_pipelines.ingest.validation import checked_days

    names = [s.strip().upper() for s in symbols.split(",") if s.strip()]
    if not names:
        _fail("--symbols names no symbol")
    try:
        checked_days(days)
    except IngestError as exc:
        _fail(str(exc))
    try:
        end_ts = pd.Timestamp(end) if end else pd.Timestamp.now(tz="UTC")
    except ValueError:
        _fail(f"--end {end!r} is not a time (use ISO 8601, e.g. 2026-01-31T00:00Z)")
    settings = _settings()
    try:
        results = ingest_synthetic(settings, names, days, seed, end_ts, interval)
    except (IngestError, CandleStoreError, ValueError) as exc:
        _fail(str(exc))
    _report(results)
