"""Runs that ``mem main`` executes in its own process but that belong to the project's Dagster
code location, so the Dagster UI can re-execute them.

Dagster gives a run its code location's origin (``DagsterRun.remote_job_origin``) only when the
run is launched through a loaded workspace: the UI, the daemon's schedules and sensors,
``dagster job launch -w workspace.yaml``. ``execute_in_process`` and ``execute_job`` leave it
empty, and the UI's "Re-execute" then fails with ``CheckError: Expected non-None value``
(dagster-io/dagster#19458). To re-execute, the webserver looks the job up in its own workspace by
the origin's location and repository names and runs it there with the parent run's config and
tags (``dagster_graphql``'s ``launch_reexecution_from_parent_run``). So the run is created here with
the origin Dagster's own workspace loader derives from ``workspace.yaml`` for location ``mem``,
the one the UI's own runs carry, and executed in this process with the in-process executor; its
outputs go through the job's IO managers as in a launched run, so "re-execute from failure" finds
them.

Dagster has no public API for this; the few private names used are listed, with this reason, in
tests/test_no_private_imports.py, and tests/test_webserver.py re-executes such runs through the
webserver's GraphQL, so a Dagster upgrade that changes them fails there.

A re-execution runs in the UI's code location, whose Definitions come from its own environment
(MEM_SYMBOLS, default the sample's symbols, which are ``mem main``'s default too): the UI must be
started with the symbols of the runs it re-executes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import dagster as dg
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.workspace.load import location_origins_from_yaml_paths

from mem_core.settings import PROJECT_ROOT

#: The project's workspace and its one code location (module ``mem_pipelines.definitions``).
WORKSPACE = PROJECT_ROOT / "workspace.yaml"
LOCATION = "mem"


def location_job_origin(
    defs: dg.Definitions, job_name: str, workspace: Path = WORKSPACE, location: str = LOCATION
) -> RemoteJobOrigin:
    """The origin of job ``job_name`` in code location ``location`` of ``workspace``, as the
    Dagster UI loads it."""
    if not workspace.is_file():
        raise FileNotFoundError(
            f"{workspace} not found: the runs are recorded as runs of its code location {location!r}"
        )
    origins = {origin.location_name: origin for origin in location_origins_from_yaml_paths([str(workspace)])}
    if location not in origins:
        raise ValueError(f"{workspace} has no code location {location!r} (it has {sorted(origins)})")
    return RemoteJobOrigin(RemoteRepositoryOrigin(origins[location], defs.get_repository_def().name), job_name)


def execute_location_run(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    job_name: str,
    *,
    run_config: Mapping[str, object],
    run_id: str | None = None,
    partition_key: str | None = None,
) -> dg.JobExecutionResult:
    """Execute job ``job_name`` of ``defs`` in this process, on ``instance``, as a run of the
    code location's job (see the module's docstring). Failures are in the result (``success``),
    not raised."""
    job = defs.resolve_job_def(job_name)
    if job.executor_def is not dg.in_process_executor:  # the project's jobs already are (same snapshot as the UI's)
        job = job.with_executor_def(dg.in_process_executor)
    tags = dict(job.run_tags)
    if partition_key is not None:
        keys = job.get_partition_keys(selected_asset_keys=None)
        if partition_key not in keys:
            raise ValueError(f"{partition_key!r} is not a partition of {job_name} ({keys})")
        tags.update(job.get_tags_for_partition_key(partition_key, selected_asset_keys=None))
    run = instance.create_run_for_job(
        job_def=job,
        run_id=run_id,
        run_config=run_config,
        tags=tags,
        remote_job_origin=location_job_origin(defs, job_name),
    )
    return execute_run(InMemoryJob(job), run, instance)
