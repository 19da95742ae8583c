"""Dagster resources, configured from environment variables (see mem_core.settings).

The environment is read once, in :func:`build_resources`, when the Definitions are built; the
password reaches Dagster as an ``EnvVar`` (a secret, never shown in the UI) when it is set.
"""
from __future__ import annotations

import os
from typing import Any

import dagster as dg

from mem_core.settings import QuestDBSettings


class QuestDBResource(dg.ConfigurableResource):
    """Where QuestDB is: the local one by default, an external one when MEM_QUESTDB_HOST is set."""

    host: str = "127.0.0.1"
    http_port: int = 9000
    pg_port: int = 8812
    user: str = "admin"
    password: str = "quest"
    external: bool = False

    def settings(self) -> QuestDBSettings:
        return QuestDBSettings(
            host=self.host,
            http_port=self.http_port,
            pg_port=self.pg_port,
            user=self.user,
            password=self.password,
            external=self.external,
        )

    @classmethod
    def from_settings(cls, settings: QuestDBSettings) -> "QuestDBResource":
        return cls(
            host=settings.host,
            http_port=settings.http_port,
            pg_port=settings.pg_port,
            user=settings.user,
            password=settings.password,
            external=settings.external,
        )


def questdb_resource(env: dict[str, str] | None = None) -> QuestDBResource:
    env = os.environ if env is None else env
    s = QuestDBSettings.from_env(env)
    password: Any = dg.EnvVar("MEM_QUESTDB_PASSWORD") if env.get("MEM_QUESTDB_PASSWORD") else s.password
    return QuestDBResource(
        host=s.host, http_port=s.http_port, pg_port=s.pg_port, user=s.user, password=password, external=s.external
    )


def build_resources() -> dict[str, Any]:
    return {"questdb": questdb_resource()}
