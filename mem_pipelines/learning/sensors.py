"""Sensors over the memory store's event log, each with a cursor (docs/closed_loop.md §1).

The cursor is the id of the last memory event the sensor has read. A tick reads the events after
it; when some are outcomes it requests exactly one run (discovery and the monitor look at a window
of the last trades, so one run covers any number of new outcomes) and returns the new cursor with it
in one ``SensorResult``, which Dagster stores atomically with the tick. The run key carries the
cursor, so a sensor restarted from an older cursor cannot launch the same run twice.
"""

import dagster as dg

from mem_memory.backend import describe
from mem_pipelines.learning.assets import RULES, learned_strategies, parameter_memory
from mem_pipelines.learning.cursor import scan_events
from mem_pipelines.resources import MemoryStoreResource

learned_strategies_job = dg.define_asset_job(
    "learned_strategies_job",
    selection=[learned_strategies],
    description=f"Pattern discovery over the last {RULES.discovery_window} closed trades; re-render strategy_modules.py.",
)
parameter_memory_job = dg.define_asset_job(
    "parameter_memory_job",
    selection=[parameter_memory],
    description=f"Performance monitor over the last {RULES.monitor_window} closed trades; log parameter adjustments.",
)


def _evaluate(name: str, context: dg.SensorEvaluationContext, memory_store: MemoryStoreResource) -> dg.SensorResult:
    cursor = int(context.cursor) if context.cursor else 0
    where = describe(memory_store.db_path())
    with memory_store.store() as store:
        step = scan_events(store, cursor)
    new_cursor = str(step.last_event_id)
    if step.outcomes == 0:
        reason = (
            f"no new outcomes in the memory store {where} after event {cursor}"
            if step.events == 0
            else f"{step.events} new events in the memory store {where} after event {cursor}, none an outcome"
        )
        return dg.SensorResult(skip_reason=reason, cursor=new_cursor)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"{name}-{new_cursor}",
                tags={
                    "mem/events_after": str(cursor),
                    "mem/events_through": new_cursor,
                    "mem/new_outcomes": str(step.outcomes),
                    "mem/memory_store": where,
                },
            )
        ],
        cursor=new_cursor,
    )


@dg.sensor(
    job=learned_strategies_job,
    minimum_interval_seconds=60,
    description="New closed trades in memory -> pattern discovery (create/update/deprecate learned strategies).",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def pattern_discovery_sensor(context: dg.SensorEvaluationContext, memory_store: MemoryStoreResource) -> dg.SensorResult:
    return _evaluate("pattern_discovery", context, memory_store)


@dg.sensor(
    job=parameter_memory_job,
    minimum_interval_seconds=60,
    description=f"New closed trades in memory -> performance monitor (win rate over the last {RULES.monitor_window} trades).",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def performance_monitor_sensor(
    context: dg.SensorEvaluationContext, memory_store: MemoryStoreResource
) -> dg.SensorResult:
    return _evaluate("performance_monitor", context, memory_store)
