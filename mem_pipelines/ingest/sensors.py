"""The landing sensor: new kline files in the landing folder -> one ``landing_job`` run per symbol.

A tick lists the folder, compares it with the cursor (``landing.plan``: name -> size and
modification time of every file already handed to a run) and returns, in one ``SensorResult``
that Dagster stores atomically with the tick, a run request per symbol with new files and the new
cursor. A file is therefore requested once; a rewritten one (new size or mtime) again. Files
whose name says no known symbol go to quarantine at once. The run key is a digest of the files'
names, sizes and times, so a sensor restarted from an older cursor cannot launch the same run
twice.

A run that fails on QuestDB (down) leaves its files in the folder but past the cursor: re-execute
the run from the UI, or touch the files to have them picked up again.
"""

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import dagster as dg

from mem_pipelines.ingest.landing import (
    decode_cursor,
    encode_cursor,
    plan,
    quarantine,
    scan,
)
from mem_pipelines.ingest.landing_assets import ASSET, LandingResource

#: What ``dg.define_asset_job`` returns (its class is not part of Dagster's public API).
AssetJob = Any

LANDING_JOB = "landing_job"


def build_landing_job(
    kline_files: dg.AssetsDefinition, candles: dg.AssetsDefinition, partitions_def: dg.PartitionsDefinition
) -> AssetJob:
    return dg.define_asset_job(
        LANDING_JOB,
        selection=dg.AssetSelection.assets(kline_files, candles),
        partitions_def=partitions_def,
        description="Ingest one symbol's new landing files into QuestDB, then materialise its candles partition and checks.",
    )


def build_landing_sensor(job: AssetJob, symbols: Sequence[str]) -> dg.SensorDefinition:
    @dg.sensor(
        name="landing_sensor",
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="New or rewritten kline files in the landing folder (MEM_LANDING_DIR) -> one ingest run per symbol.",
    )
    def landing_sensor(context: dg.SensorEvaluationContext, landing: LandingResource) -> dg.SensorResult:
        folder = landing.path()
        if not folder.is_dir():
            return dg.SensorResult(
                skip_reason=f"the landing folder {folder} does not exist (MEM_LANDING_DIR)", cursor=context.cursor
            )
        step = plan(scan(folder), decode_cursor(context.cursor), time.time_ns(), landing.settle_s, symbols)
        for f, reason in step.refused:
            quarantine(folder, landing.quarantine(), f.name, reason)
            context.log.warning(f"quarantined {f.name}: {reason}")
        runs = []
        for symbol, files in sorted(step.batches.items()):
            names = [f.name for f in files]
            digest = hashlib.sha256(repr([(f.name, f.size, f.mtime_ns) for f in files]).encode()).hexdigest()[:16]
            runs.append(
                dg.RunRequest(
                    run_key=f"landing-{symbol}-{digest}",
                    partition_key=symbol,
                    run_config={"ops": {ASSET: {"config": {"files": names}}}},
                    tags={"mem/landing_files": str(len(names))},
                )
            )
        cursor = encode_cursor(step.cursor)
        if runs:
            return dg.SensorResult(run_requests=runs, cursor=cursor)
        waiting = f"; {len(step.waiting)} file(s) still changing" if step.waiting else ""
        return dg.SensorResult(skip_reason=f"no new kline files in {folder}{waiting}", cursor=cursor)

    return landing_sensor
