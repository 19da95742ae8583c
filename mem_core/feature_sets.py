"""Named feature sets: which columns a model reads and how training and serving compute them.

A model is trained on one set and records its name with every registered version (tag
``feature_set``); serving looks that name up here and computes exactly that set for the newest
candle. A name this code does not know fails loudly (``UnknownFeatureSet``) instead of feeding
the model other columns. A set is a contract: its name is never reused for other columns or
other definitions (a changed set is a new name, e.g. ``regime_v2``).

==============  ====================================================  =======  ==========
name            features (in model column order)                      columns  history
==============  ====================================================  =======  ==========
``seed``        the 12 of ``mem_core.features`` (``FEATURE_NAMES``)        12  50 / 400
``regime_v1``   the seed's 12, then the 10 volatility-regime and          22  289 / 400
                time-of-day features of ``mem_core.regime_features``
                (``REGIME_NAMES``: rv_ratio_12, rv_ratio_288,
                hl_ratio_12, log_sigma, z_ret20, z_ret3, er20,
                vlm_ratio_288, tod_sin, tod_cos)
==============  ====================================================  =======  ==========

History is ``min_history / history``: the fewest candles for which the newest row is defined,
and the candles the newest-row path reads (for ``regime_v1``: 400 for the seed's exponential
averages to agree with the batch to 1e-6, 289 for the regime features, which are plain rolling
windows and exact from 289). A training row is kept only when it has ``history`` candles before
it (``compute_features`` drops the first ``SERVING_HISTORY - 1``) and every feature is finite.
The newest row of ``regime_v1`` also needs the candle's open time (UTC) for the time of day.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import get_num_threads, njit, prange

from mem_core import compiled, features, regime_features


class UnknownFeatureSet(KeyError):
    """A model names a feature set this code cannot compute; it is refused, never fed other columns."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else super().__str__()


#: Serving's newest-row function: (n, 5) OHLCV rows (open, high, low, close, volume, oldest
#: first) and the newest candle's open time in epoch milliseconds (UTC) -> ``{name: value}``.
NewestFn = Callable[[np.ndarray, int], dict[str, float]]
#: ``newest_ring(ring, slots, ends, lengths, newest_open_ms)`` (int64 arrays): the newest row of
#: many symbols read where their candles are held: ``ring`` is ``(symbols, capacity, 5)`` OHLCV rings, and
#: item k's candles are the ``lengths[k]`` rows (at least ``min_history``) that end before ring
#: position ``ends[k]`` (wrapping) of row ``slots[k]``. One ``(k, len(names))`` matrix in one
#: compiled pass, unchecked (a row may hold non-finite values: ``features.finite_values``).
NewestRingFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None], np.ndarray]


@dataclass(frozen=True)
class FeatureSet:
    """The columns one kind of model reads, in order, and the two ways of computing them."""

    name: str
    #: Column names, in the order of the model's input matrix.
    names: tuple[str, ...]
    #: Fewest candles for which the newest row is defined.
    min_history: int
    #: Candles the newest-row path looks at (more are cut off).
    history: int
    #: Training: ``ts`` + ``names`` per candle of one symbol (warm-up rows dropped).
    frame: Callable[[pd.DataFrame], pd.DataFrame]
    #: Serving: the newest candle's ``{name: value}`` (see ``NewestFn``); raises
    #: ``features.InsufficientHistory`` below ``min_history`` candles or when a value is not finite.
    newest: NewestFn
    #: Serving, many symbols at once (the candle close): see ``NewestRingFn``.
    newest_ring: NewestRingFn

    def matrix(self, rows: pd.DataFrame) -> np.ndarray:
        """The model's input matrix of ``rows`` (columns in ``names`` order)."""
        return rows.loc[:, list(self.names)].to_numpy(dtype="float64")


def _seed_newest(ohlcv: np.ndarray, newest_open_ms: int) -> dict[str, float]:
    """``features.latest_features`` of numpy OHLCV rows, without building a DataFrame (the seed
    features do not depend on the time)."""
    _need(ohlcv, features.MIN_HISTORY)
    return features.finite_values(features.FEATURE_NAMES, features.newest_row(ohlcv[-features.SERVING_HISTORY :]))


def _need(ohlcv: np.ndarray, rows: int) -> None:
    if ohlcv.shape[0] < rows:
        raise features.InsufficientHistory(f"need at least {rows} candles, got {ohlcv.shape[0]}")


_VIEW, _SEED_COLS, _REGIME_ROWS = features.SERVING_HISTORY, len(features.FEATURE_NAMES), regime_features.REGIME_HISTORY
_seed_kernel, _regime_kernel = features._last_row_kernel, regime_features._newest_kernel


@njit(cache=True, error_model="numpy")
def _ring_rows(
    ring: np.ndarray,
    slots: np.ndarray,
    ends: np.ndarray,
    lengths: np.ndarray,
    minutes: np.ndarray,
    out: np.ndarray,
    first: int,
    stop: int,
) -> None:
    """Items ``first`` to ``stop``: each one's newest rows (at most ``SERVING_HISTORY``) gathered
    from the ring into one scratch block, then the seed kernel on them and, with ``minutes`` (the
    regime set), the regime kernel on their newest ``REGIME_HISTORY``: the newest-row kernels on
    the same rows as ``newest``, so the values are the same to the bit."""
    cap = ring.shape[1]
    scratch = np.empty((_VIEW, 5))
    for k in range(first, stop):
        m = min(lengths[k], _VIEW)
        s, start = slots[k], ends[k] - m
        for i in range(m):
            j = (start + i) % cap
            for c in range(5):
                scratch[i, c] = ring[s, j, c]
        _seed_kernel(scratch[:m], out[k, :_SEED_COLS])
        if minutes.shape[0]:
            _regime_kernel(scratch[m - _REGIME_ROWS : m], minutes[k], out[k, _SEED_COLS:])


