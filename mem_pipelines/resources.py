"""The Dagster resources and IO managers of the pipelines. They are bound once, per deployment,
in ``mem_pipelines.definitions``.

An empty field means "as the project is configured" and is resolved through the settings
modules when the resource is used: the MLflow store (``mem_core.settings.tracking_uri``), the
memory store (``mem_core.settings.memory_db_path``), the frames folder (under ``.mem/``). The
memory's encryption key never is a field: ``mem_memory.key_from_env()`` reads it when the store
is opened, and it is never logged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
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
from mem_memory import MemoryEngine, MemoryStore, open_with_env_keys
from mem_memory.backend import is_postgres
from mem_pipelines.run_outputs import input_run_ids, output_run_id, prune


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


#: The file beside a training asset's frames that lists the symbols of its latest materialization.
FRAMES_MANIFEST = "symbols.json"


class TrainingFramesIOManager(dg.ConfigurableIOManager):
    """Every symbol's frame of a training asset (``{symbol: DataFrame}``) as parquet files
    ``<base_dir>/<run id>/frames/<asset>/<symbol>.parquet``, with ``symbols.json`` listing the
    symbols in their order. Each run writes its own folder (``run_outputs``): concurrent runs
    never share a file. An input is exactly the symbols of the materialization it reads (the
    run's own step, its parent's in a re-execution, else the latest materialization). Each file
    is replaced atomically and the manifest after the frames, so every listed symbol has its file.
    """

    base_dir: str = ""  # empty: <MEM_HOME>/.mem/runs

    def _base(self) -> Path:
        return Path(self.base_dir) if self.base_dir else project_paths().state / "runs"

    def _folder(self, run_id: str, asset_key: dg.AssetKey) -> Path:
        return self._base().joinpath(run_id, "frames", *asset_key.path)

    def handle_output(self, context: dg.OutputContext, obj: dict[str, pd.DataFrame]) -> None:
        folder = self._folder(output_run_id(context), context.asset_key)
        if not folder.parent.parent.exists():
            prune(self._base())
        folder.mkdir(parents=True, exist_ok=True)
        for symbol, frame in obj.items():
            _replace(folder / f"{symbol}.parquet", lambda tmp, frame=frame: frame.to_parquet(tmp, index=False))
        _replace(folder / FRAMES_MANIFEST, lambda tmp: tmp.write_text(json.dumps(list(obj))))
        for stale in folder.glob("*.parquet"):
            if stale.stem not in obj:
                stale.unlink()

    def load_input(self, context: dg.InputContext) -> dict[str, pd.DataFrame]:
        for run_id in input_run_ids(context):
            folder = self._folder(run_id, context.asset_key)
            manifest = folder / FRAMES_MANIFEST
            if manifest.is_file():
                return {s: pd.read_parquet(folder / f"{s}.parquet") for s in json.loads(manifest.read_text())}
        raise FileNotFoundError(
            f"{context.asset_key.to_user_string()} is not materialized (no {FRAMES_MANIFEST} of it under "
            f"{self._base()}); materialize it first (the train_and_gate job does)"
        )


def _replace(path: Path, write: Callable[[Path], object]) -> None:
    """``write`` to a temporary file beside ``path``, then move it over ``path`` atomically."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


@contextmanager
def open_store(path: str | Path | None = None) -> Iterator[MemoryStore]:
    """The ``MemoryStore`` at ``memory_db_path(path)`` (keys from MEM_MEMORY_KEY and
    MEM_MEMORY_KEY_PREVIOUS), closed afterwards."""
    db = memory_db_path(path)
    store = open_with_env_keys(db)
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
