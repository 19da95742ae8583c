"""Assets of the learning loop: learned strategies and parameter memory.

Thin: the work is in ``mem_pipelines.learning.runners``; these bodies call it and turn the result
into metadata a data scientist reads in the Dagster UI.
"""

from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from mem_memory import MemoryConfig
from mem_pipelines.learning.render import rows_markdown
from mem_pipelines.learning.runners import run_discovery, run_monitor
from mem_pipelines.resources import MemoryStoreResource

GROUP = "learning"
#: The memory's rules as the deployed engine applies them (its default config), for the descriptions.
RULES = MemoryConfig()
STRATEGY_COLUMNS = [
    "name",
    "conditions",
    "action",
    "confidence",
    "size",
    "stop_pct",
    "target_pct",
    "trades",
    "win_rate",
    "avg_pnl_pct",
]


def _now() -> pd.Timestamp:
    return pd.Timestamp(datetime.now(UTC))


@dg.asset(
    group_name=GROUP,
    deps=["memory_store"],  # the external asset of learning/defs.py: written by mem serve
    description=(
        f"Learned strategies in the memory store: pattern discovery over the last {RULES.discovery_window} closed trades "
        "creates, updates or deprecates them; strategy_modules.py is re-rendered from the specs."
    ),
    kinds={"python", "sqlite"},
)
def learned_strategies(context: dg.AssetExecutionContext, memory_store: MemoryStoreResource) -> dg.MaterializeResult:
    with memory_store.engine() as engine:
        report = run_discovery(engine, _now(), memory_store.exports_folder())
    context.log.info(
        "discovery: %d created, %d updated, %d deprecated; %d active",
        report.count("created"),
        report.count("updated"),
        report.count("deprecated"),
        len(report.active),
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
            "active_strategies": dg.MetadataValue.md(rows_markdown(report.active, STRATEGY_COLUMNS)),
            "deprecated_strategies": dg.MetadataValue.md(
                rows_markdown(report.deprecated, ["name", "trades", "win_rate", "deprecated_reason"])
            ),
            **({"strategy_modules": dg.MetadataValue.path(str(module))} if module else {}),
        }
    )


@dg.asset(
    group_name=GROUP,
    deps=["memory_store"],  # the external asset of learning/defs.py: written by mem serve
    description=(
        f"Parameter memory: the performance monitor checks the win rate over the last {RULES.monitor_window} closed "
        f"trades (below {RULES.monitor_min_win_rate:.0%}: sizes x{RULES.monitor_size_factor:g}, confidence minimum "
        f"{RULES.monitor_confidence_min:.2f}) and logs each adjustment with its reason; lists every parameter step since "
        "its last run, serving's per-outcome sizing included."
    ),
    kinds={"python", "sqlite"},
)
def parameter_memory(context: dg.AssetExecutionContext, memory_store: MemoryStoreResource) -> dg.MaterializeResult:
    with memory_store.engine() as engine:
        report = run_monitor(engine, _now(), _last_event_seen(context))
    context.log.info(
        "monitor: %d adjustments; win rate %s over %d trades",
        len(report.changes),
        report.recent_win_rate,
        report.recent_trades,
    )
    return dg.MaterializeResult(
        metadata={
            "adjustments": len(report.changes),
            "recent_trades": report.recent_trades,
            "recent_win_rate": dg.MetadataValue.float(float(report.recent_win_rate)),
            "parameters_version": report.version,
            "what_changed": dg.MetadataValue.md(report.changes_markdown()),
            "changes_since_last_run": dg.MetadataValue.md(report.since_markdown()),
            "last_event_id": dg.MetadataValue.int(report.last_event_id),
            "parameters": dg.MetadataValue.md(report.parameters_markdown()),
        }
    )


def _last_event_seen(context: dg.AssetExecutionContext) -> int:
    """The memory's event id the previous materialization read up to (0 the first time)."""
    entry = context.instance.get_latest_materialization_event(context.asset_key)
    materialization = entry.asset_materialization if entry is not None else None
    value = materialization.metadata.get("last_event_id") if materialization is not None else None
    return int(value.value) if value is not None else 0
