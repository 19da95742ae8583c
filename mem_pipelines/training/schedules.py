"""The job a data scientist launches for any window, and the daily retrain at 02:00 UTC."""

import dagster as dg

from mem_pipelines.training import defaults

#: The tag every training run carries; the instance's run queue (dagster.yaml) lets one run with
#: it start at a time (the fit and the walk-forward take the cores).
TRAINING_TAG = ("mem/pool", "training")

JOB_ASSETS = ("training_candles", "features", "labels", "training_dataset", "reversal_model", "champion_gate")


def daily_run_config(last_days: int = defaults.TRAIN_DAYS) -> dict:
    return {"ops": {"training_dataset": {"config": {"last_days": last_days}}}}


def build_train_and_gate_job():
    return dg.define_asset_job(
        "train_and_gate",
        selection=dg.AssetSelection.assets(*JOB_ASSETS),
        # job tags, so on every run of the job: a Launchpad/GraphQL launch merges the job's tags (not
        # its run_tags), the schedule, mem main and re-executions its run tags (= these tags)
        tags=dict([TRAINING_TAG]),
        # its steps run one after the other anyway: one process, not one per step
        executor_def=dg.in_process_executor,
        description=(
            "Read and check (blocking) the candles of every symbol, refresh features and labels, build the "
            f"dataset for a window (ops.training_dataset.config: last_days, or start/end; default the last "
            f"{defaults.TRAIN_DAYS} days; symbols: a subset), train and register a challenger with its "
            f"walk-forward (ops.reversal_model.config: estimator {defaults.ESTIMATOR!r}, feature_set "
            f"{defaults.FEATURE_SET!r} by default), run the champion gate (ops.champion_gate.config: metric, "
            "min_margin, alpha). One plain launch covers every symbol (no partition to pick); symbols "
            "without candles are skipped with a warning."
        ),
    )


def build_daily_schedule(job) -> dg.ScheduleDefinition:
    @dg.schedule(
        job=job,
        cron_schedule="0 2 * * *",
        execution_timezone="UTC",
        name="daily_retrain",
        # on as soon as the daemon runs (`dagster dev`, scripts/ui.sh dagster): the README promises a daily retrain
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Daily at 02:00 UTC: retrain on the last {defaults.TRAIN_DAYS} days of every symbol that has "
            "candles (walk-forward included) and run the gate."
        ),
    )
    def daily_retrain(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        when = context.scheduled_execution_time
        return dg.RunRequest(run_key=when.isoformat() if when else None, run_config=daily_run_config())

    return daily_retrain
