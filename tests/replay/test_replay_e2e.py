"""End to end on the shared real candles: QuestDB -> a champion trained only before the window
-> the real gRPC server with a real memory store -> the replay and its three-way report.

Short windows (2 days, 2 symbols) keep it well under a minute on 2 cores.
"""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from typer.testing import CliRunner

from mem_cli.main import app
from mem_core import registry
from mem_core.features import compute_features
from mem_core.labels import reversal_labels
from mem_core.questdb.store import write_candles
from mem_pipelines.replay.assets import replay_report
from mem_pipelines.replay.runner import LookAheadError, ReplayConfig, ReplayError, StoreMismatchError, run_replay
from mem_pipelines.resources import MemoryStoreResource, QuestDBResource, open_engine
from mem_pipelines.training.dataset import build_dataset
from mem_pipelines.training.mlflow_logging import train_and_log
from mem_serving.server import build_app
from mem_serving.settings import ServingSettings

SOURCES = ("BTCUSDT", "ETHUSDT")
#: Stored under names of their own, so candles other test modules leave in the session QuestDB
#: (synthetic BTCUSDT, say) can never mix into this replay.
SYMBOLS = tuple(f"E2E_{s}" for s in SOURCES)
TRAIN_START, TRAIN_END = "2025-05-22", "2025-05-30"  # the model sees only these days
WARM_START = "2025-05-30"
START, END = "2025-06-01", "2025-06-03"  # the replay window
SMALL_GBC = {"n_estimators": 40, "max_depth": 3, "random_state": 42}


@pytest.fixture(autouse=True)
def _quiet() -> None:
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


@pytest.fixture(scope="module")
def loaded(questdb, shared_csv):
    """Candles of both symbols in the session QuestDB (training days, warm-up and the window)."""
    frames = {f"E2E_{s}": shared_csv(s, TRAIN_START, END) for s in SOURCES}
    for s, f in frames.items():
        write_candles(questdb, f.assign(symbol=s))
    return questdb, frames


def _train(frames: dict[str, pd.DataFrame], uri: str, end: str) -> str:
    per_symbol = {}
    for s, f in frames.items():
        part = f[f["ts"] < pd.Timestamp(end, tz="UTC")].reset_index(drop=True)
        per_symbol[s] = (compute_features(part), reversal_labels(part))
    dataset = build_dataset(per_symbol)
    version = train_and_log(
        dataset, tracking_uri=uri, estimator="seed_gbc", feature_set="seed", estimator_params=SMALL_GBC
    ).version
    registry.client(uri).set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, version)
    return version


@pytest.fixture(scope="module")
def champion(loaded, tmp_path_factory, new_mlflow_store) -> str:
    _, frames = loaded
    uri = new_mlflow_store(tmp_path_factory.mktemp("mlflow") / "mlflow.db")
    _train(frames, uri, TRAIN_END)
    return uri


def _serve(uri: str, memory_db: Path, **settings):
    return build_app(
        ServingSettings(
            port=0, metrics_port=-1, memory_db=memory_db, tracking_uri=uri, model_poll_s=0.5, max_workers=4, **settings
        ),
        start_metrics=False,
    )


def _replay(settings, uri: str, memory_db: Path, **options):
    running = _serve(uri, memory_db)
    try:
        cfg = ReplayConfig(
            symbols=SYMBOLS,
            start=START,
            end=END,
            server=f"127.0.0.1:{running.port}",
            fee_bps=10,
            slippage_bps=5,
            learn_every=5,
            memory_db=memory_db,
            questdb=settings,
            **options,
        )
        return run_replay(cfg)
    finally:
        running.stop(grace=1.0)


