"""Where things live and how to reach them: the only module of ``mem_core`` that reads the
environment, and the one home of the defaults training, serving and the replay share.

Nothing here is read at import time: callers ask for ``QuestDBSettings.from_env()``,
``project_paths()``, ``memory_db_path()`` or ``tracking_uri()`` when they need them. Every
reader takes an optional ``env`` mapping (tests pass a dict instead of touching ``os.environ``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: The one default symbol set: the symbols of the shipped sample of real candles (data/sample),
#: which the Dagster assets are partitioned by (MEM_SYMBOLS), ``mem ingest synthetic`` generates,
#: and the main job and a replay trade when none are named.
DEFAULT_SYMBOLS: tuple[str, ...] = ("BTCUSDT", "ETHUSDT")
#: The same set, by the name the main job and the replay use.
DEFAULT_REPLAY_SYMBOLS: tuple[str, ...] = DEFAULT_SYMBOLS
#: Trading costs of the replay's simulator, in basis points of notional per fill.
DEFAULT_FEE_BPS = 10.0
DEFAULT_SLIPPAGE_BPS = 5.0

DEFAULT_QUESTDB_HTTP_PORT = 9000
DEFAULT_QUESTDB_PG_PORT = 8812
DEFAULT_QUESTDB_VERSION = "9.3.4"
#: Holds the QuestDB password; Dagster receives it as ``dg.EnvVar`` of this name, never the value.
QUESTDB_PASSWORD_ENV = "MEM_QUESTDB_PASSWORD"

DEFAULT_SERVING_PORT = 50051
DEFAULT_METRICS_PORT = 5001
#: Where ``mem serve`` listens by default, as the replay dials it.
DEFAULT_SERVER_ADDRESS = f"127.0.0.1:{DEFAULT_SERVING_PORT}"


def _environ(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


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
        """The memory store when MEM_MEMORY_DB does not name one."""
        return self.state / "memory" / "memory.db"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def mlruns(self) -> Path:
        return self.root / "mlruns"


def project_paths(env: Mapping[str, str] | None = None) -> ProjectPaths:
    """The folders under MEM_HOME, else under the project root."""
    env = _environ(env)
    return ProjectPaths(Path(env.get("MEM_HOME", str(PROJECT_ROOT))).resolve())


def memory_db_path(explicit: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """Where the memory store lives: ``explicit``, else MEM_MEMORY_DB, else the project default."""
    if explicit:
        return Path(explicit)
    env = _environ(env)
    named = env.get("MEM_MEMORY_DB", "")
    return Path(named) if named else project_paths(env).memory_db


def tracking_uri(env: Mapping[str, str] | None = None) -> str:
    """MLFLOW_TRACKING_URI, else the project's SQLite database."""
    env = _environ(env)
    uri = env.get("MLFLOW_TRACKING_URI", "")
    if uri:
        return uri
    return f"sqlite:///{project_paths(env).root / 'mlflow.db'}"


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
    http_port: int = DEFAULT_QUESTDB_HTTP_PORT
    pg_port: int = DEFAULT_QUESTDB_PG_PORT
    user: str = "admin"
    password: str = field(default="quest", repr=False)
    database: str = "qdb"
    external: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> QuestDBSettings:
        env = _environ(env)
        host = env.get("MEM_QUESTDB_HOST", "")
        return cls(
            host=host or cls.host,
            http_port=_port(env, "MEM_QUESTDB_HTTP_PORT", DEFAULT_QUESTDB_HTTP_PORT),
            pg_port=_port(env, "MEM_QUESTDB_PG_PORT", DEFAULT_QUESTDB_PG_PORT),
            user=env.get("MEM_QUESTDB_USER", cls.user),
            password=env.get(QUESTDB_PASSWORD_ENV, "quest"),
            external=bool(host),
        )

    def pg_conninfo(self) -> dict[str, Any]:
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


def questdb_password_is_set(env: Mapping[str, str] | None = None) -> bool:
    """True when the password comes from the environment (so Dagster gets it as an ``EnvVar``)."""
    return bool(_environ(env).get(QUESTDB_PASSWORD_ENV))


@dataclass(frozen=True)
class LocalQuestDBSettings:
    """How the project runs its own QuestDB: the jar ``scripts/bootstrap.sh`` fetched and Java."""

    jar: Path
    java: str = "java"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LocalQuestDBSettings:
        """MEM_QUESTDB_JAR, else the cached jar of MEM_QUESTDB_VERSION; MEM_JAVA, else ``java``."""
        env = _environ(env)
        version = env.get("MEM_QUESTDB_VERSION", DEFAULT_QUESTDB_VERSION)
        jar = env.get("MEM_QUESTDB_JAR") or PROJECT_ROOT / ".cache" / f"questdb-{version}.jar"
        return cls(jar=Path(jar), java=env.get("MEM_JAVA", "java"))


def operator_name(env: Mapping[str, str] | None = None) -> str:
    """Who runs a command, for audit tags: ``MEM_USER``, else the login name ("" when neither)."""
    import getpass

    name = _environ(env).get("MEM_USER", "")
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return ""
