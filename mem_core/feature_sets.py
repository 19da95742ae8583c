"""Named feature sets: which columns a model reads and how training and serving compute them.

A model is trained on one set and records its name with every registered version (tag
``feature_set``); serving looks that name up here and computes exactly that set for the newest
candle. A name this code does not know fails loudly (``UnknownFeatureSet``) instead of feeding
the model other columns.

Today there is one set, ``seed``: the 12 features of ``mem_core.features``. Another set is one
more ``FeatureSet`` in ``FEATURE_SETS``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mem_core import features


class UnknownFeatureSet(KeyError):
    """A model names a feature set this code cannot compute; it is refused, never fed other columns."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else super().__str__()


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
    #: Serving: ``{name: value}`` of the newest candle from an (n, 5) array of open, high, low,
    #: close, volume, oldest first.
    newest: Callable[[np.ndarray], dict[str, float]]

    def matrix(self, rows: pd.DataFrame) -> np.ndarray:
        """The model's input matrix of ``rows`` (columns in ``names`` order)."""
        return rows.loc[:, list(self.names)].to_numpy(dtype="float64")


def _seed_newest(ohlcv: np.ndarray) -> dict[str, float]:
    """``features.latest_features`` of numpy OHLCV rows, without building a DataFrame."""
    cols = ohlcv[-features.SERVING_HISTORY :].T
    return features.latest_features_arrays(cols[0], cols[1], cols[2], cols[3], cols[4])


SEED = FeatureSet(
    name="seed",
    names=features.FEATURE_NAMES,
    min_history=features.MIN_HISTORY,
    history=features.SERVING_HISTORY,
    frame=features.compute_features,
    newest=_seed_newest,
)

FEATURE_SETS: dict[str, FeatureSet] = {SEED.name: SEED}


def get(name: str) -> FeatureSet:
    """The feature set called ``name``; ``UnknownFeatureSet`` when this code does not compute it."""
    try:
        return FEATURE_SETS[name]
    except KeyError:
        raise UnknownFeatureSet(f"unknown feature set {name!r}; this code computes {sorted(FEATURE_SETS)}") from None
