"""The main job: the whole story on one machine, start to finish, leaving no process behind.

1. start the local QuestDB (or use the external one the environment names)
2. ingest candles: the shipped sample of real candles (data/sample), the CSV files given, or
   seeded synthetic ones
3. Dagster: materialize ``candles`` (with its quality checks) and ``train_and_gate`` over every
   ingested symbol, on a window (default: the training job's, 180 days, or all candles there are)
   that ends before the replay window, so the champion never saw the replayed candles
4. start ``mem serve`` on free ports with MEM_HOME's memory store, emptied for this run (an earlier
   store is moved aside, ``main_memory``)
5. replay the later window through the server and write the three-way report; record the learning
   assets' state in Dagster
6. stop what it started and say where to look
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from mem_core.questdb.local import LocalQuestDB, can_query, free_port, local_from_env
from mem_core.settings import (
    DEFAULT_FEE_BPS,
    DEFAULT_METRICS_PORT,
    DEFAULT_REPLAY_SYMBOLS,
    DEFAULT_SERVING_PORT,
    DEFAULT_SLIPPAGE_BPS,
    ProjectPaths,
    QuestDBSettings,
    memory_db_path,
    project_paths,
)
from mem_memory import private_dir

if TYPE_CHECKING:
    import dagster as dg

CANDLE = pd.Timedelta(minutes=5)
#: Synthetic data ends here by default so that the main job's report is the same every day.
DEFAULT_END = "2026-01-01T00:00:00Z"


@dataclass(frozen=True)
class MainConfig:
    symbols: tuple[str, ...] = DEFAULT_REPLAY_SYMBOLS
    csv: tuple[Path, ...] = ()
    #: Seeded synthetic candles instead of the shipped sample (``--synthetic``).
    synthetic: bool = False
    days: int = 40
    #: None: the training job's default window (``training.defaults.TRAIN_DAYS``).
    train_days: int | None = None
    replay_days: float = 5.0
    seed: int = 7
    end: str = DEFAULT_END
    fee_bps: float = DEFAULT_FEE_BPS
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS


@dataclass
class Steps:
    """Prints each step with its duration."""

    echo: Callable[[str], None] = print
    started: float = field(default_factory=time.monotonic)

    def __call__(self, text: str) -> None:
        self.echo(f"[{time.monotonic() - self.started:6.1f}s] {text}")


def _ensure_questdb(paths: ProjectPaths, say: Steps) -> tuple[QuestDBSettings, LocalQuestDB | None]:
    settings = QuestDBSettings.from_env()
    if settings.external:
        say(f"using the external QuestDB at {settings.host}:{settings.pg_port}")
        return settings, None
    server = local_from_env()
    if server.pid() is not None and can_query(server.settings):
        say(f"local QuestDB already running (pid {server.pid()}); leaving it running")
        return server.settings, None
    say(f"starting the local QuestDB (data in {server.root})")
    return server.start(), server


def _ingest(cfg: MainConfig, settings: QuestDBSettings, say: Steps) -> tuple[tuple[str, ...], pd.Timestamp]:
    from mem_pipelines.ingest.load import ingest_csv_files, ingest_synthetic
    from mem_pipelines.ingest.sample import ingest_sample

    if cfg.csv:
        results = ingest_csv_files(settings, cfg.csv)
    elif cfg.synthetic:
        results = ingest_synthetic(settings, cfg.symbols, cfg.days, cfg.seed, cfg.end)
    else:
        say(f"ingesting the shipped sample of real Binance candles ({', '.join(cfg.symbols)}; data/sample)")
        results = ingest_sample(settings, cfg.symbols)
    for r in results:
        say(f"ingested {r.rows:,} candles of {r.symbol} from {r.source} ({r.first} .. {r.last})")
    symbols = tuple(sorted({r.symbol for r in results}))
    last = min(pd.Timestamp(r.last) for r in results)
    return symbols, last


def main_definitions(symbols: Sequence[str]) -> dg.Definitions:
    """The project's Definitions partitioned by exactly ``symbols`` (the rest as the environment
    configures it): the symbols are a parameter, not an environment variable."""
    from mem_pipelines.definitions import build_definitions
    from mem_pipelines.settings import PipelineSettings

    return build_definitions(replace(PipelineSettings.from_env(), symbols=tuple(symbols)))


def _dagster(
    symbols: Sequence[str], paths: ProjectPaths, train_start: pd.Timestamp, train_end: pd.Timestamp, say: Steps
) -> dict:
    """Run the Dagster jobs in this process on the project's instance (DAGSTER_HOME, else
    MEM_HOME), as runs of the project's code location, so the UI shows them and can re-execute
    them (``location_runs``). The Definitions are partitioned by exactly ``symbols``."""
    import warnings

    import dagster as dg

    # Our definitions knowingly use preview/beta Dagster features (partitioned asset checks, code
    # references); the warnings are for developers, not for the main job's reader.
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    warnings.filterwarnings("ignore", category=dg.BetaWarning)

    import uuid

    from mem_cli.location_runs import execute_location_run
    from mem_cli.progress import follow_run
    from mem_pipelines.settings import dagster_home, ensure_instance_config

    defs = main_definitions(symbols)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    home = dagster_home(paths.root)
    ensure_instance_config(home)  # a MEM_HOME elsewhere gets the project's run queue and limits
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for symbol in symbols:
            res = execute_location_run(instance, defs, "candles_job", run_config=quiet, partition_key=symbol)
            checks = res.get_asset_check_evaluations()
            # a WARN check (freshness on historical data) is a note, not a failure
            failed = [c.check_name for c in checks if not c.passed and c.severity == dg.AssetCheckSeverity.ERROR]
            notes = [c for c in checks if not c.passed and c.severity != dg.AssetCheckSeverity.ERROR]
            said = [c.description for c in notes if c.check_name.endswith(symbol) and c.description]
            say(
                f"candles[{symbol}]: {'ok' if res.success else 'FAILED'}; {len(checks) - len(failed) - len(notes)}/{len(checks) - len(notes)} checks passed"
                + (f" (failed: {failed})" if failed else "")
                + (f"; {said[0].split(';')[0]}" if said else "")
                + (
                    f"; warnings: {others}"
                    if (others := [c.check_name for c in notes if not c.check_name.startswith("fresh_")])
                    else ""
                )
            )
            if not res.success:
                raise RuntimeError(f"the candles job failed for {symbol}; see the Dagster UI (run {res.run_id})")
        from mem_pipelines.training import defaults

        say(
            f"train_and_gate on [{train_start}, {train_end}) for {', '.join(symbols)} "
            f"({defaults.ESTIMATOR} over {defaults.FEATURE_SET}, with its walk-forward)"
        )
        run_id = str(uuid.uuid4())  # known before the run starts, so its steps can be followed
        progress = follow_run(instance, run_id, say)  # a line per step, and while the fit runs
        try:
            res = execute_location_run(
                instance,
                defs,
                "train_and_gate",
                run_id=run_id,
                run_config={
                    **quiet,
                    "ops": {
                        "training_dataset": {"config": {"start": train_start.isoformat(), "end": train_end.isoformat()}}
                    },
                },
            )
        finally:
            progress.stop()
        if not res.success:
            raise RuntimeError(f"train_and_gate failed; see the Dagster UI (run {res.run_id})")
        model = res.asset_materializations_for_node("reversal_model")[0].metadata
        gate = res.asset_materializations_for_node("champion_gate")[0].metadata
        summary = {
            k: v.value
            for k, v in {**model, **gate}.items()
            if hasattr(v, "value") and isinstance(v.value, (int, float, str)) and len(str(v.value)) < 120
        }
        # the one holdout-gain figure (the gate's skill floor is the same one), named
        nan = float("nan")
        say(
            "model v{v}: holdout accuracy {a:.3f} vs majority baseline {b:.3f}; log-loss gain {g:+.1f} mnat "
            "[95% CI {lo:+.1f}, {hi:+.1f}] over the constant base rate {r:.3f}; gate: {d}".format(
                v=summary.get("model_version", "?"),
                a=float(summary.get("accuracy", nan)),
                b=float(summary.get("baseline_accuracy", nan)),
                g=float(summary.get("holdout_log_loss_gain_mnat", nan)),
                lo=float(summary.get("holdout_log_loss_gain_ci_low", nan)),
                hi=float(summary.get("holdout_log_loss_gain_ci_high", nan)),
                r=float(summary.get("holdout_base_rate", nan)),
                d=summary.get("verdict", "?"),
            )
        )
        if "sentence" in gate:
            say(f"gate: {gate['sentence'].value}")
        return summary


def _start_server(paths: ProjectPaths, memory_db: Path, say: Steps) -> tuple[subprocess.Popen, str, int]:
    port, metrics_port = free_port(), free_port()
    log = open(paths.state / "main-serve.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mem_cli.main",
            "serve",
            "--port",
            str(port),
            "--metrics-port",
            str(metrics_port),
            "--memory-db",
            str(memory_db),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    address = f"127.0.0.1:{port}"
    _wait_serving(proc, address, paths.state / "main-serve.log")
    say(f"gRPC server up at {address} (pid {proc.pid}); metrics http://127.0.0.1:{metrics_port}/metrics")
    return proc, address, metrics_port


def _wait_serving(proc: subprocess.Popen, address: str, log: Path, timeout: float = 120.0) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                lines = [line for line in log.read_text().splitlines() if line.strip()]
                raise RuntimeError(
                    f"mem serve exited with code {proc.returncode}: {lines[-1] if lines else 'no output'} (log: {log})"
                )
            try:
                if (
                    stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.25)
    raise RuntimeError(f"mem serve did not become healthy within {timeout:.0f}s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def check_configuration() -> None:
    """The environment's settings, read once before anything starts, so a malformed variable
    (a port, MEM_MEMORY_KEY, ...) is one ``ValueError`` naming it rather than a failure minutes in."""
    from mem_memory import key_from_env
    from mem_serving.settings import ServingSettings

    QuestDBSettings.from_env()
    ServingSettings.from_env()
    key_from_env()


def run_main(cfg: MainConfig, echo: Callable[[str], None] = print) -> Path:
    """Run the whole story; returns the report's markdown path."""
    check_configuration()
    say = Steps(echo)
    paths = project_paths()
    private_dir(paths.state)
    memory_db = memory_db_path()  # MEM_HOME's store: the one mem serve, Dagster and ui.sh open
    qdb_server: LocalQuestDB | None = None
    serve_proc: subprocess.Popen | None = None
    ingested: tuple[str, ...] = ()  # known once the candles are in (the closing hint names them)
    try:
        settings, qdb_server = _ensure_questdb(paths, say)
        ingested, last = _ingest(cfg, settings, say)
        symbols = ingested
        replay_end = last.floor("5min") + CANDLE
        replay_start = replay_end - pd.Timedelta(days=cfg.replay_days)
        # Labels look HORIZON candles ahead: end training a margin before the replay window.
        train_end = replay_start - pd.Timedelta(hours=1)
        from mem_pipelines.training.defaults import TRAIN_DAYS

        train_start = train_end - pd.Timedelta(days=cfg.train_days or TRAIN_DAYS)
        _dagster(symbols, paths, train_start, train_end, say)

        from mem_cli.main_memory import empty_store, record_learning

        empty_store(memory_db, say)
        serve_proc, address, metrics_port = _start_server(paths, memory_db, say)

        from mem_pipelines.replay.runner import ReplayConfig, run_replay

        say(f"replaying {', '.join(symbols)} over [{replay_start}, {replay_end}) through the server")
        report = run_replay(
            ReplayConfig(
                symbols=symbols,
                start=replay_start,
                end=replay_end,
                server=address,
                fee_bps=cfg.fee_bps,
                slippage_bps=cfg.slippage_bps,
                memory_db=memory_db,
                questdb=settings,
            )
        )
        files = report.write(paths.reports)
        from mem_pipelines.settings import dagster_home

        record_learning(dagster_home(paths.root), memory_db, report.model_version, say)
        echo("")
        echo(report.table_markdown())
        echo(report.verdict())
        echo("")
        echo(report.differences_markdown())
        echo("")
        echo(f"Report: {files['markdown']}   equity curves: {files['equity_png']}")
        return Path(files["markdown"])
    finally:
        _stop(serve_proc)
        if qdb_server is not None:
            qdb_server.stop()
            say("stopped the local QuestDB this job started")
        echo("")
        echo("Where to look next:")
        echo(
            "  Dagster UI : bash scripts/ui.sh dagster   (runs, asset lineage, checks, metadata; start QuestDB first: .venv/bin/mem questdb start)"
        )
        # the UI's code location reads its symbols from MEM_SYMBOLS, also when it re-executes this job's runs
        shown = ",".join(ingested) if ingested else "<your symbols>" if cfg.csv else ",".join(cfg.symbols)
        echo(f"               this job's symbols: MEM_SYMBOLS={shown} (its memory store: {memory_db})")
        echo("  MLflow UI  : bash scripts/ui.sh mlflow    (runs, registry mem-reversal with @champion / @challenger)")
        echo(
            f"  Serving    : .venv/bin/mem serve          (gRPC :{DEFAULT_SERVING_PORT}, Prometheus metrics http://127.0.0.1:{DEFAULT_METRICS_PORT}/metrics)"
        )
