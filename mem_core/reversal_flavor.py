"""How a version's model is stored in MLflow: MLflow's scikit-learn flavour (skops format, what
serving loads with ``mlflow.sklearn.load_model``) whose ``python_function`` face is this module, so
``mlflow.pyfunc.load_model("models:/mem-reversal@champion").predict(frame)`` returns a frame with
named columns, ``p_reversal`` (P(reversal within the label horizon)) and ``is_reversal``
(``p_reversal >= 0.5``), instead of an unnamed two-column array.

``save_model`` is what ``mlflow.models.Model.log(flavor=this module, ...)`` calls; ``_load_pyfunc``
is what ``mlflow.pyfunc.load_model`` calls (the ``loader_module`` of the flavour).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

#: The columns of the pyfunc's answer.
OUTPUT_COLUMNS = ("p_reversal", "is_reversal")
THRESHOLD = 0.5


def predictions(estimator: Any, data: Any) -> pd.DataFrame:
    """P(reversal) of every row of ``data`` (a frame in the model's feature order, or an array)."""
    X = data.to_numpy(dtype="float64") if isinstance(data, pd.DataFrame) else np.asarray(data, dtype="float64")
    p = estimator.predict_proba(X)[:, 1]
    return pd.DataFrame({"p_reversal": p, "is_reversal": p >= THRESHOLD})


def save_model(sk_model: Any, path: str, mlflow_model: Any = None, **kwargs: Any) -> None:
    """MLflow's scikit-learn ``save_model``, then this module as the pyfunc loader."""
    import mlflow.sklearn
    from mlflow.models import Model

    mlflow_model = mlflow_model if mlflow_model is not None else Model()
    mlflow.sklearn.save_model(sk_model, path, mlflow_model=mlflow_model, **kwargs)
    mlflow_model.flavors["python_function"]["loader_module"] = __name__
    mlflow_model.save(os.path.join(path, "MLmodel"))


class ReversalPyfunc:
    """The pyfunc face: ``predict(frame)`` -> frame of ``OUTPUT_COLUMNS``."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return predictions(self.estimator, data)

    def get_raw_model(self) -> Any:
        return self.estimator


def _load_pyfunc(path: str) -> ReversalPyfunc:
    import mlflow.sklearn

    folder = os.path.dirname(path) if os.path.isfile(path) else path
    return ReversalPyfunc(mlflow.sklearn.load_model(folder))
