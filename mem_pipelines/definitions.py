"""The one Dagster ``Definitions`` of the project, gathered from each domain folder.

Each domain (ingest, training, learning, replay, backup) owns a ``defs.py`` returning its assets, checks, jobs,
schedules and sensors, and binds no resource. The resources are bound here, once: one resource
set per deployment, chosen by ``PipelineSettings.deployment`` (the local QuestDB, or the
external one MEM_QUESTDB_HOST names).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg

from mem_core.settings import QUESTDB_PASSWORD_ENV
from mem_pipelines.backup.defs import backup_defs
from mem_pipelines.ingest.defs import ingest_defs
from mem_pipelines.ingest.landing_assets import LandingResource
from mem_pipelines.learning.defs import learning_defs
from mem_pipelines.replay.defs import replay_defs
from mem_pipelines.resources import MemoryStoreResource, MlflowResource, QuestDBResource, TrainingFramesIOManager
from mem_pipelines.settings import Deployment, FreshnessSettings, LandingSettings, PipelineSettings
from mem_pipelines.training.defs import training_defs


def _questdb_password(settings: PipelineSettings) -> Any:
    """A password from the environment reaches Dagster only as an ``EnvVar`` (resolved at run
    time, never shown in the UI)."""
    return dg.EnvVar(QUESTDB_PASSWORD_ENV) if settings.questdb_password_from_env else settings.questdb.password


def _project_stores() -> dict[str, Any]:
    """MLflow, the training frames, the memory store and the landing folder as the project
    configures them."""
    return {
        "mlflow": MlflowResource(),
        "training_frames": TrainingFramesIOManager(),
        "memory_store": MemoryStoreResource(),
        "landing": LandingResource.from_settings(LandingSettings.from_env()),
    }


def local_resources(settings: PipelineSettings) -> dict[str, Any]:
    """The project's own services: the QuestDB on loopback that ``mem questdb start`` runs."""
    q = settings.questdb
    questdb = QuestDBResource(
        http_port=q.http_port, pg_port=q.pg_port, user=q.user, password=_questdb_password(settings)
    )
    return {"questdb": questdb, **_project_stores()}


def external_resources(settings: PipelineSettings) -> dict[str, Any]:
    """Services run elsewhere: the QuestDB at MEM_QUESTDB_HOST, with its credentials."""
    q = settings.questdb
    questdb = QuestDBResource(
        host=q.host,
        http_port=q.http_port,
        pg_port=q.pg_port,
        user=q.user,
        password=_questdb_password(settings),
        external=True,
    )
    return {"questdb": questdb, **_project_stores()}


RESOURCES: Mapping[Deployment, Callable[[PipelineSettings], dict[str, Any]]] = {
    "local": local_resources,
    "external": external_resources,
}


def build_definitions(
    settings: PipelineSettings | None = None, resources: Mapping[str, Any] | None = None
) -> dg.Definitions:
    """The Definitions for ``settings`` (default: from the environment). ``resources`` replace
    members of the deployment's resource set (tests bind stores under ``tmp_path``)."""
    settings = PipelineSettings.from_env() if settings is None else settings
    return dg.Definitions.merge(
        ingest_defs(settings.symbols, settings.max_gap_ratio, FreshnessSettings.from_env().max_lag_minutes),
        training_defs(settings.symbols),
        learning_defs(),
        replay_defs(),
        backup_defs(),
        dg.Definitions(resources={**RESOURCES[settings.deployment](settings), **(resources or {})}),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """What ``workspace.yaml`` loads: the Definitions as the environment configures them, built
    when Dagster asks for them (not when this module is imported)."""
    return build_definitions()
