"""Serving configuration: the only module of ``mem_serving`` that reads the environment (never
at import time); the defaults shared with the rest of the project are in ``mem_core.settings``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mem_core.settings import DEFAULT_METRICS_PORT, DEFAULT_SERVING_PORT, memory_db_path, project_paths, tracking_uri
from mem_serving.time_sanity import DEFAULT_MAX_CLOCK_SKEW_S


def _env(variable: str, default: Any, low: float | None = None) -> Any:
    """A field ``from_env`` reads from ``variable`` (a number, at least ``low``)."""
    return field(default=default, metadata={"env": variable, "low": low})


@dataclass(frozen=True)
class ServingSettings:
    """``mem serve``'s settings; each variable's meaning and default: docs/serving.md ("Configuration",
    "Connections", "Limits")."""

    host: str = "127.0.0.1"
    port: int = _env("MEM_SERVING_PORT", DEFAULT_SERVING_PORT)
    metrics_port: int = _env("MEM_SERVING_METRICS_PORT", DEFAULT_METRICS_PORT)
    metrics_host: str = "127.0.0.1"
    memory_db: Path | None = None
    tracking_uri: str | None = None
    max_workers: int = _env("MEM_SERVING_WORKERS", 8)
    memory_writer_process: bool = True
    max_concurrent_rpcs: int = 512
    model_poll_s: float = _env("MEM_SERVING_MODEL_POLL_S", 5.0)
    model_cache: Path | None = None
    prediction_ttl_s: float = 300.0
    memory_ttl_s: float = 60.0
    grace_s: float = 5.0
    token: str | None = field(default=None, repr=False)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    token_file: Path | None = None
    credentials_poll_s: float = _env("MEM_SERVING_CREDENTIALS_POLL_S", 2.0)
    max_candles: int = 5000
    #: Probability at or above which a prediction counts as a reversal.
    reversal_threshold: float = 0.5
    candle_sink: bool = True
    candle_queue_rows: int = _env("MEM_SERVING_CANDLE_QUEUE", 100_000)
    candle_flush_s: float = _env("MEM_SERVING_CANDLE_FLUSH_S", 1.0)
    #: Rows per background write.
    candle_batch_rows: int = 10_000
    #: Seconds ``stop`` lets the write-behind drain its queue into QuestDB.
    candle_drain_s: float = 10.0
    max_clock_skew_s: float = _env("MEM_SERVING_MAX_CLOCK_SKEW_S", DEFAULT_MAX_CLOCK_SKEW_S, 0)
    keepalive_s: float = _env("MEM_SERVING_KEEPALIVE_S", 60.0, 0)
    keepalive_timeout_s: float = _env("MEM_SERVING_KEEPALIVE_TIMEOUT_S", 20.0, 0.001)
    max_idle_s: float = _env("MEM_SERVING_MAX_IDLE_S", 300.0, 0)
    max_connection_age_s: float = _env("MEM_SERVING_MAX_CONNECTION_AGE_S", 3600.0, 0)
    max_connection_age_grace_s: float = _env("MEM_SERVING_MAX_CONNECTION_AGE_GRACE_S", 30.0, 0)
    max_streams: int = _env("MEM_SERVING_MAX_STREAMS", 2048, 1)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> ServingSettings:
        env = os.environ if env is None else env
        cert, key = env.get("MEM_SERVING_TLS_CERT") or None, env.get("MEM_SERVING_TLS_KEY") or None
        if bool(cert) != bool(key):
            raise ValueError("set both MEM_SERVING_TLS_CERT and MEM_SERVING_TLS_KEY, or neither")
        token_file = env.get("MEM_SERVING_TOKEN_FILE") or None
        if token_file and env.get("MEM_SERVING_TOKEN"):
            raise ValueError("set MEM_SERVING_TOKEN or MEM_SERVING_TOKEN_FILE, not both")
        numbers = {
            f.name: _number(env, f.metadata["env"], f.default, f.metadata["low"]) for f in fields(cls) if f.metadata
        }
        settings = cls(
            host=env.get("MEM_SERVING_HOST", "127.0.0.1"),
            memory_db=memory_db_path(env=env),
            tracking_uri=tracking_uri(env),
            memory_writer_process=_choice(env, "MEM_SERVING_MEMORY_WRITER", "process", "inline") == "process",
            model_cache=_model_cache(env),
            candle_sink=_choice(env, "MEM_SERVING_CANDLE_SINK", "on", "off") == "on",
            token=env.get("MEM_SERVING_TOKEN") or None,
            tls_cert=Path(cert) if cert else None,
            tls_key=Path(key) if key else None,
            token_file=Path(token_file) if token_file else None,
            **numbers,
        )
        clean: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **clean) if clean else settings

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None


@dataclass(frozen=True)
class ClientSettings:
    """What a client of ``mem serve`` takes from the same environment: the bearer token and, as
    the trust root of a TLS channel, the server's certificate (its key is not needed)."""

    token: str | None = field(default=None, repr=False)
    root_cert: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientSettings:
        env = os.environ if env is None else env
        cert = env.get("MEM_SERVING_TLS_CERT") or None
        return cls(token=env.get("MEM_SERVING_TOKEN") or None, root_cert=Path(cert) if cert else None)


def _number(env: Mapping[str, str], name: str, default: Any, low: float | None = None) -> Any:
    """``env[name]`` as the type of ``default`` (``default`` when unset), at least ``low``;
    ``ValueError`` naming the variable."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    kind = type(default)
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {raw!r}") from None
    if low is not None and (not math.isfinite(value) or value < low):
        raise ValueError(f"{name} must be >= {low:g}, got {raw!r}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, other: str) -> str:
    """``env[name]`` (``default`` when unset), which must be ``default`` or ``other``."""
    value = env.get(name, default)
    mode = value.strip().lower()
    if mode not in (default, other):
        raise ValueError(f"{name} must be '{default}' or '{other}', got {value!r}")
    return mode


def _model_cache(env: Mapping[str, str]) -> Path | None:
    """MEM_SERVING_MODEL_CACHE: a folder, ``off`` for none, else the project's default."""
    raw = env.get("MEM_SERVING_MODEL_CACHE", "").strip()
    if raw.lower() == "off":
        return None
    return Path(raw) if raw else project_paths(env).state / "cache" / "models"


def git_commit_override(env: Mapping[str, str] | None = None) -> str:
    """``MEM_GIT_COMMIT``: the commit of an image built without .git ("" when unset)."""
    return (os.environ if env is None else env).get("MEM_GIT_COMMIT", "")
