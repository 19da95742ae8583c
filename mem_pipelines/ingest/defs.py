"""Dagster definitions of the ingest domain (assets, checks, jobs, schedules, sensors)."""
from __future__ import annotations

import dagster as dg


def ingest_defs() -> dg.Definitions:
    return dg.Definitions()