def test_replay_through_the_real_server_is_deterministic(loaded, champion, tmp_path, monkeypatch) -> None:
    settings, _ = loaded
    monkeypatch.setenv("MEM_QUESTDB_PG_PORT", str(settings.pg_port))
    monkeypatch.setenv("MEM_QUESTDB_HTTP_PORT", str(settings.http_port))
    monkeypatch.delenv("MEM_MEMORY_KEY", raising=False)
    first = _replay(settings, champion, tmp_path / "a" / "memory.db")
    assert pd.Timestamp(first.model_data_end) < pd.Timestamp(START, tz="UTC")
    names = [v.name for v in first.variants]
    assert names == ["base", "base_ml", "full"]
    by = {v.name: v for v in first.variants}
    assert by["base"].metrics.trades > 10
    assert by["full"].metrics.trades > 0
    assert first.evolution, "the learning step ran during the replay"
    assert first.evolution[-1].outcomes == by["full"].metrics.trades
    paths = first.write(tmp_path / "report-a")
    table = paths["markdown"].read_text()
    for label in ("Base strategy alone", "Base + ML filter", "Base + ML + memory (full system)"):
        assert label in table
    assert len(pd.read_csv(paths["comparison"])) == 3

    # The memory saw exactly the full system's outcomes, and what the signals it held would have done.
    with open_engine(tmp_path / "a" / "memory.db") as engine:
        counts = engine.store.counts()
    assert counts["outcomes"] == by["full"].metrics.trades
    assert 0 < counts["shadow_outcomes"] <= by["full"].skipped

    # Sending all 400 candles with every call instead of only the new ones changes nothing: the
    # server's history of the symbol is the same either way.
    second = _replay(settings, champion, tmp_path / "b" / "memory.db", incremental_candles=False)
    again = second.write(tmp_path / "report-b")
    assert second.table_markdown() == first.table_markdown()
    for name in ("markdown", "comparison", "trades", "evolution", "events", "differences", "decomposition"):
        assert paths[name].read_bytes() == again[name].read_bytes(), name


def test_the_guard_asks_the_server_whatever_registry_the_replay_was_given(
    loaded, champion, tmp_path, monkeypatch, new_mlflow_store
) -> None:
    """The bypass of issue 11: the server scores with a version "1" trained into the window (its
    registry), while the replay's environment names another registry whose champion, also "1",
    was trained before the window. The replay must refuse, from what the server says."""
    settings, frames = loaded
    leaky = new_mlflow_store(tmp_path / "leaky-mlflow.db")
    assert _train(frames, leaky, "2025-06-02") == "1"  # sees the first replay day
    assert registry.champion_version(champion) == "1"  # the clean registry's champion has the same version
    monkeypatch.setenv("MLFLOW_TRACKING_URI", champion)
    memory_db = tmp_path / "memory.db"
    running = _serve(leaky, memory_db)
    try:
        cfg = ReplayConfig(symbols=SYMBOLS, start=START, end=END, server=f"127.0.0.1:{running.port}", questdb=settings)
        with pytest.raises(LookAheadError, match="not before the replay window") as refused:
            run_replay(cfg)
        with open_engine(memory_db) as engine:
            assert engine.store.counts()["decisions"] == 0  # refused before any decision
    finally:
        running.stop(grace=1.0)
    assert "2025-06-01T23:55:00+00:00" in str(refused.value)  # the last labelled candle, 2025-06-01T23:05, + 10 candles


def test_the_replay_learns_on_the_servers_store_or_refuses(loaded, champion, tmp_path) -> None:
    settings, _ = loaded
    served, other = tmp_path / "served" / "memory.db", tmp_path / "other" / "memory.db"
    with open_engine(other):
        pass  # another, valid store
    running = _serve(champion, served)
    address = f"127.0.0.1:{running.port}"
    window = dict(symbols=SYMBOLS[:1], start=START, end="2025-06-01T04:00", server=address, questdb=settings)
    try:
        with pytest.raises(StoreMismatchError) as wrong:
            run_replay(ReplayConfig(**window, memory_db=other))
        with pytest.raises(StoreMismatchError, match="no memory store at"):
            run_replay(ReplayConfig(**window, memory_db=tmp_path / "missing.db"))
        copy = tmp_path / "copy.db"
        copy.write_bytes(served.read_bytes())  # the same id, another file
        with pytest.raises(StoreMismatchError, match="would never reach"):
            run_replay(ReplayConfig(**window, memory_db=copy))
        report = run_replay(ReplayConfig(**window))  # no store given: the server's
    finally:
        running.stop(grace=1.0)
    message = str(wrong.value)
    assert str(other) in message and str(served.resolve()) in message and "would never reach" in message
    assert not (tmp_path / "missing.db").exists()
    full = next(v for v in report.variants if v.name == "full")
    with open_engine(served) as engine:
        assert engine.store.counts()["outcomes"] == full.metrics.trades


