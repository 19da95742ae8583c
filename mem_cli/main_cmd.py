"""``mem main``: the README's main job (see mem_cli.main_job)."""

from __future__ import annotations

from pathlib import Path

import typer

from mem_core.settings import DEFAULT_REPLAY_SYMBOLS

#: Fewest days of synthetic candles the main job trains on (its walk-forward needs 5 folds of
#: more than a day each; docs/ml.md).
MIN_TRAIN_DAYS = 14


def main(
    csv: list[Path] = typer.Option(
        None, help="Binance kline CSV file(s) to ingest instead of the shipped sample (repeat the option)."
    ),
    synthetic: bool = typer.Option(
        False, "--synthetic", help="Seeded synthetic candles instead of the shipped sample of real ones (data/sample)."
    ),
    symbols: str = typer.Option(",".join(DEFAULT_REPLAY_SYMBOLS), help="Symbols of the sample or synthetic candles."),
    days: int = typer.Option(40, help="Days of synthetic candles (with --synthetic)."),
    train_days: int | None = typer.Option(
        None, help="Days of training data before the replay window (default 180, or all there are)."
    ),
    replay_days: float = typer.Option(5.0, help="Days replayed through the server after the training window."),
    seed: int = typer.Option(7, help="Seed of the synthetic generator (with --synthetic)."),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Also show MLflow's, Dagster's and Alembic's INFO logs."
    ),
) -> None:
    """Start QuestDB, ingest candles, train and gate a champion, serve it, replay a later window, report."""
    import math

    from mem_cli.main_job import MainConfig, run_main
    from mem_cli.progress import quiet_third_party

    for name, value in (("--days", days), ("--train-days", train_days), ("--replay-days", replay_days)):
        if value is not None and (not math.isfinite(value) or value <= 0):
            typer.echo(f"error: {name} {value!r}: must be a finite number of days > 0", err=True)
            raise typer.Exit(1)
    cfg = MainConfig(
        symbols=tuple(s.strip().upper() for s in symbols.split(",") if s.strip()),
        csv=tuple(csv or ()),
        synthetic=synthetic,
        days=days,
        train_days=train_days,
        replay_days=replay_days,
        seed=seed,
    )
    if cfg.csv and cfg.synthetic:
        typer.echo("error: give --csv or --synthetic, not both", err=True)
        raise typer.Exit(1)
    least = (cfg.train_days or MIN_TRAIN_DAYS) + cfg.replay_days + 2
    if cfg.synthetic and least > cfg.days:
        typer.echo(
            f"error: --days ({cfg.days}) must be at least --train-days (default: all there are, "
            f"at least {MIN_TRAIN_DAYS}) + --replay-days + 2 (warm-up) = {least:g}",
            err=True,
        )
        raise typer.Exit(1)
    quiet_third_party(verbose)
    try:
        run_main(cfg, echo=typer.echo)
    except Exception as exc:  # the CLI answers with a message, not a traceback
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
