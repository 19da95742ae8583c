"""The replay report as a Dagster asset (group ``learning``): a replay against the running server,
its files under reports/, and the comparison and equity curves in the asset's metadata."""

import base64
from pathlib import Path

import dagster as dg

from mem_core.settings import (
    DEFAULT_FEE_BPS,
    DEFAULT_REPLAY_SYMBOLS,
    DEFAULT_SERVER_ADDRESS,
    DEFAULT_SLIPPAGE_BPS,
    project_paths,
)
from mem_pipelines.learning.render import rows_markdown
from mem_pipelines.replay.runner import ReplayConfig, run_replay
from mem_pipelines.resources import MemoryStoreResource, QuestDBResource

GROUP = "learning"


class ReplayReportConfig(dg.Config):
    """A replay to run against the running server (see docs/closed_loop.md)."""

    symbols: list[str] = list(DEFAULT_REPLAY_SYMBOLS)
    start: str = "2025-06-01"
    end: str = "2025-06-08"
    server: str = DEFAULT_SERVER_ADDRESS
    fee_bps: float = DEFAULT_FEE_BPS
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS
    learn_every: int = 10
    shadow_outcomes: bool = True


@dg.asset(
    group_name=GROUP,
    deps=["memory_store"],  # the external asset of learning/defs.py: written by mem serve
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
) -> dg.MaterializeResult:
    cfg = ReplayConfig(
        symbols=tuple(config.symbols),
        start=config.start,
        end=config.end,
        server=config.server,
        fee_bps=config.fee_bps,
        slippage_bps=config.slippage_bps,
        learn_every=config.learn_every,
        shadow_outcomes=config.shadow_outcomes,
        memory_db=memory_store.db_path(),
        questdb=questdb.settings(),
    )
    report = run_replay(cfg)
    folder = project_paths().reports / f"replay-{'-'.join(cfg.symbols)}-{cfg.start:%Y%m%d%H%M}-{cfg.end:%Y%m%d%H%M}"
    paths = report.write(folder)
    by = {v.name: v.metrics for v in report.variants}
    context.log.info("replay report written to %s", folder)
    return dg.MaterializeResult(
        metadata={
            "comparison": dg.MetadataValue.md(report.table_markdown() + "\n" + report.verdict()),
            "per_trade_differences": dg.MetadataValue.md(report.differences_markdown()),
            "decomposition": dg.MetadataValue.md(report.decomposition_markdown()),
            "equity_curves": dg.MetadataValue.md(_png_markdown(paths["equity_png"])),
            "equity_png": dg.MetadataValue.path(str(paths["equity_png"])),
            "report": dg.MetadataValue.path(str(paths["markdown"])),
            "model_version": report.model_version,
            "model_data_end": report.model_data_end,
            **{f"{name}_total_pnl": dg.MetadataValue.float(float(m.total_pnl)) for name, m in by.items()},
            **{f"{name}_trades": m.trades for name, m in by.items()},
            "learning": dg.MetadataValue.md(
                rows_markdown([e.__dict__ for e in report.events][-50:]) if report.events else "_no change_"
            ),
        }
    )


def _png_markdown(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"![equity curves](data:image/png;base64,{data})"
