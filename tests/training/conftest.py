from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def mlflow_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh MLflow SQLite store in tmp_path (artifacts in tmp_path/mlruns); also the env default."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri
