"""The synthetic generator: seeded, consistent OHLC, on the grid, regimes and volume that behave."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mem_pipelines.ingest.synthetic import REGIMES, synthetic_candles
from mem_pipelines.ingest.validation import validate_candles

END = "2026-03-01T12:07:00Z"


def test_seeded_and_pure():
    a = synthetic_candles(["BTCUSDT", "ETHUSDT"], 2, 7, END)
    b = synthetic_candles(["BTCUSDT", "ETHUSDT"], 2, 7, END)
    pd.testing.assert_frame_equal(a, b)
    c = synthetic_candles(["BTCUSDT"], 2, 8, END)
    assert not np.allclose(a[a.symbol == "BTCUSDT"].close.to_numpy(), c.close.to_numpy())
    # A symbol's series does not depend on which other symbols are generated with it.
    alone = synthetic_candles(["ETHUSDT"], 2, 7, END)
    pd.testing.assert_frame_equal(alone, a[a.symbol == "ETHUSDT"].reset_index(drop=True))


def test_grid_consistency_and_end():
    df = synthetic_candles(["BTCUSDT", "NEWCOIN"], 30, 7, END)
    for sym, g in df.groupby("symbol"):
        g = g.reset_index(drop=True)
        validate_candles(g, sym)  # OHLC consistent, volume >= 0, 5m grid, no gaps
        assert len(g) == 30 * 288
        assert g["ts"].iloc[-1] == pd.Timestamp("2026-03-01T12:00:00Z")  # closed by END
        assert (g["ts"].diff().dropna() == pd.Timedelta(minutes=5)).all()


def test_regimes_switch_and_volume_follows_moves():
    df = synthetic_candles(["BTCUSDT"], 60, 3, END, with_regime=True)
    counts = df["regime"].value_counts()
    assert set(counts.index) == set(REGIMES)
    switches = (df["regime"] != df["regime"].shift()).sum()
    assert 50 < switches < 1000  # sticky segments of hours, not flickering
    ret = np.log(df["close"]).diff().abs()
    by_regime = ret.groupby(df["regime"]).std()
    assert by_regime["volatile"] > 2 * by_regime["choppy"]
    assert np.corrcoef(ret[1:], df["volume"][1:])[0, 1] > 0.2
    hourly = df.groupby(df["ts"].dt.hour)["volume"].mean()
    assert hourly.loc[14:16].mean() > 1.3 * hourly.loc[3:6].mean()  # US open busier than late Asia
