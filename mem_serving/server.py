"""Build and run the gRPC server (docs/serving.md, "Server"): ``create_running_server`` starts a
``grpc.aio`` server on its own event-loop thread behind a synchronous API; ``build_app`` wires the
real parts; ``serve`` runs them until SIGINT/SIGTERM and stops gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mem_core.settings import QuestDBSettings
from mem_serving.api import SERVICE_NAME
from mem_serving.candle_sink import CandleSink, observing
from mem_serving.credentials import UNAUTHENTICATED_MESSAGE, ServingCredentials, TokenSet
from mem_serving.handlers import Handlers
from mem_serving.servicer import MemServicer, add_to_server
from mem_serving.settings import ServingSettings
from mem_serving.startup import StartupClock, StartupError, preflight

log = logging.getLogger(__name__)

#: Methods reachable without a token (orchestrator probes carry none).
AUTH_EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)
#: Name of the thread running the server's event loop.
LOOP_THREAD_NAME = "mem-grpc-loop"
#: Name prefix of the thread pool's threads (blocking calls).
WORKER_THREAD_PREFIX = "mem-grpc-worker"


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls without ``authorization: Bearer <token>`` naming a token of the current set
    (UNAUTHENTICATED; the set may change while the server runs); the token is never logged."""

    def __init__(self, tokens: TokenSet) -> None:
        self._tokens = tokens

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        # authentication first: no token, nothing learnt of the methods (an unknown one is UNAUTHENTICATED too)
        if details.method.startswith(AUTH_EXEMPT_PREFIXES) or self._authorized(details.invocation_metadata):
            return await continuation(details)
        handler = await continuation(details)  # only for its streaming kind
        return _DENY if handler is None else _deny_like(handler)

    def _authorized(self, metadata: Any) -> bool:
        for key, value in metadata or ():
            if key == "authorization":
                return self._tokens.accepts(value.encode() if isinstance(value, str) else bytes(value))
        return False


async def _deny(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)


