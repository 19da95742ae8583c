"""The champion/challenger gate against a real MLflow registry; verdicts read back from aliases.

The models are copycats (tests/training/helpers.py): their predictions are set exactly by the
dataset's holdout rows, so accuracy, margin and McNemar's discordant counts are known.
"""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from mem_core import registry
from mem_pipelines.lib.gate import GatePolicy
from mem_pipelines.training.dataset import split_dataset
from mem_pipelines.training.gate_runner import GateError, run_gate

from .helpers import (
    CHALLENGER_COL,
    CHAMPION_COL,
    Unscorable,
    champion,
    copycat,
    gate_dataset,
    register,
)


@pytest.fixture
def champion_v1(mlflow_uri: str) -> str:
    version = register(mlflow_uri, copycat(CHAMPION_COL))
    MlflowClient(mlflow_uri).set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, version)
    return version


def test_first_model_becomes_champion(mlflow_uri: str) -> None:
    data = gate_dataset(200, 60, 60)
    version = register(mlflow_uri, copycat(CHALLENGER_COL))
    outcome = run_gate(data, version, tracking_uri=mlflow_uri)
    assert champion(mlflow_uri) == version
    tags = MlflowClient(mlflow_uri).get_model_version(registry.MODEL_NAME, version).tags
    assert tags["gate.verdict"] == "promoted" and tags["gate.champion_version"] == ""
    assert outcome.champion_after == version


def test_two_points_ahead_and_significant_is_promoted(mlflow_uri: str, champion_v1: str) -> None:
    data = gate_dataset(1000, 320, 300)  # +0.020 exactly, 20 discordant rows all for the challenger
    challenger = register(mlflow_uri, copycat(CHALLENGER_COL))
    run_gate(data, challenger, tracking_uri=mlflow_uri)
    assert champion(mlflow_uri) == challenger != champion_v1
    tags = MlflowClient(mlflow_uri).get_model_version(registry.MODEL_NAME, challenger).tags
    assert tags["gate.verdict"] == "promoted"
    assert float(tags["gate.margin"]) == pytest.approx(0.02)
    assert float(tags["gate.p_value"]) < 0.05
    assert tags["gate.holdout_rows"] == "1000" and tags["gate.champion_version"] == champion_v1
    assert float(tags["gate.champion_accuracy"]) == pytest.approx(0.68)
    assert float(tags["gate.challenger_accuracy"]) == pytest.approx(0.70)


def test_just_under_two_points_is_not_promoted(mlflow_uri: str, champion_v1: str) -> None:
    data = gate_dataset(1000, 319, 300)  # +0.019, significant
    challenger = register(mlflow_uri, copycat(CHALLENGER_COL))
    outcome = run_gate(data, challenger, tracking_uri=mlflow_uri)
    assert outcome.decision.p_value < 0.05
    assert champion(mlflow_uri) == champion_v1
    tags = MlflowClient(mlflow_uri).get_model_version(registry.MODEL_NAME, challenger).tags
    assert tags["gate.verdict"] == "rejected"


def test_two_points_on_too_few_rows_is_not_promoted(mlflow_uri: str, champion_v1: str) -> None:
    data = gate_dataset(100, 32, 30)  # +0.02 but only 2 discordant rows
    challenger = register(mlflow_uri, copycat(CHALLENGER_COL))
    outcome = run_gate(data, challenger, tracking_uri=mlflow_uri)
    assert outcome.decision.margin == pytest.approx(0.02) and outcome.decision.p_value >= 0.05
    assert champion(mlflow_uri) == champion_v1
    # the same rows pass with a looser, configured alpha
    run_gate(data, challenger, tracking_uri=mlflow_uri, policy=GatePolicy(alpha=0.6))
    assert champion(mlflow_uri) == challenger


def test_failure_while_scoring_keeps_the_champion(mlflow_uri: str, champion_v1: str) -> None:
    data = gate_dataset(1000, 320, 100)  # would be promoted by far
    broken = register(mlflow_uri, copycat(3, Unscorable))  # NaN probabilities
    with pytest.raises(GateError):
        run_gate(data, broken, tracking_uri=mlflow_uri)
    assert champion(mlflow_uri) == champion_v1
    tags = MlflowClient(mlflow_uri).get_model_version(registry.MODEL_NAME, broken).tags
    assert tags["gate.verdict"] == "error" and "unusable probabilities" in tags["gate.error"]


def test_rows_the_champion_trained_on_are_left_out(mlflow_uri: str, champion_v1: str) -> None:
    """A champion trained on a later window must not be scored on rows it has seen."""
    data = gate_dataset(1000, 320, 300)
    split = split_dataset(data)
    client = MlflowClient(mlflow_uri)
    run_id = client.get_model_version(registry.MODEL_NAME, champion_v1).run_id
    seen_until = data["ts"].iloc[split.holdout[399]]
    client.set_tag(run_id, "split.train_end", seen_until.isoformat())
    challenger = register(mlflow_uri, copycat(CHALLENGER_COL))
    outcome = run_gate(data, challenger, tracking_uri=mlflow_uri)
    # rows up to seen_until + 10 candles are excluded: 400 + 10 of 1000
    assert outcome.decision.rows == 590
    tags = client.get_model_version(registry.MODEL_NAME, challenger).tags
    assert tags["gate.holdout_rows_seen_by_champion"] == "410"
    # the champion's extra errors were all in the first 320 rows: on the rest both are equal
    assert outcome.decision.margin == pytest.approx(0.0) and champion(mlflow_uri) == champion_v1
