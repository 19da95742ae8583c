"""The one-row predictor serving uses: the model's compiled path when it has one and it agrees
with ``predict_proba``, else the model's always-right ``predict_one``.

A model type offers a compiled path through ``ReversalModel.compile_one_row`` (``seed_gbc``
walks its trees in numpy instead of paying scikit-learn's per-call overhead). It is checked on
probe rows at load time and refused (the caller gets ``predict_one``) when any probability
differs from ``predict_proba`` by more than 1e-9.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from mem_core.model import OnePredictor, ReversalModel

log = logging.getLogger(__name__)


def one_row_predictor(
    model: ReversalModel, probe: np.ndarray, state: Mapping[str, np.ndarray] | None = None
) -> tuple[OnePredictor, bool]:
    """The fastest exact one-row predictor of ``model`` (P(reversal) of a feature row).

    Returns (predictor, compiled). ``probe`` rows (real feature rows when available) are used to
    verify a compiled predictor against ``predict_proba``. ``state``: the model's
    ``one_row_state`` kept from an earlier load, to compile from (verified all the same).
    """
    try:
        fast = model.compile_one_row() if state is None else model.compile_one_row_from(state)
    except Exception:  # unusual internals: the generic path is always right
        log.warning("cannot compile %s for one-row inference; using predict_proba", model.name, exc_info=True)
        return model.predict_one, False
    if fast is None:
        return model.predict_one, False
    expected = model.predict_proba(np.asarray(probe, dtype=np.float64))
    got = np.array([fast(row) for row in probe])
    if not np.allclose(got, expected, rtol=0, atol=1e-9):
        log.warning(
            "compiled predictor disagrees with predict_proba (max %.3g); using predict_proba",
            float(np.max(np.abs(got - expected))),
        )
        return model.predict_one, False
    return fast, True
