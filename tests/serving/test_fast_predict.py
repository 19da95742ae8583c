"""The one-row predictor serving uses: the seed's compiled GBC path and hist_gb's compiled tree walk equal
predict_proba on real feature rows; a model type without a compiled path, or whose compiled path
disagrees, gets the generic ``predict_one``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mem_core import compiled as compiled_kernels
from mem_core import estimators
from mem_core.estimators.seed_gbc import SeedGBC
from mem_core.feature_sets import REGIME_V1, SEED, FeatureSet
from mem_core.labels import reversal_labels
from mem_core.model import OnePredictor
from mem_serving.fast_predict import one_row_predictor


def _real_rows(btc: pd.DataFrame, feature_set: FeatureSet = SEED, rows: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    candles = btc.iloc[:rows].reset_index(drop=True)
    data = feature_set.frame(candles).merge(reversal_labels(candles), on="ts")
    return feature_set.matrix(data), data["label"].to_numpy()


def test_compiled_gradient_boosting_matches_predict_proba(btc: pd.DataFrame) -> None:
    X, y = _real_rows(btc)
    model = estimators.create("seed_gbc").fit(X[:1500], y[:1500])  # the seed's parameters
    predict_one, compiled = one_row_predictor(model, X[:64])
    assert compiled
    held_out = X[1500:]
    got = np.array([predict_one(row) for row in held_out])
    np.testing.assert_allclose(got, model.estimator.predict_proba(held_out)[:, 1], rtol=0, atol=1e-12)


def test_hist_gb_compiled_path_matches_predict_proba(btc: pd.DataFrame) -> None:
    """hist_gb (the study's parameters, fewer trees) on real regime_v1 rows: the tree walk is
    double precision throughout, so it agrees with predict_proba to rounding, not to float32."""
    X, y = _real_rows(btc, REGIME_V1, rows=len(btc))
    model = estimators.create("hist_gb", {"max_iter": 40}, REGIME_V1).fit(X[:4000], y[:4000])
    predict_one, compiled = one_row_predictor(model, X[:64])
    assert compiled
    held_out = X[4000:]
    got = np.array([predict_one(row) for row in held_out])
    np.testing.assert_allclose(got, model.predict_proba(held_out), rtol=0, atol=1e-12)
    assert np.ptp(got) > 0.05  # a model that ranks, not a constant
    for n in (1, compiled_kernels.PARALLEL_MIN_ROWS - 1, len(held_out)):  # serial, and on numba's pool
        assert predict_one.many(held_out[:n]).tolist() == got[:n].tolist()  # type: ignore[attr-defined]  # bit for bit

    # trees that cannot split (every leaf would hold fewer rows than allowed) are single leaves
    stump = estimators.create("hist_gb", {"max_iter": 5, "min_samples_leaf": 3000}, REGIME_V1).fit(X[:4000], y[:4000])
    predict_one, compiled = one_row_predictor(stump, X[:8])
    assert compiled
    assert abs(predict_one(X[5000]) - stump.predict_proba(X[5000:5001])[0]) <= 1e-12


def test_other_estimators_use_the_generic_path(btc: pd.DataFrame) -> None:
    X, y = _real_rows(btc)
    model = estimators.create("random_forest", {"n_estimators": 10}).fit(X[:1500], y[:1500])
    predict_one, compiled = one_row_predictor(model, X[:8])
    assert not compiled
    got = np.array([predict_one(row) for row in X[1500:1600]])
    np.testing.assert_array_equal(got, model.predict_proba(X[1500:1600]))


class _OffByALittle(SeedGBC):
    """A compiled path that is wrong by 1e-6: serving must not use it."""

    name = "test_off_by_a_little"

    def compile_one_row(self) -> OnePredictor | None:
        exact = super().compile_one_row()
        assert exact is not None
        return lambda x: exact(x) + 1e-6


def test_a_compiled_path_that_disagrees_is_refused(btc: pd.DataFrame) -> None:
    X, y = _real_rows(btc)
    model = _OffByALittle.create({"n_estimators": 20}).fit(X[:1500], y[:1500])
    predict_one, compiled = one_row_predictor(model, X[:64])
    assert not compiled
    assert predict_one(X[2000]) == model.predict_proba(X[2000:2001])[0]
