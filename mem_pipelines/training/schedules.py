"""The job a data scientist launches for any window, and the daily retrain at 02:00 UTC."""

import dagster as dg

from mem_pipelines.training.assets import champion_gate, features, labels, reversal_model, training_dataset
from mem_pipelines.training.symbols import SYMBOL_PARTITIONS

#: Run tags that make one run cover every symbol partition (single-run backfill policy).
_RANGE_START = "dagster/asset_partition_range_start"
_RANGE_END = "dagster/asset_partition_range_end"


def all_symbols_tags() -> dict[str, str]:
    keys = SYMBOL_PARTITIONS.get_partition_keys()
    return {_RANGE_START: keys[0], _RANGE_END: keys[-1]}


train_and_gate_job = dg.define_asset_job(
    "train_and_gate",
    selection=dg.AssetSelection.assets(features, labels, training_dataset, reversal_model, champion_gate),
    description=(
        "Refresh features and labels, build the dataset for a window (ops.training_dataset.config: "
        "last_days or start/end), train, register a challenger and run the champion gate. "
        "Launch over the whole symbol range (a partition range) so every symbol is refreshed."
    ),
)


def daily_run_config(last_days: int = 30) -> dict:
    return {"ops": {"training_dataset": {"config": {"last_days": last_days}}}}


@dg.schedule(
    job=train_and_gate_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    name="daily_retrain",
    description="Daily at 02:00 UTC: retrain on the last 30 days and run the gate.",
)
def daily_retrain(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else None,
        run_config=daily_run_config(30),
        tags=all_symbols_tags(),
    )
