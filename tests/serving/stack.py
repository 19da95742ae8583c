"""A real serving stack for tests: the gRPC server of ``mem_serving.server`` on a free loopback
port over a real champion provider, a real memory store (writer process) and an optional candle
source; shared by the serving tests through the ``stack`` fixture or ``start_stack``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from mem_serving.api import MemServiceStub
from mem_serving.handlers import Handlers
from mem_serving.metrics import ServingMetrics, model_listener
from mem_serving.model_provider import ModelProvider
from mem_serving.server import RunningServer, create_running_server, start_metrics_http, watch_memory
from mem_serving.settings import ServingSettings


@dataclass(frozen=True)
class ModelStore:
    db: Path
    v1: str
    v2: str


def open_engine(path: Path, key: bytes | None = None):
    from mem_memory import MemoryEngine, MemoryStore

    store = MemoryStore.open(path, key=key)
    engine = MemoryEngine(store, writer_process=True)  # as `mem serve` runs it
    engine.start_writer()
    return store, engine


@dataclass
class Stack:
    running: RunningServer
    channel: grpc.Channel
    stub: MemServiceStub
    uri: str
    memory_db: Path
    engine: object
    store: object

    @property
    def handlers(self) -> Handlers:
        return self.running.handlers

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.running.port}"


def start_stack(
    uri: str,
    memory_db: Path,
    candle_source=None,
    candle_sink=None,
    *,
    memory_key: bytes | None = None,
    **settings: object,
) -> Stack:
    defaults = {"port": 0, "metrics_port": -1, "model_poll_s": 0.2, "max_workers": 4}
    config = ServingSettings(**{**defaults, **settings})
    metrics = ServingMetrics()
    models = ModelProvider(uri, config.model_poll_s, metrics=metrics)
    models.subscribe(model_listener(metrics, uri))
    models.start()
    store, engine = open_engine(memory_db, memory_key)
    handlers = Handlers(config, models, engine, metrics, candle_source, candle_sink)
    metrics.bind_memory(handlers.memory_stats)
    running = create_running_server(config, handlers)
    watch_memory(running, engine)
    running.stoppers += [models.stop, store.close, engine.close]  # run in reverse: the writer stops first
    start_metrics_http(running, config)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    return Stack(running, channel, MemServiceStub(channel), uri, memory_db, engine, store)
