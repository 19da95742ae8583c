"""Where a run's outputs live: ``<base>/<run id>/<asset key>[/<partition>]``, one folder per run,
so two runs at once (a launch from the UI while the daily retrain runs) never read or overwrite
each other's dataset or model.

An input is read from the run that wrote it: this run's step, or the parent's when a re-execution
skips that step (Dagster says which, ``upstream_output.run_id``); an asset this run did not
materialize is read from the run of its latest materialization. Run folders older than
``KEEP_DAYS`` are removed when a run writes its first output.
"""

from __future__ import annotations

import pickle
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg

#: Run folders are kept this long (re-executing a run from failure needs its parent's outputs).
KEEP_DAYS = 7.0
#: The folder of outputs written outside a run (``dg.build_output_context`` in a test).
NO_RUN = "no-run"


def output_run_id(context: dg.OutputContext) -> str:
    try:
        return context.run_id or NO_RUN
    except dg.DagsterInvariantViolationError:
        return NO_RUN


def _upstream_run_id(context: dg.InputContext) -> str | None:
    upstream = context.upstream_output
    if upstream is None:
        return None
    try:
        return upstream.run_id
    except dg.DagsterInvariantViolationError:
        return None


def _latest_run_id(context: dg.InputContext) -> str | None:
    """The run of the asset's latest materialization (of the input's partition, if any)."""
    try:
        instance = context.instance
    except dg.DagsterInvariantViolationError:
        return None
    partitions = [context.asset_partition_key] if context.has_asset_partitions else None
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=partitions), limit=1
    ).records
    return records[0].run_id if records else None


def input_run_ids(context: dg.InputContext) -> Iterator[str]:
    """The runs an input may come from, best first: the step that made it in this run or its
    parent, then the asset's latest materialization, then outputs written outside a run."""
    upstream = _upstream_run_id(context)
    if upstream:
        yield upstream
    latest = _latest_run_id(context)  # asked only when the upstream run has no output here
    if latest:
        yield latest
    yield NO_RUN


def asset_parts(context: dg.InputContext | dg.OutputContext) -> list[str]:
    parts = list(context.asset_key.path)
    if context.has_asset_partitions:
        parts.append(context.asset_partition_key)
    return parts


def prune(base: Path, keep_days: float = KEEP_DAYS, now: float | None = None) -> list[Path]:
    """Remove run folders under ``base`` not written to for ``keep_days``; the folders removed."""
    cutoff = (now if now is not None else time.time()) - keep_days * 86_400
    gone = []
    for folder in base.iterdir() if base.is_dir() else ():
        if folder.is_dir() and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            gone.append(folder)
    return gone


class RunOutputsIOManager(dg.ConfigurableIOManager):
    """Every other output (the dataset, the model's summary, a partition's candles) as a pickle
    under its run's folder: ``<base_dir>/<run id>/<asset>[/<partition>].pkl``."""

    #: Empty: ``runs/`` in the Dagster instance's storage (``.mem/dagster/storage`` by dagster.yaml).
    base_dir: str = ""

    def base(self, context: dg.InputContext | dg.OutputContext) -> Path:
        if self.base_dir:
            return Path(self.base_dir)
        try:
            instance = context.instance if isinstance(context, dg.InputContext) else context.step_context.instance
        except dg.DagsterInvariantViolationError:  # a context built outside a run
            from mem_core.settings import project_paths

            return project_paths().state / "runs"
        return Path(instance.storage_directory()) / "runs"

    def _path(self, context: dg.InputContext | dg.OutputContext, run_id: str, parts: list[str]) -> Path:
        return self.base(context).joinpath(run_id, *parts).with_suffix(".pkl")

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:  # an asset that returns nothing (MaterializeResult) stores nothing
            return
        path = self._path(context, output_run_id(context), asset_parts(context))
        if not path.parent.exists():
            prune(self.base(context))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as f:
            pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)

    def load_input(self, context: dg.InputContext) -> Any:
        parts = asset_parts(context)
        for run_id in input_run_ids(context):
            path = self._path(context, run_id, parts)
            if path.is_file():
                with path.open("rb") as f:
                    return pickle.load(f)
        raise FileNotFoundError(
            f"{'/'.join(parts)} has no stored output under {self.base(context)} (not materialized, or its run's "
            f"folder is older than {KEEP_DAYS:g} days and was removed): materialize it again"
        )
