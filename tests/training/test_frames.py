"""The training frames' IO manager: every symbol's frame of a non-partitioned training asset, and
an input of exactly the symbols of its latest materialization."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from mem_pipelines.resources import FRAMES_MANIFEST, TrainingFramesIOManager
from mem_pipelines.run_outputs import RunOutputsIOManager, prune

KEY = dg.AssetKey("features")


def _frame(value: float) -> pd.DataFrame:
    return pd.DataFrame({"ts": pd.date_range("2026-01-01", periods=3, freq="5min", tz="UTC"), "x": value})


def test_an_input_is_the_symbols_of_the_latest_materialization_only(tmp_path: Path) -> None:
    frames = TrainingFramesIOManager(base_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="features is not materialized"):
        frames.load_input(dg.build_input_context(asset_key=KEY))

    out = dg.build_output_context(asset_key=KEY, run_id="r1")
    frames.handle_output(out, {"BTCUSDT": _frame(1.0), "XRPUSDT": _frame(2.0)})
    # the symbol set changed (MEM_SYMBOLS): XRPUSDT's frame is not read again, and is gone
    frames.handle_output(out, {"ETHUSDT": _frame(3.0), "BTCUSDT": _frame(4.0)})
    loaded = frames.load_input(dg.build_input_context(asset_key=KEY, upstream_output=out))
    assert list(loaded) == ["ETHUSDT", "BTCUSDT"]
    pd.testing.assert_frame_equal(loaded["BTCUSDT"], _frame(4.0))
    assert sorted(p.name for p in (tmp_path / "r1" / "frames" / "features").iterdir()) == [
        "BTCUSDT.parquet",
        "ETHUSDT.parquet",
        FRAMES_MANIFEST,
    ]


def test_each_run_reads_and_writes_its_own_folder(tmp_path: Path) -> None:
    """Two runs at once never share a file; an input comes from the run that made it (this run,
    or a re-executed run's parent), else from the asset's latest materialization."""
    frames = TrainingFramesIOManager(base_dir=str(tmp_path))
    frames.handle_output(dg.build_output_context(asset_key=KEY, run_id="run-a"), {"BTCUSDT": _frame(1.0)})
    frames.handle_output(dg.build_output_context(asset_key=KEY, run_id="run-b"), {"BTCUSDT": _frame(2.0)})
    for run_id, value in (("run-a", 1.0), ("run-b", 2.0)):
        upstream = dg.build_output_context(asset_key=KEY, run_id=run_id)
        loaded = frames.load_input(dg.build_input_context(asset_key=KEY, upstream_output=upstream))
        pd.testing.assert_frame_equal(loaded["BTCUSDT"], _frame(value))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-a", "run-b"]

    outputs = RunOutputsIOManager(base_dir=str(tmp_path / "outputs"))
    key = dg.AssetKey("training_dataset")
    for run_id, value in (("run-a", 1.0), ("run-b", 2.0)):
        outputs.handle_output(dg.build_output_context(asset_key=key, run_id=run_id), _frame(value))
    upstream = dg.build_output_context(asset_key=key, run_id="run-a")
    loaded = outputs.load_input(dg.build_input_context(asset_key=key, upstream_output=upstream))
    pd.testing.assert_frame_equal(loaded, _frame(1.0))
    # an asset this run did not make: the run of its latest materialization (here a reported one,
    # which stored nothing). The instance is not entered (``with``): entering it sets Dagster's
    # current state storage, which a later test's Definitions would then find closed.
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(dg.AssetMaterialization(key))
    with pytest.raises(FileNotFoundError, match="training_dataset has no stored output"):
        outputs.load_input(dg.build_input_context(asset_key=key, instance=instance))


def test_old_run_folders_are_pruned(tmp_path: Path) -> None:
    import os
    import time

    old, new = tmp_path / "old-run", tmp_path / "new-run"
    old.mkdir()
    new.mkdir()
    week = 8 * 86_400
    os.utime(old, (time.time() - week, time.time() - week))
    assert prune(tmp_path) == [old] and new.is_dir() and not old.exists()
