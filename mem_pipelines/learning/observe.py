"""The learning loop's assets as a run outside Dagster left them: ``mem main``'s replay decides
through ``mem serve`` and learns in-process on the memory store, so Dagster never runs
``learned_strategies`` or ``parameter_memory`` there. ``report_memory_assets`` records, on the
Dagster instance, what the store holds afterwards: ``served_model`` (the version that answered),
``memory_store`` (decisions, outcomes, where), ``learned_strategies`` and ``parameter_memory``
(their state, with the same metadata the assets write), so the lineage reads candles -> model ->
served model -> decisions -> learned strategies and parameters.

The events are reported materializations (``DagsterInstance.report_runless_asset_event``): they
change nothing in the store (running discovery or the monitor again would learn twice).
``parameter_memory``'s ``last_event_id`` tells its next run where the changes it lists start.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from mem_core import registry
from mem_memory.backend import describe
from mem_pipelines.learning.assets import STRATEGY_COLUMNS
from mem_pipelines.learning.render import rows_markdown, strategy_row
from mem_pipelines.learning.runners import parameter_changes_since, parameters_dict, recent_performance

if TYPE_CHECKING:
    from mem_memory import MemoryEngine


def memory_asset_events(
    engine: MemoryEngine, location: str | Path, model_version: str, source: str
) -> list[dg.AssetMaterialization]:
    """The four learning assets' state in ``engine``'s store, as materializations whose
    description names ``source`` (what decided and learned, e.g. "mem main's replay")."""
    engine.refresh()
    store = engine.store
    counts = store.counts()
    last = store.last_event_id()
    where = describe(location)
    specs = list(engine.strategies(include_deprecated=True))
    active = [strategy_row(s) for s in specs if not s.deprecated]
    deprecated = [strategy_row(s) for s in specs if s.deprecated]
    params = engine.parameters()
    steps, _, truncated = parameter_changes_since(engine, 0)
    trades, win_rate = recent_performance(engine)
    served: dict[str, Any] = {
        "model_version": dg.MetadataValue.text(model_version or "none"),
        "model_uri": dg.MetadataValue.text(f"models:/{registry.MODEL_NAME}/{model_version}" if model_version else ""),
    }
    stored: dict[str, Any] = {
        "decisions": dg.MetadataValue.int(counts["decisions"]),
        "outcomes": dg.MetadataValue.int(counts["outcomes"]),
        "shadow_outcomes": dg.MetadataValue.int(counts["shadow_outcomes"]),
        "last_event_id": dg.MetadataValue.int(last),
        "store": dg.MetadataValue.text(where),
        "store_id": dg.MetadataValue.text(store.store_id),
        "model_version": dg.MetadataValue.text(model_version or "none"),
    }
    strategies: dict[str, Any] = {
        "active": dg.MetadataValue.int(len(active)),
        "deprecated": dg.MetadataValue.int(len(deprecated)),
        "active_strategies": dg.MetadataValue.md(rows_markdown(active, STRATEGY_COLUMNS)),
        "deprecated_strategies": dg.MetadataValue.md(
            rows_markdown(deprecated, ["name", "trades", "win_rate", "deprecated_reason"])
        ),
        "store": dg.MetadataValue.text(where),
    }
    rows = [{"parameter": s.parameter, "trigger": s.trigger, "from": s.start, "to": s.end, "why": s.why} for s in steps]
    parameters: dict[str, Any] = {
        "parameters_version": dg.MetadataValue.text(str(params.version)),
        "recent_trades": dg.MetadataValue.int(trades),
        "recent_win_rate": dg.MetadataValue.float(float(win_rate)),
        "parameters": dg.MetadataValue.md(
            rows_markdown([{"parameter": k, "value": v} for k, v in sorted(parameters_dict(params).items())])
        ),
        "changes_since_last_run": dg.MetadataValue.md(
            rows_markdown(rows, ["parameter", "trigger", "from", "to", "why"])
            + ("\n\n_only the newest changes_" if truncated else "")
        ),
        "last_event_id": dg.MetadataValue.int(last),
        "store": dg.MetadataValue.text(where),
    }
    said = f"Recorded after {source}: the store's state, not a run of this asset."
    return [
        dg.AssetMaterialization("served_model", description=f"The model that answered {source}.", metadata=served),
        dg.AssetMaterialization("memory_store", description=f"Decisions and outcomes of {source}.", metadata=stored),
        dg.AssetMaterialization("learned_strategies", description=said, metadata=strategies),
        dg.AssetMaterialization("parameter_memory", description=said, metadata=parameters),
    ]


def report_memory_assets(
    instance: dg.DagsterInstance, engine: MemoryEngine, location: str | Path, model_version: str, source: str
) -> list[dg.AssetKey]:
    """Report ``memory_asset_events`` on ``instance``; the keys reported."""
    events = memory_asset_events(engine, location, model_version, source)
    for event in events:
        instance.report_runless_asset_event(event)
    return [e.asset_key for e in events]
