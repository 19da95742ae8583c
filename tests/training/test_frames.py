"""The training frames' IO manager: every symbol's frame of a non-partitioned training asset, and
an input of exactly the symbols of its latest materialization."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from mem_pipelines.resources import FRAMES_MANIFEST, TrainingFramesIOManager

KEY = dg.AssetKey("features")


def _frame(value: float) -> pd.DataFrame:
    return pd.DataFrame({"ts": pd.date_range("2026-01-01", periods=3, freq="5min", tz="UTC"), "x": value})


def test_an_input_is_the_symbols_of_the_latest_materialization_only(tmp_path: Path) -> None:
    frames = TrainingFramesIOManager(base_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="features is not materialized"):
        frames.load_input(dg.build_input_context(asset_key=KEY))

    frames.handle_output(dg.build_output_context(asset_key=KEY), {"BTCUSDT": _frame(1.0), "XRPUSDT": _frame(2.0)})
    # the symbol set changed (MEM_SYMBOLS): XRPUSDT's frame is not read again, and is gone
    frames.handle_output(dg.build_output_context(asset_key=KEY), {"ETHUSDT": _frame(3.0), "BTCUSDT": _frame(4.0)})
    loaded = frames.load_input(dg.build_input_context(asset_key=KEY))
    assert list(loaded) == ["ETHUSDT", "BTCUSDT"]
    pd.testing.assert_frame_equal(loaded["BTCUSDT"], _frame(4.0))
    assert sorted(p.name for p in (tmp_path / "features").iterdir()) == [
        "BTCUSDT.parquet",
        "ETHUSDT.parquet",
        FRAMES_MANIFEST,
    ]
