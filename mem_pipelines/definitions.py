"""The one Dagster ``Definitions`` of the project, gathered from each domain folder.

Each domain (ingest, training, learning, backup) owns a ``defs.py`` returning its assets, checks, jobs,
schedules and sensors; resources are bound once here.
"""
from __future__ import annotations

import dagster as dg

from mem_pipelines.backup.defs import backup_defs
from mem_pipelines.ingest.defs import ingest_defs
from mem_pipelines.learning.defs import learning_defs
from mem_pipelines.resources import build_resources
from mem_pipelines.training.defs import training_defs


def build_definitions() -> dg.Definitions:
    return dg.Definitions.merge(
        ingest_defs(),
        training_defs(),
        learning_defs(),
        backup_defs(),
        dg.Definitions(resources=build_resources()),
    )


defs = build_definitions()
