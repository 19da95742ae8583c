"""The champion as serving holds it (``ServingModel``) and its one-row predictor: the model type's
compiled path (``ReversalModel.compile_one_row``) when it agrees with ``predict_proba`` within
1e-9 on the same 256 probe rows every time (``probe_rows``), else the model's ``predict_one``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mem_core.feature_sets import FeatureSet
from mem_core.model import OnePredictor, ReversalModel, probe_rows

if TYPE_CHECKING:
    from mem_core.registry import LoadedModel

log = logging.getLogger(__name__)


def _agrees(fast: OnePredictor, probe: np.ndarray, expected: np.ndarray) -> bool:
    got = np.array([fast(row) for row in probe])
    if np.allclose(got, expected, rtol=0, atol=1e-9):
        return True
    log.warning("compiled predictor disagrees with predict_proba (max %.3g)", float(np.max(np.abs(got - expected))))
    return False


def one_row_predictor(
    model: ReversalModel, probe: np.ndarray, state: Mapping[str, np.ndarray] | None = None
) -> tuple[OnePredictor, bool]:
    """(the fastest exact one-row predictor of ``model``, whether it is compiled). ``state``: the
    model's ``one_row_state`` kept from an earlier load, to compile from (verified all the same)."""
    try:
        fast = model.compile_one_row() if state is None else model.compile_one_row_from(state)
    except Exception:  # unusual internals: the generic path is always right
        log.warning("cannot compile %s for one-row inference; using predict_proba", model.name, exc_info=True)
        return model.predict_one, False
    if fast is None or not _agrees(fast, probe, model.predict_proba(np.asarray(probe, dtype=np.float64))):
        return model.predict_one, False
    return fast, True


@dataclass(frozen=True)
class RunRecord:
    """The parts of an MLflow run GetModelInfo reads."""

    params: Mapping[str, str]
    tags: Mapping[str, str]
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class ServingModel:
    """A loaded champion prepared for one-row predictions: the feature set serving computes for
    it, its training ranges and its fastest exact one-row predictor. ``loaded`` (the estimator) is
    None when the compiled path was rebuilt without it (``from_state``)."""

    version: str
    estimator: str
    feature_set: FeatureSet
    feature_ranges: dict[str, tuple[float, float]]
    predict_one: OnePredictor
    compiled: bool
    loaded: LoadedModel | None = None
    #: The training run as read when the version was loaded (None: GetModelInfo reads it).
    run: RunRecord | None = None
    #: The MLflow run that trained this version ("" when the loader does not say).
    run_id: str = ""

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.feature_set.names

    @classmethod
    def prepare(
        cls, loaded: LoadedModel, one_row_state: Mapping[str, np.ndarray] | None = None, run: RunRecord | None = None
    ) -> ServingModel:
        ranges = dict(loaded.feature_ranges)
        probe = probe_rows(loaded.feature_names, ranges)
        predict_one, compiled = one_row_predictor(loaded.model, probe, one_row_state)
        fs, run_id = loaded.feature_set, loaded.run_id or ""
        return cls(str(loaded.version), loaded.estimator, fs, ranges, predict_one, compiled, loaded, run, run_id)

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray], expected: np.ndarray, **fields: Any) -> ServingModel | None:
        """A model of ``fields`` (all but the predictor's) whose tree walk is rebuilt from ``state``
        (``mem_core.estimators.flat_trees``), if it reproduces ``expected`` on ``probe_rows``."""
        from mem_core.estimators.flat_trees import from_state

        names = fields["feature_set"].names
        try:
            fast = from_state(state, len(names))
        except (KeyError, ValueError, TypeError):  # other arrays than a tree walk's
            return None
        if not _agrees(fast, probe_rows(names, fields["feature_ranges"]), expected):
            return None
        return cls(predict_one=fast, compiled=True, **fields)
