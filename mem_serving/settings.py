"""Serving configuration: the only module of ``mem_serving`` that reads the environment (never
at import time). The defaults it shares with the rest of the project (ports, the memory store's
path, the MLflow store) are declared in ``mem_core.settings``.

=============================  =========================================  ==================
variable                       meaning                                    default
=============================  =========================================  ==================
MEM_SERVING_HOST               address the gRPC server binds              127.0.0.1
MEM_SERVING_PORT               gRPC port (0 = pick a free one)            50051
MEM_SERVING_METRICS_PORT       Prometheus HTTP port (0 = free, -1 = off)  5001
MEM_SERVING_WORKERS            threads for the calls that block (QuestDB  8
                               reads, SQLite commits); the rest run on
                               the server's event loop
MEM_SERVING_MEMORY_WRITER      how decisions are committed: ``process``   process
                               (the memory's writer process) or
                               ``inline`` (in-process group commit)
MEM_SERVING_MODEL_POLL_S       seconds between champion checks            5
MEM_SERVING_MODEL_CACHE        local copies of champion versions, so a    <MEM_HOME>/.mem/
                               restart loads without a download (``off``: cache/models
                               none)
MEM_SERVING_CANDLE_SINK        write the candles the engine sends to      on
                               QuestDB in the background (``on``/``off``)
MEM_SERVING_CANDLE_QUEUE       candles the write-behind queue holds at    100000
                               most (more are dropped and counted)
MEM_SERVING_CANDLE_FLUSH_S     seconds between background writes          1
MEM_SERVING_TOKEN              bearer token the engine must send          (none: no auth)
MEM_SERVING_TOKEN_FILE         file of accepted tokens, one per line      (none)
                               (0600; re-read on SIGHUP and when it
                               changes); instead of MEM_SERVING_TOKEN
MEM_SERVING_CREDENTIALS_POLL_S seconds between checks of the token file   2
                               and TLS files (0 = only on SIGHUP)
MEM_SERVING_TLS_CERT/_TLS_KEY  PEM files; both set = TLS; reloaded like  (none: plaintext)
                               the token file
MEM_SERVING_MAX_CLOCK_SKEW_S   seconds a candle or decision time may lie  120
                               ahead of the server's clock beyond one
                               candle interval (5 min); later: refused
MEM_SERVING_KEEPALIVE_S        seconds without traffic before the server  60
                               pings a connection (0 = no pings)
MEM_SERVING_KEEPALIVE_TIMEOUT_S
                               seconds a ping may go unanswered before    20
                               the connection is closed
MEM_SERVING_MAX_IDLE_S         seconds a connection may hold no call      300
                               before it is closed (0 = never)
MEM_SERVING_MAX_CONNECTION_AGE_S
                               seconds after which a connection is asked  3600
                               to go away (0 = never)
MEM_SERVING_MAX_CONNECTION_AGE_GRACE_S
                               seconds its calls in flight then get       30
MEM_SERVING_MAX_STREAMS        calls in flight on one connection at most  2048
MEM_MEMORY_DB                  memory store (SQLite) path                 <MEM_HOME>/.mem/memory/memory.db
MLFLOW_TRACKING_URI            MLflow tracking/registry store             sqlite:///<root>/mlflow.db
=============================  =========================================  ==================
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mem_core.settings import DEFAULT_METRICS_PORT, DEFAULT_SERVING_PORT, memory_db_path, project_paths, tracking_uri
from mem_serving.time_sanity import DEFAULT_MAX_CLOCK_SKEW_S


@dataclass(frozen=True)
class ServingSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_SERVING_PORT
    #: Prometheus HTTP port; 0 picks a free one, a negative value disables the endpoint.
    metrics_port: int = DEFAULT_METRICS_PORT
    metrics_host: str = "127.0.0.1"
    memory_db: Path | None = None
    tracking_uri: str | None = None
    #: Threads of the pool that runs the calls that block (QuestDB reads, SQLite commits, memory
    #: queries); the hot path (EnhanceSignal with candles) runs on the server's event loop.
    max_workers: int = 8
    #: Commit EnhanceSignal's decisions through the memory's writer process (docs/memory.md);
    #: False: the in-process group commit on a worker thread.
    memory_writer_process: bool = True
    #: Calls beyond this many in flight are refused with RESOURCE_EXHAUSTED (load shedding).
    max_concurrent_rpcs: int = 512
    model_poll_s: float = 5.0
    #: Folder of the local copies of champion versions (``mem_serving.model_cache``); None: none.
    model_cache: Path | None = None
    prediction_ttl_s: float = 300.0
    memory_ttl_s: float = 60.0
    grace_s: float = 5.0
    token: str | None = field(default=None, repr=False)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: File of accepted bearer tokens (one per line), re-read on SIGHUP and when it changes.
    token_file: Path | None = None
    #: Seconds between checks of the token file and TLS files for changes; 0 = SIGHUP only.
    credentials_poll_s: float = 2.0
    #: Largest number of candles accepted in one request.
    max_candles: int = 5000
    #: Probability at or above which a prediction counts as a reversal.
    reversal_threshold: float = 0.5
    #: Write every new or revised candle a call brings (and PushCandles) to QuestDB in the
    #: background (``mem_serving.candle_sink``); False: candles stay in the in-memory history.
    candle_sink: bool = True
    #: Rows the write-behind queue holds at most; an offer that does not fit is dropped and counted.
    candle_queue_rows: int = 100_000
    #: Seconds between background writes (a full batch is written at once).
    candle_flush_s: float = 1.0
    #: Rows per background write.
    candle_batch_rows: int = 10_000
    #: Seconds ``stop`` lets the write-behind drain its queue into QuestDB.
    candle_drain_s: float = 10.0
    #: Seconds a candle or decision time may lie ahead of the server's clock beyond one candle
    #: interval; a later one is refused (``mem_serving.time_sanity``).
    max_clock_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S
    #: Connections (docs/serving.md, "Connections"): seconds without traffic before the server
    #: pings (0 = no pings) and seconds it waits for the answer before closing the connection.
    keepalive_s: float = 60.0
    keepalive_timeout_s: float = 20.0
    #: Seconds a connection may hold no call before the server closes it (0 = never).
    max_idle_s: float = 300.0
    #: Seconds after which a connection is asked to go away (GOAWAY; clients reconnect, which
    #: spreads them over replicas), then the seconds its calls in flight get to end (0 = never).
    max_connection_age_s: float = 3600.0
    max_connection_age_grace_s: float = 30.0
    #: Calls in flight on one connection at most (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
    max_streams: int = 2048

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> ServingSettings:
        env = os.environ if env is None else env
        cert, key = env.get("MEM_SERVING_TLS_CERT") or None, env.get("MEM_SERVING_TLS_KEY") or None
        if bool(cert) != bool(key):
            raise ValueError("set both MEM_SERVING_TLS_CERT and MEM_SERVING_TLS_KEY, or neither")
        token_file = env.get("MEM_SERVING_TOKEN_FILE") or None
        if token_file and env.get("MEM_SERVING_TOKEN"):
            raise ValueError("set MEM_SERVING_TOKEN or MEM_SERVING_TOKEN_FILE, not both")
        settings = cls(
            host=env.get("MEM_SERVING_HOST", "127.0.0.1"),
            port=_number(env, "MEM_SERVING_PORT", DEFAULT_SERVING_PORT, int),
            metrics_port=_number(env, "MEM_SERVING_METRICS_PORT", DEFAULT_METRICS_PORT, int),
            memory_db=memory_db_path(env=env),
            tracking_uri=tracking_uri(env),
            max_workers=_number(env, "MEM_SERVING_WORKERS", 8, int),
            memory_writer_process=_writer_mode(env.get("MEM_SERVING_MEMORY_WRITER", "process")),
            model_poll_s=_number(env, "MEM_SERVING_MODEL_POLL_S", 5.0, float),
            model_cache=_model_cache(env),
            candle_sink=_on_off("MEM_SERVING_CANDLE_SINK", env.get("MEM_SERVING_CANDLE_SINK", "on")),
            candle_queue_rows=_number(env, "MEM_SERVING_CANDLE_QUEUE", 100_000, int),
            candle_flush_s=_number(env, "MEM_SERVING_CANDLE_FLUSH_S", 1.0, float),
            token=env.get("MEM_SERVING_TOKEN") or None,
            tls_cert=Path(cert) if cert else None,
            tls_key=Path(key) if key else None,
            token_file=Path(token_file) if token_file else None,
            credentials_poll_s=float(env.get("MEM_SERVING_CREDENTIALS_POLL_S", 2.0)),
            max_clock_skew_s=_at_least(env, "MEM_SERVING_MAX_CLOCK_SKEW_S", DEFAULT_MAX_CLOCK_SKEW_S, float, 0),
            keepalive_s=_at_least(env, "MEM_SERVING_KEEPALIVE_S", 60.0, float, 0),
            keepalive_timeout_s=_at_least(env, "MEM_SERVING_KEEPALIVE_TIMEOUT_S", 20.0, float, 0.001),
            max_idle_s=_at_least(env, "MEM_SERVING_MAX_IDLE_S", 300.0, float, 0),
            max_connection_age_s=_at_least(env, "MEM_SERVING_MAX_CONNECTION_AGE_S", 3600.0, float, 0),
            max_connection_age_grace_s=_at_least(env, "MEM_SERVING_MAX_CONNECTION_AGE_GRACE_S", 30.0, float, 0),
            max_streams=_at_least(env, "MEM_SERVING_MAX_STREAMS", 2048, int, 1),
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


def _number(env: Mapping[str, str], name: str, default: float, kind: type) -> Any:
    """``kind(env[name])`` (``default`` when unset); ``ValueError`` naming the variable."""
    raw = env.get(name)
    if raw is None or raw == "":
        return kind(default)
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {raw!r}") from None


def _at_least(env: Mapping[str, str], name: str, default: float, kind: type, low: float) -> Any:
    """``_number``, refused below ``low`` (``ValueError`` naming the variable)."""
    value = _number(env, name, default, kind)
    if not math.isfinite(value) or value < low:
        raise ValueError(f"{name} must be >= {low:g}, got {env.get(name)!r}")
    return value


def _writer_mode(value: str) -> bool:
    mode = value.strip().lower()
    if mode not in ("process", "inline"):
        raise ValueError(f"MEM_SERVING_MEMORY_WRITER must be 'process' or 'inline', got {value!r}")
    return mode == "process"


def _model_cache(env: Mapping[str, str]) -> Path | None:
    """MEM_SERVING_MODEL_CACHE: a folder, ``off`` for none, else the project's default."""
    raw = env.get("MEM_SERVING_MODEL_CACHE", "").strip()
    if raw.lower() == "off":
        return None
    return Path(raw) if raw else project_paths(env).state / "cache" / "models"


def _on_off(name: str, value: str) -> bool:
    mode = value.strip().lower()
    if mode not in ("on", "off"):
        raise ValueError(f"{name} must be 'on' or 'off', got {value!r}")
    return mode == "on"


def git_commit_override(env: Mapping[str, str] | None = None) -> str:
    """``MEM_GIT_COMMIT``: the commit of an image built without .git ("" when unset)."""
    return (os.environ if env is None else env).get("MEM_GIT_COMMIT", "")
