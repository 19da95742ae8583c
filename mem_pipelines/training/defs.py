"""Dagster definitions of the training domain (assets, checks, jobs, schedules, sensors)."""
from __future__ import annotations

import dagster as dg


def training_defs() -> dg.Definitions:
    return dg.Definitions()
