"""A real serving stack on a free loopback port: a real MLflow champion (small GradientBoosting
models fitted on real BTCUSDT features, in a tmp SQLite store), a real memory store in tmp_path
and the gRPC server of ``mem_serving.server``."""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import grpc
import pandas as pd
import pytest

from mem_core import features
from mem_serving._gen.mem.v1 import mem_pb2_grpc
from mem_serving.handlers import Handlers
from mem_serving.metrics import ServingMetrics
from mem_serving.model_provider import ModelProvider
from mem_serving.server import RunningServer, create_running_server, start_metrics_http
from mem_serving.settings import ServingSettings

from .helpers import V1_PARAMS, V2_PARAMS, load_candles, promote, train_version

TRAIN_ROWS = 6000
#: Rows after the training window, for serving (history + new candles).
SERVE_ROWS = 1200


@dataclass(frozen=True)
class ModelStore:
    db: Path
    v1: str
    v2: str


@pytest.fixture(scope="session")
def btc(shared_candles: Path) -> pd.DataFrame:
    return load_candles(shared_candles, "BTCUSDT", TRAIN_ROWS + SERVE_ROWS)


@pytest.fixture(scope="session")
def serve_candles(btc: pd.DataFrame) -> pd.DataFrame:
    """Candles the models never saw: the first SERVING_HISTORY are history, the rest arrive live."""
    return btc.iloc[TRAIN_ROWS:].reset_index(drop=True)


@pytest.fixture(scope="session")
def model_store(btc: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    """Two registered versions (v1 champion, v2 challenger) in a session MLflow store."""
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    train = btc.iloc[:TRAIN_ROWS].reset_index(drop=True)
    v1 = train_version(train, uri, V1_PARAMS)
    v2 = train_version(train, uri, V2_PARAMS)
    promote(uri, v1)
    return ModelStore(folder / "mlflow.db", v1, v2)


@pytest.fixture
def mlflow_uri(model_store: ModelStore, tmp_path: Path) -> str:
    """A private copy of the registry (artifacts stay shared, read-only): tests may move aliases."""
    db = tmp_path / "mlflow.db"
    shutil.copy(model_store.db, db)
    return f"sqlite:///{db}"


@pytest.fixture
def empty_mlflow_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'empty-mlflow.db'}"


@pytest.fixture(scope="session")
def warm_features() -> None:
    features.warm_up()


def open_engine(path: Path):
    from mem_memory import MemoryEngine, MemoryStore

    store = MemoryStore.open(path)
    engine = MemoryEngine(store, writer_process=True)  # as `mem serve` runs it
    engine.start_writer()
    return store, engine


@dataclass
class Stack:
    running: RunningServer
    channel: grpc.Channel
    stub: mem_pb2_grpc.MemServiceStub
    uri: str
    memory_db: Path
    engine: object
    store: object

    @property
    def handlers(self) -> Handlers:
        return self.running.handlers

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.running.port}"


def start_stack(uri: str, memory_db: Path, candle_source=None, candle_sink=None, **settings: object) -> Stack:
    config = ServingSettings(**{"port": 0, "metrics_port": -1, "model_poll_s": 0.2, "max_workers": 4, **settings})
    metrics = ServingMetrics()
    models = ModelProvider(uri, config.model_poll_s, features.FEATURE_NAMES)
    models.subscribe(lambda m: metrics.set_model(None if m is None else m.version))
    models.start()
    store, engine = open_engine(memory_db)
    handlers = Handlers(config, models, engine, metrics, candle_source, candle_sink)
    metrics.bind_memory(handlers.memory_stats)
    running = create_running_server(config, handlers)
    models.subscribe(lambda m: running.set_model_health(m is not None))
    running.stoppers += [models.stop, store.close, engine.close]  # run in reverse: the writer stops first
    start_metrics_http(running, config)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    return Stack(running, channel, mem_pb2_grpc.MemServiceStub(channel), uri, memory_db, engine, store)


@pytest.fixture
def stack(mlflow_uri: str, tmp_path: Path, warm_features: None) -> Iterator[Stack]:
    s = start_stack(mlflow_uri, tmp_path / "memory" / "memory.db")
    yield s
    s.channel.close()
    s.running.stop(grace=1.0)


@pytest.fixture(autouse=True)
def _quiet_mlflow() -> None:
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
