"""Dagster resources, configured from environment variables (see mem_pipelines.settings)."""
from __future__ import annotations

from typing import Any


def build_resources() -> dict[str, Any]:
    return {}
