"""``mem replay``: trade a window of history through the running server; print and write the
three-way comparison (base / base + ML / full system)."""

from __future__ import annotations

from pathlib import Path

import typer

from mem_core.settings import DEFAULT_FEE_BPS, DEFAULT_REPLAY_SYMBOLS, DEFAULT_SERVER_ADDRESS, DEFAULT_SLIPPAGE_BPS


def replay(
    symbols: str = typer.Option(
        ",".join(DEFAULT_REPLAY_SYMBOLS), help="Comma-separated symbols (candles must be in QuestDB)."
    ),
    start: str = typer.Option(..., help="Window start, UTC (e.g. 2025-06-01 or 2025-06-01T12:00)."),
    end: str = typer.Option(..., help="Window end, UTC, exclusive."),
    server: str = typer.Option(DEFAULT_SERVER_ADDRESS, help="host:port of the running `mem serve`."),
    fee_bps: float = typer.Option(DEFAULT_FEE_BPS, help="Fee per fill, basis points of notional."),
    slippage_bps: float = typer.Option(DEFAULT_SLIPPAGE_BPS, help="Adverse slippage per fill, basis points."),
    capital: float = typer.Option(10_000.0, help="Fixed capital positions are sized against."),
    max_holding: int = typer.Option(24, help="Time exit after this many candles."),
    learn_every: int = typer.Option(10, help="Run pattern discovery + performance monitor every N outcomes."),
    shadow: bool = typer.Option(
        True, help="Follow held signals on paper and report them as shadow outcomes (the memory learns from them)."
    ),
    memory_db: Path = typer.Option(
        None, help="The server's memory store (default: the one the server reports); any other is refused."
    ),
    out: Path = typer.Option(Path("reports"), help="Folder for report.md, CSVs and equity.png."),
) -> None:
    """Replay candles from QuestDB through the server; refuses a served model trained into the window
    and a memory store other than the server's."""
    from mem_cli.reach import unreachable

    why = unreachable(server)
    if why is not None:  # fail in about a second, not after gRPC's 30 s wait
        typer.echo(
            f"error: {why}; start the server first with `mem serve` (another terminal; it prints its address), "
            "or name it with --server host:port",
            err=True,
        )
        raise typer.Exit(1)
    from mem_pipelines.replay.runner import ReplayConfig, ReplayError, run_replay  # lazy: keeps `mem --help` fast

    try:
        cfg = ReplayConfig(
            symbols=tuple(symbols.split(",")),
            start=start,
            end=end,
            server=server,
            fee_bps=fee_bps,
            slippage_bps=slippage_bps,
            capital=capital,
            max_holding_bars=max_holding,
            learn_every=learn_every,
            shadow_outcomes=shadow,
            memory_db=memory_db,
        )
        report = run_replay(cfg)
    except (ReplayError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    paths = report.write(out)
    typer.echo(report.table_markdown())
    typer.echo(report.verdict())
    typer.echo("")
    typer.echo(report.differences_markdown())
    typer.echo(f"Report: {paths['markdown']}  plot: {paths['equity_png']}")