def _deny_like(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind as ``handler`` that refuses the call."""
    kind = "_".join("stream" if s else "unary" for s in (handler.request_streaming, handler.response_streaming))
    make = getattr(grpc, f"{kind}_rpc_method_handler")
    return make(_deny, handler.request_deserializer, handler.response_serializer)


#: What a call to a method without a handler gets without a token (the request is not parsed).
_DENY = grpc.unary_unary_rpc_method_handler(_deny)

#: gRPC's largest duration (ms): "never" for the connection timers.
_NEVER_MS = 2**31 - 1


def connection_options(settings: ServingSettings) -> list[tuple[str, int]]:
    """The server's connection hygiene (docs/serving.md, "Connections"): keepalive pings, the
    idle and age limits of a connection, and the cap on its concurrent calls."""

    def ms(seconds: float) -> int:
        return min(_NEVER_MS, max(1, round(seconds * 1000))) if seconds > 0 else _NEVER_MS

    return [
        ("grpc.keepalive_time_ms", ms(settings.keepalive_s)),
        ("grpc.keepalive_timeout_ms", ms(settings.keepalive_timeout_s)),
        # what closes a connection whose ping goes unanswered (grpc 1.85 does not on the above alone)
        ("grpc.http2.ping_timeout_ms", ms(settings.keepalive_timeout_s)),
        # ping idle connections too: a peer that vanished is found before max_idle_s
        ("grpc.keepalive_permit_without_calls", 1 if settings.keepalive_s > 0 else 0),
        ("grpc.max_connection_idle_ms", ms(settings.max_idle_s)),
        ("grpc.max_connection_age_ms", ms(settings.max_connection_age_s)),
        ("grpc.max_connection_age_grace_ms", ms(settings.max_connection_age_grace_s)),
        ("grpc.max_concurrent_streams", settings.max_streams),
    ]


@dataclass
class RunningServer:
    """A started gRPC server on its event-loop thread, and the pieces to stop it cleanly (``stop``,
    from another thread than the loop's)."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    handlers: Handlers
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    executor: futures.ThreadPoolExecutor
    #: Set (on the loop) to end the loop thread.
    done: asyncio.Event
    credentials: ServingCredentials | None = None
    stoppers: list[Callable[[], None]] = field(default_factory=list)
    metrics_port: int | None = None
    _stopped: bool = field(default=False, repr=False)

    def set_memory_health(self, ok: bool) -> None:
        """Whether the memory's writes find space: ``mem.v1.MemService`` and the server (``""``) are
        SERVING while they do (no decision can be recorded otherwise; a champion is not a condition).
        From any thread, set on the loop in the order decided; ignored once the server is stopping."""
        if not self._stopped and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the server is stopping
                self.loop.call_soon_threadsafe(self._set_health, ok)

    def _set_health(self, ok: bool) -> None:
        for service in (SERVICE_NAME, ""):
            self.loop.create_task(self.health.set(service, _status(ok)))

    def reload_credentials(self, reason: str = "request") -> dict[str, Any]:
        """Re-read the token file and TLS pair now (what SIGHUP does); returns what is in force."""
        return self.credentials.reload(reason) if self.credentials is not None else {}

    def stop(self, grace: float | None = 5.0) -> None:
        """Health NOT_SERVING, calls in flight get ``grace`` seconds, then the loop thread, the
        thread pool and the stoppers (reverse order) are ended. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            asyncio.run_coroutine_threadsafe(self.health.enter_graceful_shutdown(), self.loop).result()
            asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop).result()
        except Exception:
            log.exception("error while stopping the gRPC server")
        finally:
            self.loop.call_soon_threadsafe(self.done.set)
            self.thread.join()
            self.executor.shutdown(wait=True)  # blocking calls still running end before the stores close
        for stop in reversed(self.stoppers):
            try:
                stop()
            except Exception:  # keep stopping the rest; the failure is logged
                log.exception("error while stopping")


def create_running_server(settings: ServingSettings, handlers: Handlers) -> RunningServer:
    """A started server bound to ``settings.host:settings.port`` (0 = a free port: see ``.port``);
    ``stop(grace)`` stops it."""
    credentials = ServingCredentials(settings)
    loop, done = asyncio.new_event_loop(), asyncio.Event()
    thread = threading.Thread(target=_run_loop, args=(loop, done), name=LOOP_THREAD_NAME, daemon=True)
    thread.start()
    executor = futures.ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix=WORKER_THREAD_PREFIX)
    try:
        server, health_servicer, port = asyncio.run_coroutine_threadsafe(
            _start(settings, handlers, executor, credentials), loop
        ).result()
    except BaseException:
        loop.call_soon_threadsafe(done.set)
        thread.join()
        executor.shutdown(wait=False)
        raise
    running = RunningServer(server, port, health_servicer, handlers, loop, thread, executor, done, credentials)
    credentials.start_watching()
    running.stoppers.append(credentials.stop)
    log.info(
        "MEM gRPC server on %s:%d (%s, auth %s)",
        settings.host,
        port,
        "TLS" if settings.tls else "plaintext",
        "on" if credentials.tokens is not None else "off",
    )
    return running


def _status(serving: bool) -> int:
    return health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING


def watch_memory(running: RunningServer, engine: Any) -> None:
    """Report the memory's write health (``engine.write_health``) as the gRPC health, and both in
    the metrics (``mem_memory_writes_ok``, ``mem_health_serving{service}``)."""
    engine.write_health.subscribe(running.set_memory_health)
    engine.write_health.subscribe(running.handlers.metrics.set_memory_writes)


def _run_loop(loop: asyncio.AbstractEventLoop, done: asyncio.Event) -> None:
    """The loop thread: run until ``done``, then cancel what is left (e.g. the memory's commits in
    the default executor) and close the loop."""
    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        runner.run(done.wait())


async def _start(
    settings: ServingSettings, handlers: Handlers, executor: futures.Executor, credentials: ServingCredentials
) -> tuple[grpc.aio.Server, health.aio.HealthServicer, int]:
    """Build, bind and start the server (on the loop: grpc.aio objects belong to their loop)."""
    interceptors = [BearerTokenInterceptor(credentials.tokens)] if credentials.tokens is not None else []
    server = grpc.aio.server(
        interceptors=interceptors,
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        options=[
            ("grpc.max_receive_message_length", 8 * 1024 * 1024),
            ("grpc.so_reuseport", 0),
            *connection_options(settings),
        ],
    )
    add_to_server(MemServicer(handlers, executor), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = f"{settings.host}:{settings.port}"
    try:
        if credentials.tls is not None:
            port = server.add_secure_port(address, credentials.tls.server_credentials())
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:  # grpc.aio's bind failure (it never returns 0)
        raise StartupError(
            f"cannot bind the gRPC server to {address}; choose another port with MEM_SERVING_PORT or --port"
        ) from None
    await server.start()
    for service in ("", SERVICE_NAME):  # SERVING without a champion too: the ML is silent then
        await health_servicer.set(service, _status(True))
    return server, health_servicer, port


def build_app(
    settings: ServingSettings, *, start_metrics: bool = True, clock: StartupClock | None = None
) -> RunningServer:
    """Everything ``mem serve`` runs: champion provider, memory engine, QuestDB source, metrics,
    and the started gRPC server. A configuration that cannot work (a port taken, a TLS file
    missing, a wrong ``MEM_MEMORY_KEY``, a memory store that cannot be opened) raises
    ``StartupError`` before anything is left running. ``clock`` is told when each step ends."""
    import sqlite3

    import psycopg

    from mem_core import feature_sets, registry
    from mem_core.settings import project_paths
    from mem_memory import MemoryEngine, MemoryKeyError, MemoryStore, StoreInUse, key_from_env, previous_keys_from_env
    from mem_memory.backend import describe, redact_text
    from mem_memory.nearest import warm_up as warm_nearest
    from mem_serving.candle_age import CandleAgeWatcher
    from mem_serving.handlers import questdb_source
    from mem_serving.metrics import ServingMetrics, model_listener
    from mem_serving.model_cache import ModelCache
    from mem_serving.model_provider import ModelProvider

    mark = clock.mark if clock is not None else lambda step: None
    mark("imports")
    preflight(settings)
    try:
        questdb = QuestDBSettings.from_env()
    except ValueError as exc:  # a malformed MEM_QUESTDB_* variable; the message names it
        raise StartupError(str(exc)) from None
    memory_db = settings.memory_db or project_paths().memory_db
    try:
        store = MemoryStore.open(
            memory_db,
            key=key_from_env(),
            previous_keys=previous_keys_from_env(),
            command="mem serve",
            read_only_when_full=True,  # a full disk: reads answered, NOT_SERVING until space returns
        )
    except (MemoryKeyError, StoreInUse) as exc:
        raise StartupError(str(exc)) from None
    except (OSError, sqlite3.Error, psycopg.Error) as exc:
        raise StartupError(
            f"cannot open the memory store {describe(memory_db)} (MEM_MEMORY_DB or --memory-db): {redact_text(str(exc), memory_db)}"
        ) from None
    engine = MemoryEngine(store, writer_process=settings.memory_writer_process)
    mark("memory store")
    metrics = ServingMetrics()
    uri = settings.tracking_uri or registry.tracking_uri()
    cache = ModelCache(settings.model_cache, uri) if settings.model_cache is not None else None
    models = ModelProvider(uri, settings.model_poll_s, metrics=metrics, cache=cache)
    # the writer process starts (its interpreter and imports, on another core) while this thread
    # loads the feature kernels and the champion; this thread only waits on its pipe meanwhile
    starter = futures.ThreadPoolExecutor(1, thread_name_prefix="mem-writer-start")
    writer_started = starter.submit(engine.start_writer)
    starter.submit(warm_nearest)  # the similarity kernel, beside the feature kernels
    starter.shutdown(wait=False)  # the thread ends with its tasks
    try:
        feature_sets.warm_up()
        mark("feature kernels")
        models.start()
        mark("champion")
        writer_started.result()
        mark("memory writer")
    except BaseException:
        futures.wait([writer_started])  # nothing is left starting
        for stop in (models.stop, engine.close, store.close):
            stop()
        raise
    ages = CandleAgeWatcher(questdb)  # the newest candle per symbol in QuestDB: read, written, or read by calls
    ages.register(metrics.registry)
    source = observing(questdb_source(questdb), ages.observe)
    sink: CandleSink | None = None
    if settings.candle_sink:  # the write-behind of accepted candles to QuestDB
        sink = CandleSink(
            questdb,
            max_rows=settings.candle_queue_rows,
            batch_rows=settings.candle_batch_rows,
            flush_s=settings.candle_flush_s,
            drain_s=settings.candle_drain_s,
            on_written=ages.observe,
        )
        sink.register(metrics.registry)
    handlers = Handlers(settings, models, engine, metrics, source, sink)
    metrics.bind_memory(handlers.memory_stats)
    try:
        running = create_running_server(settings, handlers)
    except BaseException:
        for stop in (source.close, engine.close, store.close, models.stop):
            stop()
        raise
    mark("gRPC server")
    # after the start: its registry read of the champion's times imports MLflow (seconds of CPU)
    models.subscribe(model_listener(metrics, models.tracking_uri))
    watch_memory(running, engine)
    # stoppers run in reverse: the writer process stops before the store closes, the sink after
    # the server stopped (no call offers any more)
    running.stoppers += [models.stop, store.close, engine.close, source.close]
    if sink is not None:
        running.stoppers.append(sink.close)
    running.stoppers.append(ages.start().stop)
    if start_metrics:
        try:
            start_metrics_http(running, settings)
        except StartupError:
            running.stop(grace=0)
            raise
    return running


def start_metrics_http(running: RunningServer, settings: ServingSettings) -> None:
    """Serve the handlers' metrics registry in Prometheus format (unless ``metrics_port < 0``)."""
    if settings.metrics_port < 0:
        return
    from prometheus_client import start_http_server

    try:
        httpd, _thread = start_http_server(
            settings.metrics_port, addr=settings.metrics_host, registry=running.handlers.metrics.registry
        )
    except OSError as exc:
        raise StartupError(
            f"the metrics port {settings.metrics_host}:{settings.metrics_port} cannot be bound ({exc.strerror}); "
            "choose another with MEM_SERVING_METRICS_PORT or --metrics-port"
        ) from None
    running.metrics_port = httpd.server_address[1]
    running.stoppers += [httpd.server_close, httpd.shutdown]
    log.info("Prometheus metrics on http://%s:%d/metrics", settings.metrics_host, running.metrics_port)


#: The GIL switch interval while serving (default 5 ms). The loop thread answers every call; when a background
#: thread holds the GIL (the champion poll's MLflow query, a memory query in the pool), the loop waits up to one
#: interval each time it wants it back: a poll of a few ms of CPU stalled it 20-40 ms every 5 s (a loop watchdog).
GIL_SWITCH_INTERVAL_S = 0.0005
#: Allocations between young collections while serving. Default 700: GC took 16 ms per 1,000-item
#: batch over 80 (longest pause 115 ms, a gen-2); 50,000: 1.4 ms per batch, longest pause 21 ms.
YOUNG_GC_THRESHOLD = 50_000


def settle_heap() -> None:
    """Take start-up's objects (libraries, champion, the memory's index) out of the cyclic GC's view
    (a full collection walked them: ~250 ms once a minute under load) and collect young objects less
    often. Only for a process that serves (and benches run as it): frozen objects are never freed."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])


def serve(settings: ServingSettings | None = None, ready: Callable[[RunningServer], None] | None = None) -> None:
    """Run until SIGINT or SIGTERM, then stop gracefully (in-flight calls get ``grace_s``);
    SIGHUP re-reads the token file and the TLS pair."""
    settings = settings or ServingSettings.from_env()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)  # this process only serves (like gc.freeze below)
    clock = StartupClock()
    running = build_app(settings, clock=clock)
    settle_heap()
    clock.mark("heap")
    log.info("started in %s", clock.summary())
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: running.reload_credentials("SIGHUP"))
    try:
        if ready is not None:
            ready(running)
        while not stop.wait(0.5):
            pass
    finally:
        log.info("stopping (grace %.1f s)", settings.grace_s)
        running.stop(settings.grace_s)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
