"""The sample of real candles shipped in data/sample: small, real, gap-free, documented, and the
one default symbol set (the main job ingests it when given no --csv)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mem_core.settings import DEFAULT_SYMBOLS
from mem_pipelines.ingest.csv_source import read_kline_csv
from mem_pipelines.ingest.sample import SAMPLE_DIR, sample_files, sample_symbols
from mem_pipelines.ingest.validation import IngestError
from mem_pipelines.settings import PipelineSettings


def test_the_sample_is_small_and_its_symbols_are_the_default_set() -> None:
    files = sample_files()
    assert sum(f.stat().st_size for f in files) <= 2 * 1024 * 1024
    assert sample_symbols() == DEFAULT_SYMBOLS == PipelineSettings.from_env({}).symbols


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name)
def test_each_file_holds_about_175_days_of_gap_free_5_minute_candles(path: Path) -> None:
    f = read_kline_csv(path)  # the ingest's own parser and validation
    ts = f.frame["ts"]
    assert f.interval == "5m" and f.symbol in DEFAULT_SYMBOLS
    assert pd.Timedelta(days=174) <= ts.iloc[-1] - ts.iloc[0] <= pd.Timedelta(days=175)
    assert (ts.diff().dropna() == pd.Timedelta(minutes=5)).all()
    assert (f.frame["volume"] > 0).all() and (f.frame["high"] >= f.frame["low"]).all()


def test_the_readme_names_the_source_and_the_terms() -> None:
    text = (SAMPLE_DIR / "README.md").read_text()
    for needle in ("data.binance.vision", "Binance", "Terms", "2025-08-29"):
        assert needle in text, needle


def test_a_symbol_the_sample_lacks_is_one_clear_error() -> None:
    assert [p.name for p in sample_files(["ethusdt"])] == ["ETHUSDT-5m.csv.gz"]
    with pytest.raises(IngestError, match=r"no candles of DOGEUSDT .*--csv FILE .*--synthetic"):
        sample_files(["BTCUSDT", "DOGEUSDT"])


def test_an_empty_folder_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="no sample candles"):
        sample_files(folder=tmp_path)
