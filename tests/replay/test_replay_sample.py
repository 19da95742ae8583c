"""The replay on the shipped sample (data/sample), windows as ``mem main --replay-days N`` takes
them (the last N days, the champion trained before them), through the real server with a champion
whose features need 289 contiguous candles (regime_v1, like the default training): all three
variants finish, and base + ML and the full system are answered for every candle they are at.

The champion is small (a few days, few trees) to keep this cheap; the full ``mem main`` runs are
bench/bench_replay_main.py (and tests/test_main_job.py for the command itself).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from mem_core import registry
from mem_core.feature_sets import REGIME_V1
from mem_core.labels import reversal_labels
from mem_core.questdb.store import write_candles
from mem_pipelines.replay.runner import ReplayConfig, run_replay
from mem_pipelines.training.dataset import build_dataset
from mem_pipelines.training.mlflow_logging import train_and_log
from mem_serving.server import build_app
from mem_serving.settings import ServingSettings

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
SOURCES = ("BTCUSDT", "ETHUSDT")
#: Stored under names of their own, so other modules' candles in the session QuestDB never mix in.
SYMBOLS = tuple(f"SAMPLE_{s}" for s in SOURCES)
TRAIN_DAYS = 6
SMALL_GBC = {"n_estimators": 30, "max_depth": 3, "random_state": 42}
CANDLE = pd.Timedelta(minutes=5)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


@pytest.fixture(scope="module")
def sample(questdb, read_csv):
    """The sample's last weeks in the session QuestDB, and the replay's end (as mem main sets it)."""
    frames = {f"SAMPLE_{s}": read_csv(SAMPLE, s) for s in SOURCES}
    end = min(f["ts"].iloc[-1] for f in frames.values()).floor("5min") + CANDLE
    first = end - pd.Timedelta(days=5 + TRAIN_DAYS + 4)
    frames = {s: f[f["ts"] >= first].reset_index(drop=True) for s, f in frames.items()}
    for s, f in frames.items():
        write_candles(questdb, f.assign(symbol=s))
    return questdb, frames, end


@pytest.fixture(scope="module")
def champion_uri(sample, tmp_path_factory, new_mlflow_store) -> tuple[str, pd.Timestamp]:
    """A regime_v1 champion trained on the days before the longest window (5 days)."""
    _, frames, end = sample
    train_end = end - pd.Timedelta(days=5) - pd.Timedelta(hours=1)
    per_symbol = {}
    for s, f in frames.items():
        part = f[f["ts"] < train_end].reset_index(drop=True)
        per_symbol[s] = (REGIME_V1.frame(part), reversal_labels(part))
    uri = new_mlflow_store(tmp_path_factory.mktemp("mlflow") / "mlflow.db")
    version = train_and_log(
        build_dataset(per_symbol),
        tracking_uri=uri,
        estimator="seed_gbc",
        feature_set="regime_v1",
        estimator_params=SMALL_GBC,
    ).version
    registry.client(uri).set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, version)
    return uri


@pytest.mark.parametrize("days", [1, 2, 5])
def test_the_replay_of_the_last_days_of_the_sample_finishes(sample, champion_uri, tmp_path, monkeypatch, days) -> None:
    settings, _, end = sample
    monkeypatch.setenv("MEM_QUESTDB_PG_PORT", str(settings.pg_port))
    monkeypatch.setenv("MEM_QUESTDB_HTTP_PORT", str(settings.http_port))
    monkeypatch.delenv("MEM_MEMORY_KEY", raising=False)
    memory_db = tmp_path / "memory.db"
    running = build_app(
        ServingSettings(
            port=0, metrics_port=-1, memory_db=memory_db, tracking_uri=champion_uri, model_poll_s=0, max_workers=2
        ),
        start_metrics=False,
    )
    try:
        report = run_replay(
            ReplayConfig(
                symbols=SYMBOLS,
                start=end - pd.Timedelta(days=days),
                end=end,
                server=f"127.0.0.1:{running.port}",
                memory_db=memory_db,
                questdb=settings,
            )
        )
        ml_absent = running.handlers.metrics.ml_absent._value.get()
    finally:
        running.stop(grace=1.0)
    assert report.model_version and not report.model_absent_reason  # a champion answered
    assert [v.name for v in report.variants] == ["base", "base_ml", "full"]
    by = {v.name: v for v in report.variants}
    assert by["base"].signals > 0 and by["base_ml"].signals > 0 and by["full"].signals > 0
    assert ml_absent == 0  # every EnhanceSignal had its 289 contiguous candles: the ML spoke
    table = report.table_markdown()
    for row in ("Base strategy alone", "Base + ML filter", "Base + ML + memory (full system)"):
        assert row in table
