"""The Dagster resources and IO managers of the pipelines. They are bound once, per deployment,
in ``mem_pipelines.definitions``.

An empty field means "as the project is configured" and is resolved through the settings
modules when the resource is used: the MLflow store (``mem_core.settings.tracking_uri``), the
memory store (``mem_core.settings.memory_db_path``), the frames folder (under ``.mem/``). The
memory's encryption key never is a field: ``mem_memory.key_from_env()`` reads it when the store
is opened, and it is never logged.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pandas as pd

from mem_core.settings import (
    DEFAULT_QUESTDB_HTTP_PORT,
    DEFAULT_QUESTDB_PG_PORT,
    QuestDBSettings,
    memory_db_path,
    project_paths,
    tracking_uri,
)
from mem_memory import MemoryEngine, MemoryStore, key_from_env
from mem_memory.backend import is_postgres


class QuestDBResource(dg.ConfigurableResource):
    """Where QuestDB is: the local one by default, an external one when MEM_QUESTDB_HOST is set."""

    host: str = "127.0.0.1"
    http_port: int = DEFAULT_QUESTDB_HTTP_PORT
    pg_port: int = DEFAULT_QUESTDB_PG_PORT
    user: str = "admin"
    #: Empty: the local QuestDB's default password (never a value in the Launchpad's config);
    #: a password from the environment is bound as ``dg.EnvVar`` in ``definitions.py``.
    password: str = ""
    external: bool = False

    def settings(self) -> QuestDBSettings:
        return QuestDBSettings(
            host=self.host,
            http_port=self.http_port,
            pg_port=self.pg_port,
            user=self.user,
            password=self.password or QuestDBSettings.password,
            external=self.external,
        )

    @classmethod
    def from_settings(cls, settings: QuestDBSettings) -> QuestDBResource:
        return cls(
            host=settings.host,
            http_port=settings.http_port,
            pg_port=settings.pg_port,
            user=settings.user,
            password=settings.password,
            external=settings.external,
        )


class MlflowResource(dg.ConfigurableResource):
    """Where MLflow tracks and registers. Empty: MLFLOW_TRACKING_URI, else the project's SQLite."""

    tracking_uri: str = ""

    def uri(self) -> str:
        return self.tracking_uri or tracking_uri()


class TrainingFramesIOManager(dg.ConfigurableIOManager):
    """Per-symbol frames as parquet files ``<base_dir>/<asset>/<symbol>.parquet``.

    Loading all partitions for the unpartitioned ``training_dataset`` returns the symbols that
    have been materialized (a warning names the others); the dataset's metadata and the MLflow
    lineage list the symbols actually used.

    Outputs and inputs are ``{symbol: DataFrame}`` so a single run can cover many partitions
    (Dagster's pickling IO manager cannot store a multi-partition output).
    """

    base_dir: str = ""

    def _root(self) -> str:
        return self.base_dir or str(project_paths().state / "frames")

    def _path(self, asset_key: dg.AssetKey, partition: str) -> str:
        return os.path.join(self._root(), *asset_key.path, f"{partition}.parquet")

    def handle_output(self, context: dg.OutputContext, obj: dict[str, pd.DataFrame]) -> None:
        for partition, frame in obj.items():
            path = self._path(context.asset_key, partition)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = path + ".tmp"
            frame.to_parquet(tmp, index=False)
            os.replace(tmp, path)

    def load_input(self, context: dg.InputContext) -> dict[str, pd.DataFrame]:
        key = context.asset_key
        partitions = context.asset_partition_keys if context.has_asset_partitions else []
        present = [p for p in partitions if os.path.exists(self._path(key, p))]
        if not present:
            raise FileNotFoundError(f"{key.to_user_string()} is not materialized for any of {partitions}")
        missing = sorted(set(partitions) - set(present))
        if missing:  # symbols never materialized (no candles ingested): trained without, said so
            context.log.warning(f"{key.to_user_string()} not materialized for {missing}; using {present}")
        return {p: pd.read_parquet(self._path(key, p)) for p in present}


@contextmanager
def open_store(path: str | Path | None = None) -> Iterator[MemoryStore]:
    """The ``MemoryStore`` at ``memory_db_path(path)`` (key from MEM_MEMORY_KEY), closed afterwards."""
    db = memory_db_path(path)
    store = MemoryStore.open(db, key=key_from_env())
    try:
        yield store
    finally:
        store.close()


@contextmanager
def open_engine(path: str | Path | None = None) -> Iterator[MemoryEngine]:
    """A ``MemoryEngine`` on the store at ``memory_db_path(path)``, closed afterwards."""
    with open_store(path) as store:
        yield MemoryEngine(store)


class MemoryStoreResource(dg.ConfigurableResource):
    """The shared memory store (SQLite, WAL) the gRPC server also writes to."""

    path: str = ""  # empty: env MEM_MEMORY_DB, else .mem/memory/memory.db under the project

    def db_path(self) -> Path:
        return memory_db_path(self.path or None)

    @contextmanager
    def store(self) -> Iterator[MemoryStore]:
        """The store alone (cheap: what the sensors need)."""
        with open_store(self.db_path()) as store:
            yield store

    @contextmanager
    def engine(self) -> Iterator[MemoryEngine]:
        with open_engine(self.db_path()) as engine:
            yield engine

    def exports_folder(self) -> Path:
        """Where the human-readable exports (strategy_modules.py, ...) are rendered."""
        db = self.db_path()
        if is_postgres(db):  # a database has no folder: the project's memory folder (MEM_HOME)
            return project_paths().memory_db.parent / "exports"
        return db.parent / "exports"
