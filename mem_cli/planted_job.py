"""The planted-edge experiment end to end: planted candles in QuestDB, a champion trained only on
the days before the replay, the real gRPC server on a fresh memory store, and the replay with its
report (docs/closed_loop.md, "Does memory learn?").

``run_planted(...)`` is what the CI test (a short market) and ``bench/bench_closed_loop.py`` (the
long run and its control) call; it leaves nothing running.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from mem_core.settings import DEFAULT_FEE_BPS, DEFAULT_SLIPPAGE_BPS, QuestDBSettings
from mem_pipelines.replay.planted import PlantedMarket, PlantedSignals, planted_market
from mem_pipelines.replay.report import ReplayReport


@dataclass(frozen=True)
class PlantedRun:
    """One experiment: the market, how many of its days train the model, the replay's settings."""

    market: PlantedMarket
    train_days: float = 10.0
    warmup_days: float = 2.0  # between training and the replay: feature history, no overlap
    estimator_params: dict | None = None  # None: the seed's GradientBoosting
    learn_every: int = 20
    fee_bps: float = DEFAULT_FEE_BPS
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS

    @property
    def replay_start(self) -> pd.Timestamp:
        return self.market.start + pd.Timedelta(days=self.train_days + self.warmup_days)

    @property
    def replay_end(self) -> pd.Timestamp:
        return self.market.start + pd.Timedelta(days=self.market.days)


def control_of(run: PlantedRun) -> PlantedRun:
    """The same experiment with the condition shuffled (and other symbol names)."""
    market = replace(run.market, shuffled=True, symbols=tuple(f"{s}X" for s in run.market.symbols))
    return replace(run, market=market)


def run_planted(
    run: PlantedRun, questdb: QuestDBSettings, folder: Path, tracking_uri: str | None = None
) -> ReplayReport:
    """Write the planted candles, train and promote a champion on the first ``train_days`` (or
    serve the champion of ``tracking_uri``, e.g. the planted run's for its control), serve it on a
    fresh memory store in ``folder`` and replay the rest through the server."""
    from mem_core import registry
    from mem_core.features import compute_features
    from mem_core.labels import reversal_labels
    from mem_core.questdb.store import write_candles
    from mem_pipelines.replay.runner import ReplayConfig, run_replay
    from mem_pipelines.training.dataset import build_dataset
    from mem_pipelines.training.mlflow_logging import train_and_log
    from mem_serving.server import build_app
    from mem_serving.settings import ServingSettings

    folder.mkdir(parents=True, exist_ok=True)
    frames, signals = planted_market(run.market)
    for symbol, frame in frames.items():
        write_candles(questdb, frame.assign(symbol=symbol))
    uri = tracking_uri or f"sqlite:///{folder / 'mlflow.db'}"
    if tracking_uri is None:
        train_end = run.market.start + pd.Timedelta(days=run.train_days)
        per_symbol = {}
        for symbol, frame in frames.items():
            part = frame[frame["ts"] < train_end].reset_index(drop=True)
            per_symbol[symbol] = (compute_features(part), reversal_labels(part))
        dataset = build_dataset(per_symbol)
        version = train_and_log(
            dataset, tracking_uri=uri, estimator="seed_gbc", feature_set="seed", estimator_params=run.estimator_params
        ).version
        registry.client(uri).set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, version)

    memory_db = folder / "memory.db"
    running = build_app(
        ServingSettings(
            port=0, metrics_port=-1, memory_db=memory_db, tracking_uri=uri, model_poll_s=60.0, max_workers=4
        ),
        start_metrics=False,
    )
    try:
        return run_replay(
            ReplayConfig(
                symbols=run.market.symbols,
                start=run.replay_start,
                end=run.replay_end,
                server=f"127.0.0.1:{running.port}",
                fee_bps=run.fee_bps,
                slippage_bps=run.slippage_bps,
                learn_every=run.learn_every,
                questdb=questdb,
                signals=PlantedSignals(run.market, signals),
            )
        )
    finally:
        running.stop(grace=1.0)
