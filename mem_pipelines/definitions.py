"""The one Dagster ``Definitions`` of the project, gathered from each domain folder.

Each domain (ingest, training, learning, replay, backup) owns a ``defs.py`` returning its assets, checks, jobs,
schedules and sensors, and binds no resource. The resources are bound here, once: one resource
set per deployment, chosen by ``PipelineSettings.deployment`` (the local QuestDB, or the
external one MEM_QUESTDB_HOST names).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import dagster as dg

from mem_core.settings import QUESTDB_PASSWORD_ENV
from mem_pipelines.backup.defs import backup_defs
from mem_pipelines.ingest.defs import ingest_defs
from mem_pipelines.ingest.landing_assets import LandingResource
from mem_pipelines.learning.defs import learning_defs
from mem_pipelines.replay.defs import replay_defs
from mem_pipelines.resources import MemoryStoreResource, MlflowResource, QuestDBResource, TrainingFramesIOManager
from mem_pipelines.run_outputs import RunOutputsIOManager
from mem_pipelines.settings import Deployment, FreshnessSettings, LandingSettings, PipelineSettings
from mem_pipelines.training.defs import training_defs


def _questdb_password(settings: PipelineSettings) -> Any:
    """A password from the environment reaches Dagster only as an ``EnvVar`` (resolved at run
    time, never shown in the UI); otherwise the field stays empty (the local QuestDB's default),
    so the Launchpad's default config never shows a password."""
    return dg.EnvVar(QUESTDB_PASSWORD_ENV) if settings.questdb_password_from_env else ""


def _project_stores() -> dict[str, Any]:
    """MLflow, the training frames and the other outputs (one folder per run), the memory store
    and the landing folder as the project configures them."""
    return {
        "mlflow": MlflowResource(),
        "training_frames": TrainingFramesIOManager(),
        "io_manager": RunOutputsIOManager(),  # every other output, in its run's folder too
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
    merged = dg.Definitions.merge(
        ingest_defs(settings.symbols, settings.max_gap_ratio, freshness=FreshnessSettings.from_env()),
        training_defs(settings.symbols),
        learning_defs(),
        replay_defs(),
        backup_defs(),
        dg.Definitions(resources={**RESOURCES[settings.deployment](settings), **(resources or {})}),
    ).map_asset_specs(func=_catalog_attributes)
    return dg.Definitions(
        assets=dg.with_source_code_references(list(merged.assets or [])),
        asset_checks=merged.asset_checks,
        jobs=merged.jobs,
        schedules=merged.schedules,
        sensors=merged.sensors,
        resources=merged.resources,
        # one process per run, not one per step: the steps of a run depend on each other, and a
        # process per step re-imports pandas, sklearn and MLflow each time (minutes on two cores)
        executor=dg.in_process_executor,
    )


#: Who answers for each group's assets (shown as owners in the catalog).
OWNERS: Mapping[str, str] = {
    "ingest": "team:data-platform",
    "training": "team:ml",
    "learning": "team:trading",
    "replay": "team:trading",
    "memory": "team:data-platform",
}
#: The daily retrain runs at 02:00 UTC and takes minutes: a model or verdict older than this is late.
RETRAIN_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=25))
RETRAINED = {"reversal_model", "champion_gate"}


def _catalog_attributes(spec: dg.AssetSpec) -> dg.AssetSpec:
    """Owners by group; the daily retrain's freshness on the model and the gate's verdict."""
    owner = OWNERS.get(spec.group_name or "")
    spec = spec.replace_attributes(owners=[owner]) if owner and not spec.owners else spec
    if spec.key.to_user_string() in RETRAINED:
        spec = spec.replace_attributes(freshness_policy=RETRAIN_FRESHNESS)
    return spec


@dg.definitions
def defs() -> dg.Definitions:
    """What ``workspace.yaml`` loads: the Definitions as the environment configures them, built
    when Dagster asks for them (not when this module is imported)."""
    return build_definitions()
