"""Generated requests across every RPC against the real server (the short CI run of
``bench/bench_fuzz.py``, same generator, fixed seed): no INTERNAL, undecodable bytes included,
health SERVING throughout, and the store holds exactly what the successful calls recorded."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mem_core.features import SERVING_HISTORY
from mem_testing.fuzz import METHODS, Generator, run, seed_histories

from .stack import Stack

SYMBOLS = ("FZA", "FZB", "FZC")


def candle_rows(frame: pd.DataFrame) -> np.ndarray:
    ts = frame["ts"].dt.as_unit("ms").astype("int64").to_numpy()  # whatever the stored resolution
    return np.column_stack([ts, frame[["open", "high", "low", "close", "volume"]].to_numpy()])


def test_1500_generated_requests_across_every_rpc(stack: Stack, serve_candles: pd.DataFrame) -> None:
    rows = candle_rows(serve_candles)
    seed_histories(stack.channel, rows, SYMBOLS, SERVING_HISTORY)
    report = run(stack.channel, Generator(20261124, rows, SYMBOLS, SERVING_HISTORY), 1500)
    assert report.unexpected == [], report.unexpected[:5]
    assert report.health_not_serving == 0 and report.health_checks == 16
    assert report.undecodable > 0 and report.internal_undecodable == 0 == report.internal_decodable
    # the generator reaches the deep paths: decisions recorded, outcomes learned, replays answered
    assert len(report.decisions) > 50 and len(report.closed) > 20
    assert stack.handlers.metrics.replays.labels("EnhanceSignal")._value.get() > 0
    # nothing from a refused call is stored: exactly the acknowledged decisions and outcomes
    assert stack.store.counts() == report.expected_counts()
    # every RPC was exercised, PushCandles and GetModelInfo included
    assert {key.split()[0] for key in report.by_status} == set(METHODS)
    assert set(stack.store.decision_event_ids(sorted(report.decisions))) == report.decisions
