"""The compiled one-row predictor equals predict_proba on real feature rows (the seed's GBC)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

from mem_core.features import compute_features, feature_matrix
from mem_core.labels import reversal_labels
from mem_pipelines.training.train import SEED_PARAMS
from mem_serving.fast_predict import one_row_predictor


def test_compiled_gradient_boosting_matches_predict_proba(btc: pd.DataFrame) -> None:
    candles = btc.iloc[:3000].reset_index(drop=True)
    data = compute_features(candles).merge(reversal_labels(candles), on="ts")
    X, y = feature_matrix(data), data["label"].to_numpy()
    model = GradientBoostingClassifier(**SEED_PARAMS).fit(X[:1500], y[:1500])
    predict_one, compiled = one_row_predictor(model, X[:64])
    assert compiled
    held_out = X[1500:]
    got = np.array([predict_one(row) for row in held_out])
    np.testing.assert_allclose(got, model.predict_proba(held_out)[:, 1], rtol=0, atol=1e-12)


def test_other_estimators_fall_back_to_predict_proba(btc: pd.DataFrame) -> None:
    rng = np.random.default_rng(0)
    X = rng.random((200, 12))
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, X[:, 0] > 0.5)
    predict_one, compiled = one_row_predictor(model, X[:8])
    assert not compiled
    assert predict_one(X[0]) == model.predict_proba(X[:1])[0, 1]
