"""Real candles and a small real champion for the serving tests and benchmarks: the shared Binance
CSVs read into a frame, GradientBoosting models fitted on their features and labels and registered
in an MLflow store, and the alias that makes one the champion."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mem_core import registry
from mem_core.features import compute_features
from mem_core.labels import reversal_labels
from mem_pipelines.training.dataset import build_dataset
from mem_pipelines.training.mlflow_logging import train_and_log

#: Candles of the served tests' training window (the rows after it are served).
TRAIN_ROWS = 6000

#: Small but real GradientBoosting models (the seed's estimator, fewer trees: fast tests).
V1_PARAMS = {"n_estimators": 40, "max_depth": 3, "random_state": 42}
V2_PARAMS = {"n_estimators": 20, "max_depth": 2, "random_state": 7}


def load_candles(folder: Path, symbol: str, rows: int) -> pd.DataFrame:
    """The first ``rows`` 5-minute candles of ``symbol`` from ``folder/<symbol>-5m.csv.gz``."""
    raw = pd.read_csv(folder / f"{symbol}-5m.csv.gz", nrows=rows)
    frame = pd.DataFrame({"ts": pd.to_datetime(raw["open_time"], unit="ms", utc=True)})
    for col in ("open", "high", "low", "close", "volume"):
        frame[col] = raw[col].astype("float64")
    return frame


def train_version(candles: pd.DataFrame, uri: str, params: dict, symbol: str = "BTCUSDT") -> str:
    """Fit a GradientBoosting model on real features and labels; register it (alias challenger)."""
    dataset = build_dataset({symbol: (compute_features(candles), reversal_labels(candles))})
    return train_and_log(
        dataset, tracking_uri=uri, estimator="seed_gbc", feature_set="seed", estimator_params=params
    ).version


def promote(uri: str, version: str) -> None:
    """Make ``version`` the champion of the store at ``uri``."""
    registry.client(uri).set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, version)
