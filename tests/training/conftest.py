from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mem_core.feature_sets import FeatureSet

from .helpers import regime_v1_registered


@pytest.fixture
def mlflow_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh MLflow SQLite store in tmp_path (artifacts in tmp_path/mlruns); also the env default."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def regime_v1() -> Iterator[FeatureSet]:
    """The ``regime_v1`` feature set registered for this test (``helpers.regime_v1_registered``)."""
    with regime_v1_registered() as fs:
        yield fs
