"""Dagster definitions of the learning domain (assets, checks, jobs, schedules, sensors)."""
from __future__ import annotations

import dagster as dg


def learning_defs() -> dg.Definitions:
    return dg.Definitions()
