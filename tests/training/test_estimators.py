"""The model types by name and the interface every one of them offers (``mem_core.model``)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mem_core import estimators, feature_sets
from mem_core.estimators.seed_gbc import SeedGBC
from mem_core.feature_sets import SEED, UnknownFeatureSet

BUILT_IN = ("seed_gbc", "hist_gb", "random_forest")
SMALL = {
    "seed_gbc": {"n_estimators": 20},
    "hist_gb": {"max_iter": 20, "min_samples_leaf": 20},
    "random_forest": {"n_estimators": 10, "random_state": 0},
}


def _data(n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, len(SEED.names)))
    y = (X[:, 0] + 0.5 * X[:, 4] + rng.normal(0, 0.5, n) > 0).astype(int)
    return X, y


def test_the_built_in_types_and_the_default() -> None:
    assert set(BUILT_IN) <= set(estimators.names())
    assert estimators.DEFAULT == "seed_gbc"
    hist = estimators.create("hist_gb").estimator
    assert type(hist).__name__ == "HistGradientBoostingClassifier"
    assert (hist.max_iter, hist.learning_rate, hist.max_leaf_nodes, hist.min_samples_leaf, hist.l2_regularization) == (
        250,
        0.05,
        31,
        300,
        1.0,
    )
    assert (hist.early_stopping, hist.random_state) == (False, 0)
    assert estimators.create("hist_gb", {"max_iter": 7}).estimator.max_iter == 7


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_type_fits_predicts_one_row_and_reports_what_mlflow_logs(name: str) -> None:
    X, y = _data()
    model = estimators.create(name, SMALL[name]).fit(X[:400], y[:400])
    assert model.name == name and model.feature_set is SEED and model.feature_names == SEED.names
    proba = model.predict_proba(X[400:])
    assert proba.shape == (200,) and ((proba >= 0) & (proba <= 1)).all()
    assert ((proba >= 0.5) == y[400:]).mean() > 0.7  # learned the signal
    assert [model.predict_one(row) for row in X[400:410]] == list(proba[:10])
    assert all(v is None or isinstance(v, (int, float, str, bool)) for v in model.params().values())
    importances = model.importances()
    assert importances == {} or (list(importances) == list(SEED.names) and importances["sma5"] > 0)


def test_hist_gb_is_deterministic() -> None:
    X, y = _data()
    first = estimators.create("hist_gb", SMALL["hist_gb"]).fit(X, y).predict_proba(X)
    second = estimators.create("hist_gb", SMALL["hist_gb"]).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(first, second)


def test_unknown_names_fail_loudly() -> None:
    with pytest.raises(estimators.UnknownEstimator, match=r"unknown estimator 'xgboost'; choose one of \["):
        estimators.get("xgboost")
    with pytest.raises(
        UnknownFeatureSet, match=r"unknown feature set 'rich'; this code computes \['regime_v1', 'seed'\]"
    ):
        feature_sets.get("rich")
    assert feature_sets.get("seed") is SEED


def test_a_taken_name_cannot_be_registered_by_another_type() -> None:
    class Impostor(SeedGBC):
        name = "hist_gb"

    with pytest.raises(ValueError, match="'hist_gb' is taken"):
        estimators.register(Impostor)
    assert estimators.get("hist_gb").__name__ == "HistGB"


def test_known_names_the_built_in_types_without_importing_scikit_learn() -> None:
    script = (
        "import sys, json; from mem_core import estimators; "
        "print(json.dumps([estimators.known(n) for n in ('seed_gbc', 'hist_gb', 'random_forest', 'nope')] "
        "+ ['sklearn' in sys.modules]))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == [True, True, True, False, False]
    assert all(estimators.known(name) for name in estimators.names())