@njit(cache=True, error_model="numpy", parallel=True)
def _ring_parallel(
    ring: np.ndarray,
    slots: np.ndarray,
    ends: np.ndarray,
    lengths: np.ndarray,
    minutes: np.ndarray,
    out: np.ndarray,
    parts: int,
) -> None:
    """``_ring_rows`` of all items in ``parts`` contiguous shares, one per thread of numba's pool."""
    n = slots.shape[0]
    step = (n + parts - 1) // parts
    for t in prange(parts):
        _ring_rows(ring, slots, ends, lengths, minutes, out, t * step, min(n, (t + 1) * step))


def _newest_ring(
    ring: np.ndarray, slots: np.ndarray, ends: np.ndarray, lengths: np.ndarray, newest_open_ms: np.ndarray | None
) -> np.ndarray:
    """``newest_ring`` of the seed set (``newest_open_ms`` None) or of ``regime_v1``."""
    names = features.FEATURE_NAMES if newest_open_ms is None else _REGIME_V1_NAMES
    minutes = _NO_MINUTES if newest_open_ms is None else (newest_open_ms // 60_000) % 1440
    n = len(slots)
    out = np.empty((n, len(names)))
    if n < compiled.PARALLEL_MIN_ROWS:
        _ring_rows(ring, slots, ends, lengths, minutes, out, 0, n)
    else:
        with compiled.LAUNCH:
            _ring_parallel(ring, slots, ends, lengths, minutes, out, get_num_threads())
    return out


_NO_MINUTES = np.empty(0, np.int64)


SEED = FeatureSet(
    name="seed",
    names=features.FEATURE_NAMES,
    min_history=features.MIN_HISTORY,
    history=features.SERVING_HISTORY,
    frame=features.compute_features,
    newest=_seed_newest,
    newest_ring=lambda ring, slots, ends, lengths, newest_open_ms: _newest_ring(ring, slots, ends, lengths, None),
)


def _regime_v1_frame(candles: pd.DataFrame) -> pd.DataFrame:
    """The seed frame (warm-up dropped) joined on ``ts`` with the regime features; rows with a
    non-finite regime value (e.g. ``log_sigma`` of 100 unchanged closes) are dropped."""
    seed = features.compute_features(candles)
    regime = regime_features.regime_features(candles)
    frame = seed.merge(regime, on="ts", how="inner")
    finite = np.isfinite(frame.loc[:, list(regime_features.REGIME_NAMES)].to_numpy(dtype="float64")).all(axis=1)
    return frame.loc[finite].reset_index(drop=True)


def _regime_v1_newest(ohlcv: np.ndarray, newest_open_ms: int) -> dict[str, float]:
    """The seed's 12 from the newest ``SERVING_HISTORY`` rows, the regime 10 from the newest
    ``REGIME_HISTORY`` rows and the candle's open time."""
    _need(ohlcv, regime_features.REGIME_HISTORY)
    seed = features.newest_row(ohlcv[-features.SERVING_HISTORY :])
    regime = regime_features.newest_row(ohlcv, newest_open_ms)
    return features.finite_values(_REGIME_V1_NAMES, np.concatenate((seed, regime)))


_REGIME_V1_NAMES = features.FEATURE_NAMES + regime_features.REGIME_NAMES

REGIME_V1 = FeatureSet(
    name="regime_v1",
    names=_REGIME_V1_NAMES,
    min_history=regime_features.REGIME_HISTORY,
    history=max(features.SERVING_HISTORY, regime_features.REGIME_HISTORY),
    frame=_regime_v1_frame,
    newest=_regime_v1_newest,
    newest_ring=_newest_ring,
)

FEATURE_SETS: dict[str, FeatureSet] = {s.name: s for s in (SEED, REGIME_V1)}


def get(name: str) -> FeatureSet:
    """The feature set called ``name``; ``UnknownFeatureSet`` when this code does not compute it."""
    try:
        return FEATURE_SETS[name]
    except KeyError:
        raise UnknownFeatureSet(f"unknown feature set {name!r}; this code computes {sorted(FEATURE_SETS)}") from None


def warm_up() -> None:
    """Compile (or load from numba's cache) every set's newest-row kernels before the first
    request: the seed's and the regime's, on synthetic candles. Only these: serving computes
    nothing else (the pandas-ta frame path is training's; ``features.warm_up`` warms it)."""
    n = max(features.SERVING_HISTORY, regime_features.REGIME_HISTORY)
    close = 100.0 * np.exp(np.cumsum(np.random.default_rng(0).normal(0.0, 0.001, n)))
    rows = np.column_stack((close, close * 1.001, close * 0.999, close, np.full(n, 10.0)))
    features.newest_row(rows[-features.SERVING_HISTORY :])
    regime_features.newest_row(rows, 0)
    many = compiled.PARALLEL_MIN_ROWS  # the parallel kernel too
    for k in (1, many):
        ring, slots, full = np.repeat(rows[None], k, axis=0), np.arange(k), np.full(k, n)
        for fs in FEATURE_SETS.values():
            fs.newest_ring(ring, slots, full, full, np.zeros(k, np.int64))
