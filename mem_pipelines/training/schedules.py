"""The job a data scientist launches for any window, and the daily retrain at 02:00 UTC."""

import dagster as dg

#: Run tags that make one run cover every symbol partition (single-run backfill policy).
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
JOB_ASSETS = ("features", "labels", "training_dataset", "reversal_model", "champion_gate")


def all_symbols_tags(partitions_def: dg.PartitionsDefinition) -> dict[str, str]:
    keys = partitions_def.get_partition_keys()
    return {RANGE_START: keys[0], RANGE_END: keys[-1]}


def daily_run_config(last_days: int = 30) -> dict:
    return {"ops": {"training_dataset": {"config": {"last_days": last_days}}}}


def build_train_and_gate_job():
    return dg.define_asset_job(
        "train_and_gate",
        selection=dg.AssetSelection.assets(*JOB_ASSETS),
        description=(
            "Refresh features and labels of every symbol, build the dataset for a window "
            "(ops.training_dataset.config: last_days, or start/end), train and register a challenger, "
            "run the champion gate. Launch it over the whole symbol range (all partitions in one run)."
        ),
    )


def build_daily_schedule(job, partitions_def: dg.PartitionsDefinition) -> dg.ScheduleDefinition:
    tags = all_symbols_tags(partitions_def)

    @dg.schedule(
        job=job,
        cron_schedule="0 2 * * *",
        execution_timezone="UTC",
        name="daily_retrain",
        description="Daily at 02:00 UTC: retrain on the last 30 days of every symbol and run the gate.",
    )
    def daily_retrain(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        when = context.scheduled_execution_time
        return dg.RunRequest(run_key=when.isoformat() if when else None, run_config=daily_run_config(30), tags=tags)

    return daily_retrain