def test_replay_report_asset_shows_the_table_and_the_plot(loaded, champion, tmp_path, monkeypatch) -> None:
    settings, _ = loaded
    monkeypatch.setenv("MEM_HOME", str(tmp_path))  # reports/ under tmp_path, not the working tree
    monkeypatch.setenv("MEM_QUESTDB_PG_PORT", str(settings.pg_port))
    monkeypatch.setenv("MEM_QUESTDB_HTTP_PORT", str(settings.http_port))  # the server writes the candles it gets
    memory_db = tmp_path / "memory.db"
    running = _serve(champion, memory_db)
    try:
        result = dg.materialize(
            [replay_report],
            resources={
                "memory_store": MemoryStoreResource(path=str(memory_db)),
                "questdb": QuestDBResource.from_settings(settings),
            },
            run_config={
                "ops": {
                    "replay_report": {
                        "config": {
                            "symbols": list(SYMBOLS),
                            "start": START,
                            "end": "2025-06-02",
                            "server": f"127.0.0.1:{running.port}",
                        }
                    }
                }
            },
        )
    finally:
        running.stop(grace=1.0)
    assert result.success
    meta = result.asset_materializations_for_node("replay_report")[0].metadata
    assert "Base + ML + memory (full system)" in meta["comparison"].value
    assert meta["equity_curves"].value.startswith("![equity curves](data:image/png;base64,")
    png = Path(meta["equity_png"].value)
    assert png.is_file() and png.is_relative_to(tmp_path / "reports")
    assert {"base_trades", "base_ml_trades", "full_trades"} <= set(meta)


def test_without_a_champion_the_replay_runs_with_the_ml_silent(loaded, tmp_path, monkeypatch) -> None:
    settings, _ = loaded
    monkeypatch.setenv("MEM_QUESTDB_PG_PORT", str(settings.pg_port))
    monkeypatch.setenv("MEM_QUESTDB_HTTP_PORT", str(settings.http_port))
    running = _serve(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path / "memory.db")
    try:
        result = CliRunner().invoke(
            app,
            [
                "replay",
                "--symbols",
                SYMBOLS[0],
                "--start",
                START,
                "--end",
                "2025-06-02",
                "--server",
                f"127.0.0.1:{running.port}",
                "--out",
                str(tmp_path / "r"),
            ],
        )
    finally:
        running.stop(grace=1.0)
    assert result.exit_code == 0, result.output
    report = next((tmp_path / "r").rglob("*.md")).read_text()
    assert "- Model: none served (no champion model" in report
    # base + ML is the base strategy under the HOLD rule: never more trades than the base alone
    rows = {line.split("|")[1].strip(): line for line in report.splitlines() if line.startswith("| ")}
    assert any("base + ML" in k for k in rows), rows.keys()


def test_replay_sends_the_servers_bearer_token(loaded, champion, tmp_path, monkeypatch) -> None:
    settings, _ = loaded
    memory_db = tmp_path / "memory.db"
    monkeypatch.setenv("MEM_QUESTDB_PG_PORT", str(settings.pg_port))  # the server writes the candles it gets
    monkeypatch.setenv("MEM_QUESTDB_HTTP_PORT", str(settings.http_port))
    running = build_app(
        ServingSettings(port=0, metrics_port=-1, memory_db=memory_db, tracking_uri=champion, token="s3cret-token"),
        start_metrics=False,
    )
    cfg = ReplayConfig(
        symbols=SYMBOLS[:1],
        start=START,
        end="2025-06-01T06:00",
        server=f"127.0.0.1:{running.port}",
        memory_db=memory_db,
        questdb=settings,
    )
    try:
        monkeypatch.delenv("MEM_SERVING_TOKEN", raising=False)
        with pytest.raises(ReplayError, match="UNAUTHENTICATED") as refused:
            run_replay(cfg)
        assert "s3cret" not in str(refused.value)
        monkeypatch.setenv("MEM_SERVING_TOKEN", "s3cret-token")
        assert [v.name for v in run_replay(cfg).variants] == ["base", "base_ml", "full"]
    finally:
        running.stop(grace=1.0)
