"""Where things live and how to reach them, read from the environment in one place.

Nothing here is read at import time: callers ask for ``QuestDBSettings.from_env()`` or
``project_paths()`` when they need them.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ProjectPaths:
    """Project-local folders (all git-ignored): local QuestDB data, caches, reports."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / ".mem"

    @property
    def questdb_root(self) -> Path:
        return self.state / "questdb"

    @property
    def memory_db(self) -> Path:
        return self.state / "memory" / "memory.db"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def mlruns(self) -> Path:
        return self.root / "mlruns"


def project_paths(env: dict[str, str] | None = None) -> ProjectPaths:
    env = os.environ if env is None else env
    return ProjectPaths(Path(env.get("MEM_HOME", str(PROJECT_ROOT))).resolve())


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    """``env[name]`` as a TCP port (``default`` when unset); ``ValueError`` naming the variable."""
    raw = env.get(name) or str(default)
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise ValueError(f"{name} must be a TCP port (1-65535), got {raw!r}")
    return port


@dataclass(frozen=True)
class QuestDBSettings:
    """Connection settings. ``external`` is True when the environment names a QuestDB host."""

    host: str = "127.0.0.1"
    http_port: int = 9000
    pg_port: int = 8812
    user: str = "admin"
    password: str = field(default="quest", repr=False)
    database: str = "qdb"
    external: bool = False

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "QuestDBSettings":
        env = os.environ if env is None else env
        host = env.get("MEM_QUESTDB_HOST", "")
        return cls(
            host=host or "127.0.0.1",
            http_port=_port(env, "MEM_QUESTDB_HTTP_PORT", 9000),
            pg_port=_port(env, "MEM_QUESTDB_PG_PORT", 8812),
            user=env.get("MEM_QUESTDB_USER", "admin"),
            password=env.get("MEM_QUESTDB_PASSWORD", "quest"),
            external=bool(host),
        )

    def pg_conninfo(self) -> dict[str, object]:
        """Keyword arguments for ``psycopg.connect``."""
        return {
            "host": self.host,
            "port": self.pg_port,
            "user": self.user,
            "password": self.password,
            "dbname": self.database,
            "connect_timeout": 5,
        }

    def ilp_conf(self) -> str:
        """Configuration string for the official ``questdb`` client (ILP over HTTP)."""
        conf = f"http::addr={self.host}:{self.http_port};"
        if self.external and self.user and self.password:
            conf += f"username={self.user};password={self.password};"
        return conf
