"""Assets of the learning loop: learned strategies, parameter memory, and the replay report.

Thin: the work is in ``mem_pipelines.learning.logic`` and ``mem_pipelines.replay``; these bodies
call it and turn the result into metadata a data scientist reads in the Dagster UI.
"""

from datetime import datetime, timezone

import dagster as dg
import pandas as pd

from mem_core.settings import DEFAULT_FEE_BPS, DEFAULT_REPLAY_SYMBOLS, DEFAULT_SERVER_ADDRESS, DEFAULT_SLIPPAGE_BPS
from mem_pipelines.learning.logic import markdown_table, run_discovery, run_monitor
from mem_pipelines.resources import MemoryStoreResource, MlflowResource, QuestDBResource

GROUP = "learning"
STRATEGY_COLUMNS = ["name", "conditions", "action", "confidence", "size", "stop_pct", "target_pct", "trades", "win_rate", "avg_pnl_pct"]


def _now() -> pd.Timestamp:
    return pd.Timestamp(datetime.now(timezone.utc))


@dg.asset(
    group_name=GROUP,
    description=(
        "Learned strategies in the memory store: pattern discovery over the last 500 closed trades "
        "creates, updates or deprecates them; strategy_modules.py is re-rendered from the specs."
    ),
    kinds={"python", "sqlite"},
)
def learned_strategies(context: dg.AssetExecutionContext, memory_store: MemoryStoreResource) -> dg.MaterializeResult:
    with memory_store.engine() as engine:
        report = run_discovery(engine, _now(), memory_store.exports_folder())
    context.log.info(
        "discovery: %d created, %d updated, %d deprecated; %d active",
        report.count("created"), report.count("updated"), report.count("deprecated"), len(report.active),
    )
    module = report.exports.get("strategy_modules.py")
    return dg.MaterializeResult(
        metadata={
            "active": len(report.active),
            "deprecated": len(report.deprecated),
            "created": report.count("created"),
            "updated": report.count("updated"),
            "deprecated_now": report.count("deprecated"),
            "what_changed": dg.MetadataValue.md(report.changes_markdown()),
            "active_strategies": dg.MetadataValue.md(markdown_table(report.active, STRATEGY_COLUMNS)),
            "deprecated_strategies": dg.MetadataValue.md(
                markdown_table(report.deprecated, ["name", "trades", "win_rate", "deprecated_reason"])
            ),
            **({"strategy_modules": dg.MetadataValue.path(str(module))} if module else {}),
        }
    )


@dg.asset(
    group_name=GROUP,
    description=(
        "Parameter memory: the performance monitor checks the win rate over the last 20 closed "
        "trades (below 45%: sizes x0.7, confidence minimum 0.70) and logs each adjustment with its reason."
    ),
    kinds={"python", "sqlite"},
)
def parameter_memory(context: dg.AssetExecutionContext, memory_store: MemoryStoreResource) -> dg.MaterializeResult:
    with memory_store.engine() as engine:
        report = run_monitor(engine, _now())
    context.log.info("monitor: %d adjustments; win rate %s over %d trades", len(report.changes), report.recent_win_rate, report.recent_trades)
    return dg.MaterializeResult(
        metadata={
            "adjustments": len(report.changes),
            "recent_trades": report.recent_trades,
            "recent_win_rate": dg.MetadataValue.float(float(report.recent_win_rate)),
            "parameters_version": report.version,
            "what_changed": dg.MetadataValue.md(report.changes_markdown()),
            "parameters": dg.MetadataValue.md(report.parameters_markdown()),
        }
    )


class ReplayReportConfig(dg.Config):
    """A replay to run against the running server (see docs/closed_loop.md)."""

    symbols: list[str] = list(DEFAULT_REPLAY_SYMBOLS)
    start: str = "2025-06-01"
    end: str = "2025-06-08"
    server: str = DEFAULT_SERVER_ADDRESS
    fee_bps: float = DEFAULT_FEE_BPS
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS
    learn_every: int = 10


@dg.asset(
    group_name=GROUP,
    description=(
        "Three-way replay report (base alone; base + ML filter; base + ML + memory) on candles from "
        "QuestDB through the running gRPC server; files under reports/."
    ),
    kinds={"python", "grpc"},
)
def replay_report(
    context: dg.AssetExecutionContext,
    config: ReplayReportConfig,
    memory_store: MemoryStoreResource,
    questdb: QuestDBResource,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    from mem_pipelines.replay.runner import ReplayConfig, run_replay
    from mem_core.settings import project_paths

    cfg = ReplayConfig(
        symbols=tuple(config.symbols),
        start=config.start,
        end=config.end,
        server=config.server,
        fee_bps=config.fee_bps,
        slippage_bps=config.slippage_bps,
        learn_every=config.learn_every,
        memory_db=memory_store.db_path(),
        questdb=questdb.settings(),
        tracking_uri=mlflow.uri(),
    )
    report = run_replay(cfg)
    folder = project_paths().reports / f"replay-{'-'.join(cfg.symbols)}-{cfg.start:%Y%m%d%H%M}-{cfg.end:%Y%m%d%H%M}"
    paths = report.write(folder)
    by = {v.name: v.metrics for v in report.variants}
    context.log.info("replay report written to %s", folder)
    return dg.MaterializeResult(
        metadata={
            "comparison": dg.MetadataValue.md(report.table_markdown() + "\n" + report.verdict()),
            "equity_curves": dg.MetadataValue.md(_png_markdown(paths["equity_png"])),
            "equity_png": dg.MetadataValue.path(str(paths["equity_png"])),
            "report": dg.MetadataValue.path(str(paths["markdown"])),
            "model_version": report.model_version,
            "model_data_end": report.model_data_end,
            **{f"{name}_total_pnl": dg.MetadataValue.float(float(m.total_pnl)) for name, m in by.items()},
            **{f"{name}_trades": m.trades for name, m in by.items()},
            "learning": dg.MetadataValue.md(markdown_table([e.__dict__ for e in report.events][-50:]) if report.events else "_no change_"),
        }
    )


def _png_markdown(path) -> str:
    import base64

    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"![equity curves](data:image/png;base64,{data})"
