"""Serving's QuestDB candle source: one kept-open connection, blocks equal to the plain read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mem_core.questdb import store
from mem_core.questdb.store import CandleStoreError, write_candles
from mem_serving.handlers import questdb_source
from mem_serving.types import OHLCV

SYMBOL = "READERSRC"


def test_source_blocks_equal_read_latest_on_one_connection(
    questdb, serve_candles: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_candles(questdb, serve_candles.iloc[:500].assign(symbol=SYMBOL))
    connects = 0
    real = store._connect

    def counting(settings):
        nonlocal connects
        connects += 1
        return real(settings)

    source = questdb_source(questdb)
    monkeypatch.setattr(store, "_connect", counting)
    try:
        for n in (1, 50, 400, 450, 1000):
            block = source(SYMBOL, n)
            want = store.read_latest(questdb, SYMBOL, n)  # a connection of its own each
            assert len(block) == len(want) == min(n, 500)
            assert block.ts_ms.dtype == np.int64 and block.ts_ms.flags.c_contiguous
            assert block.ohlcv.dtype == np.float64 and block.ohlcv.flags.c_contiguous
            np.testing.assert_array_equal(
                block.ts_ms, want["ts"].astype("datetime64[ms, UTC]").astype("int64").to_numpy()
            )
            np.testing.assert_array_equal(block.ohlcv, want[list(OHLCV)].to_numpy())
        assert len(source("NOSUCHSYMBOL", 400)) == 0
        assert connects == 1 + 5  # the source's one, plus one per plain read_latest
        assert len(source.reader._idle) == 1
    finally:
        source.close()
    assert source.reader.closed
    with pytest.raises(CandleStoreError, match="closed"):
        source(SYMBOL, 10)
