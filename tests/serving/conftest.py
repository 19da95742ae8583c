"""A real serving stack on a free loopback port: a real MLflow champion (small GradientBoosting
models fitted on real BTCUSDT features, in a tmp SQLite store), a real memory store in tmp_path
and the gRPC server of ``mem_serving.server``."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from mem_core import feature_sets

from .helpers import TRAIN_ROWS, V1_PARAMS, V2_PARAMS, load_candles, promote, train_version
from .stack import ModelStore, Stack, start_stack

#: Rows after the training window, for serving (history + new candles).
SERVE_ROWS = 1200


@pytest.fixture(scope="session")
def btc(shared_candles: Path) -> pd.DataFrame:
    return load_candles(shared_candles, "BTCUSDT", TRAIN_ROWS + SERVE_ROWS)


@pytest.fixture(scope="session")
def serve_candles(btc: pd.DataFrame) -> pd.DataFrame:
    """Candles the models never saw: the first SERVING_HISTORY are history, the rest arrive live."""
    return btc.iloc[TRAIN_ROWS:].reset_index(drop=True)


@pytest.fixture(scope="session")
def model_store(
    btc: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory, new_mlflow_store: Callable[[Path], str]
) -> ModelStore:
    """Two registered versions (v1 champion, v2 challenger) in a session MLflow store."""
    folder = tmp_path_factory.mktemp("mlflow")
    uri = new_mlflow_store(folder / "mlflow.db")
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
def empty_mlflow_uri(tmp_path: Path, new_mlflow_store: Callable[[Path], str]) -> str:
    """A new MLflow store without any model."""
    return new_mlflow_store(tmp_path / "empty-mlflow.db")


@pytest.fixture(scope="session")
def warm_features() -> None:
    feature_sets.warm_up()


@pytest.fixture
def stack(mlflow_uri: str, tmp_path: Path, warm_features: None) -> Iterator[Stack]:
    """The serving stack."""
    s = start_stack(mlflow_uri, tmp_path / "memory" / "memory.db")
    yield s
    s.channel.close()
    s.running.stop(grace=1.0)


@pytest.fixture(autouse=True)
def _quiet_mlflow() -> None:
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
